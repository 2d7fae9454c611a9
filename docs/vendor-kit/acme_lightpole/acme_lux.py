"""ACME LUX-1 ambient light sensor (I2C): a template driver. Copy, rename, fill in.

Why it looks like this: the bus is injected (``machine.I2C`` on a microcontroller, the
Linux adapter on the pole, host_sim in tests) and no I/O happens in the constructor;
``I2CDevice`` owns the address and turns every bus error (a NACK, a short read) into
``NoDevice``, so the driver never catches ``OSError`` itself; ``read()`` never waits
(the chip measures continuously, we collect its latest result); every fault is one of
``edge.errors``' types; register numbers are ``const()``, which costs a microcontroller
no RAM. The file runs unchanged on MicroPython.

Datasheet in brief: register 0x00 reads 0xA5 (chip id); writing 1 to 0x01 starts
continuous measurement (one result every 120 ms); 0x02..0x03 hold the last result,
u16 big-endian in 0.1 lx, 0xFFFF until the first measurement is done.
"""

from edge.bus.i2c import I2CDevice, const
from edge.errors import Implausible, NoDevice, NotReady

_REG_ID = const(0x00)
_ID = const(0xA5)
_REG_CTRL = const(0x01)
_CONTINUOUS = b"\x01"
_REG_DATA = const(0x02)  # u16 big-endian, 0.1 lx per LSB
_NOT_YET = const(0xFFFF)  # no measurement finished since power-on
_MAX_LX = 6000.0  # the chip's specified range; 6553.4 lx is the register's


class AcmeLux:
    MODEL = "acme_lux"

    def __init__(self, i2c, address=0x23):
        self._dev = I2CDevice(i2c, address, "ACME LUX-1")

    def start(self):
        """Prove it is our chip, then start continuous measurement."""
        chip = self._dev.u8(_REG_ID)
        if chip != _ID:
            raise NoDevice("0x%02x is not an ACME LUX-1 (id 0x%02x)" % (self._dev.address, chip))
        self._dev.writeto_mem(_REG_CTRL, _CONTINUOUS)

    def read(self):
        """The latest result: {"illuminance": lx}."""
        raw = self._dev.u16(_REG_DATA)
        if raw == _NOT_YET:
            raise NotReady("ACME LUX-1 still on its first measurement")
        lux = raw / 10
        if lux > _MAX_LX:
            raise Implausible("ACME LUX-1 %.1f lx is beyond its range" % lux)
        return {"illuminance": lux}
