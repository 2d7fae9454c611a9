"""ACME LUX-1 ambient light sensor (I2C): a template driver. Copy, rename, fill in.

Why it looks like this: the bus is injected (machine.I2C on a microcontroller, the
Linux adapter on the pole, host_sim in tests), nothing blocks, every fault is one of
edge.errors' types, and the file runs unchanged on MicroPython.
"""

import struct

from edge.errors import Implausible, NoDevice, NotReady

_REG_ID = 0x00
_ID = 0xA5
_REG_CTRL = 0x01
_REG_DATA = 0x02  # u16 big-endian, 0.1 lx per LSB; 0xFFFF = not measured yet


class AcmeLux:
    MODEL = "acme_lux"

    def __init__(self, i2c, address=0x23):
        self.i2c = i2c
        self.address = address
        self._buf = bytearray(2)

    def start(self):
        try:
            if self.i2c.readfrom_mem(self.address, _REG_ID, 1)[0] != _ID:
                raise NoDevice("0x%02x is not an ACME LUX-1" % self.address)
            self.i2c.writeto_mem(self.address, _REG_CTRL, b"\x01")  # continuous mode
        except OSError as exc:
            raise NoDevice("ACME LUX-1 at 0x%02x: %s" % (self.address, exc)) from exc

    def read(self):
        try:
            self.i2c.readfrom_mem_into(self.address, _REG_DATA, self._buf)
        except OSError as exc:
            raise NoDevice("ACME LUX-1 at 0x%02x: %s" % (self.address, exc)) from exc
        raw = struct.unpack(">H", self._buf)[0]
        if raw == 0xFFFF:
            raise NotReady("ACME LUX-1 warming up")
        lux = raw / 10
        if lux > 6000:
            raise Implausible("ACME LUX-1 beyond its range")
        return {"illuminance": lux}
