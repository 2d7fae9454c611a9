"""Byte-exact model of the ACME LUX-1 for host_sim: registers, power-on state, faults.

Wire behaviour modelled (see the driver's docstring for the datasheet in brief):
- a register pointer set by the first byte of every write, auto-incremented by reads
  and writes, wrapping at 4;
- power-on: id 0xA5, control 0, data 0xFFFF; writing 1 to the control register starts
  continuous measurement, and the first result is ready 120 ms later (``clock``);
- the data register holds the latest result while the measurement runs.

Fault switches (``pole-sim conformance`` flips each and checks that it changes what the
chip sends): ``stuck`` repeats the last result forever, ``out_of_range`` reports
9000 lx (beyond the chip's 6000 lx).
"""

import struct
import time

MEASURE_S = 0.120
_ID = 0xA5


class AcmeLuxSim:
    def __init__(self, source, clock=time.monotonic):
        self.source = source  # () -> {"illuminance": lx}
        self.clock = clock  # seconds; conformance injects simulated time
        self.stuck = False
        self.out_of_range = False
        self.regs = bytearray([_ID, 0, 0xFF, 0xFF])
        self.ptr = 0
        self._ready_at = None  # when the first result is done, once switched on
        self._last = None

    def write(self, data):
        self.ptr = data[0] % 4
        for b in data[1:]:
            self.regs[self.ptr] = b
            if self.ptr == 1 and b & 1 and self._ready_at is None:
                self._ready_at = self.clock() + MEASURE_S
            elif self.ptr == 1 and not b & 1:
                self._ready_at = None  # stopped: the last result stays in the register
            self.ptr = (self.ptr + 1) % 4

    def read(self, n):
        reads_data = any((self.ptr + i) % 4 == 2 for i in range(n))
        if reads_data and self._ready_at is not None and self.clock() >= self._ready_at:
            self.regs[2:4] = struct.pack(">H", self._measure())
        out = bytes(self.regs[(self.ptr + i) % 4] for i in range(n))
        self.ptr = (self.ptr + n) % 4
        return out

    def _measure(self):
        if self.stuck and self._last is not None:
            return self._last
        lux = 9000.0 if self.out_of_range else self.source()["illuminance"]
        raw = min(0xFFFE, max(0, round(lux * 10)))
        self._last = raw
        return raw
