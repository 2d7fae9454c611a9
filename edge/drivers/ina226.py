"""TI INA226 current/power monitor on the luminaire supply: is the lamp drawing power?

Why this way (same reasoning as the INA219 driver):
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

import struct

from edge.errors import Implausible, NoDevice, NotReady

_REG_CONFIG = 0x00
_REG_SHUNT = 0x01
_REG_BUS = 0x02
_REG_POWER = 0x03
_REG_CURRENT = 0x04
_REG_CAL = 0x05
_REG_MASK = 0x06
_REG_MANUFACTURER = 0xFE
_REG_DIE = 0xFF
_RESET = b"\x80\x00"
_CVRF = 0x0008
_OVF = 0x0004
_SHUNT_FULL_SCALE = 32767  # 81.92 mV in 2.5 uV steps
_BUS_MAX_V = 36.0  # specified common-mode range


class INA226:
    MODEL = "ina226"

    def __init__(self, i2c, address=0x40, shunt_ohms=0.1, max_current=0.8192):
        self._i2c = i2c
        self._addr = address
        cal = int(0.00512 / (max_current / 32768 * shunt_ohms) + 1e-6)
        if not 0 < cal <= 0x7FFF:
            raise ValueError("INA226: no calibration for %r ohm, %r A" % (shunt_ohms, max_current))
        self.cal = cal
        self.current_lsb = 0.00512 / (cal * shunt_ohms)  # exact for the truncated CAL
        self._calbuf = struct.pack(">H", cal)
        self._buf = bytearray(2)

    def _reg(self, reg, fmt):
        self._i2c.readfrom_mem_into(self._addr, reg, self._buf)
        return struct.unpack_from(fmt, self._buf, 0)[0]

    def start(self):
        try:
            ids = (self._reg(_REG_MANUFACTURER, ">H"), self._reg(_REG_DIE, ">H"))
        except OSError as e:
            raise NoDevice("INA226 at 0x%02x: %s" % (self._addr, e)) from e
        if ids != (0x5449, 0x2260):
            raise NoDevice("0x%02x is not an INA226 (ids %04x %04x)" % ((self._addr,) + ids))
        try:
            self._i2c.writeto_mem(self._addr, _REG_CONFIG, _RESET)  # as after power-on
            self._i2c.writeto_mem(self._addr, _REG_CAL, self._calbuf)
        except OSError as e:
            raise NoDevice("INA226 at 0x%02x: %s" % (self._addr, e)) from e

    def read(self):
        try:
            self._i2c.writeto_mem(self._addr, _REG_CAL, self._calbuf)
            flags = self._reg(_REG_MASK, ">H")  # clears CVRF
            if flags & _OVF:
                raise Implausible("INA226: math overflow (OVF)")
            if not flags & _CVRF:
                raise NotReady("INA226: no conversion since the last read")
            shunt = self._reg(_REG_SHUNT, ">h")
            bus = self._reg(_REG_BUS, ">H")
            current = self._reg(_REG_CURRENT, ">h")
            power = self._reg(_REG_POWER, ">H")
        except OSError as e:
            raise NoDevice("INA226 at 0x%02x: %s" % (self._addr, e)) from e
        expected = shunt * self.cal // 2048
        if abs(current - expected) > 2 + abs(expected) // 8:
            raise NotReady("INA226: current computed with another CAL (brown-out?)")
        if abs(shunt) >= _SHUNT_FULL_SCALE:
            raise Implausible("INA226: shunt voltage at full scale")
        volts = bus * 0.00125
        if volts > _BUS_MAX_V:
            raise Implausible("INA226: bus %.2f V" % volts)
        return {
            "current": current * self.current_lsb,
            "voltage": volts,
            "power": power * 25 * self.current_lsb,
        }
