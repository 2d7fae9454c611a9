"""TI INA226 current/power monitor on the luminaire supply: is the lamp drawing power?

Why this way (same reasoning as the INA219 driver, whose ``INA2xx`` this one shares):
- The chip stays in its power-on configuration (0x4127: continuous shunt and bus,
  1.1 ms conversions, no averaging), so a brown-out leaves it as we want it, except
  that the calibration register is reset to 0 and current/power then read 0. So CAL is
  written before every read.
- Current and power registers are computed at the end of each conversion with the CAL in
  force then; if the current register does not match shunt x CAL / 2048, it came from
  another CAL (just after a brown-out): NotReady, fresh on the next poll.
- Mask/Enable bit 3 (CVRF, cleared by reading Mask/Enable) says whether a conversion
  finished since the last read (NotReady if not); bit 2 (OVF, math overflow) and a shunt
  reading at full scale make the values untrustworthy (Implausible).
- start() checks the manufacturer and die ids (0x5449 "TI", 0x2260).

Returns {"current": A, "voltage": V (bus), "power": W (magnitude, as the chip reports)}.
Portable: runs unchanged on MicroPython.
"""

from edge.bus.i2c import const
from edge.drivers.ina219 import INA2xx
from edge.errors import NoDevice

_REG_MASK = const(0x06)
_REG_MANUFACTURER = const(0xFE)
_REG_DIE = const(0xFF)


class INA226(INA2xx):
    MODEL = "ina226"
    NAME = "INA226"
    _CAL_SCALE = 0.00512
    _CAL_MAX = 0x7FFF
    _CAL_BITS = 0x7FFF  # bit 15 is reserved
    _CURRENT_DIV = 2048
    _POWER_LSB = 25
    _FLAGS = _REG_MASK  # Mask/Enable: reading it clears CVRF
    _OVF = 0x0004
    _READY = 0x0008  # CVRF
    _BUS_SHIFT = 0
    _BUS_LSB_V = 0.00125
    _SHUNT_FULL_SCALE = 32767  # 81.92 mV in 2.5 uV steps
    _BUS_MAX_V = 36.0  # specified common-mode range

    def __init__(self, i2c, address=0x40, shunt_ohms=0.1, max_current=0.8192):
        super().__init__(i2c, address, shunt_ohms, max_current)

    def start(self):
        ids = (self._dev.u16(_REG_MANUFACTURER), self._dev.u16(_REG_DIE))
        if ids != (0x5449, 0x2260):
            raise NoDevice("0x%02x is not an INA226 (ids %04x %04x)" % ((self._dev.address,) + ids))
        self._configure()
