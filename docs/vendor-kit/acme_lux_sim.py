"""Byte-exact model of the ACME LUX-1 for host_sim: registers, power-on state, faults."""

import struct


class AcmeLuxSim:
    def __init__(self, source):
        self.source = source  # () -> {"illuminance": lx}
        self.stuck = False
        self.out_of_range = False
        self.regs = bytearray(4)
        self.regs[0] = 0xA5
        self.regs[2:4] = b"\xff\xff"  # not measured until switched on
        self.ptr = 0
        self._last = None

    def write(self, data):
        self.ptr = data[0]
        for i, b in enumerate(data[1:]):
            self.regs[(self.ptr + i) % 4] = b

    def read(self, n):
        if self.regs[1] & 1 and self.ptr <= 2 < self.ptr + n:
            v = self._last if self.stuck and self._last else self.source()
            self._last = v
            lux = 9000.0 if self.out_of_range else v["illuminance"]
            self.regs[2:4] = struct.pack(">H", min(0xFFFE, round(lux * 10)))
        out = bytes(self.regs[(self.ptr + i) % 4] for i in range(n))
        self.ptr = (self.ptr + n) % 4
        return out
