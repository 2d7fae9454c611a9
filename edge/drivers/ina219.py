"""TI INA219 high-side current/power monitor on the luminaire supply: is the lamp drawing power?

Why this way:
- The chip stays in its power-on configuration (0x399F: 32 V bus range, +-320 mV shunt
  range, 12-bit, continuous shunt and bus), so a supply brown-out, which resets the chip,
  leaves the configuration as we want it. It does reset the calibration register to 0,
  after which the current and power registers read 0: so CAL is written before every read.
- Current and power registers are computed inside the chip at the end of each conversion,
  with the CAL in force then. If the current register does not match shunt x CAL / 4096,
  it was computed with another CAL (just after a brown-out): NotReady, fresh on the next poll.
- Bus register bit 1 (CNVR, cleared by reading the power register) tells whether a
  conversion finished since the last read: if not, NotReady. Bit 0 (OVF, math overflow)
  and a shunt reading at full scale mean the value cannot be trusted: Implausible.

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
_RESET = b"\x80\x00"
_SHUNT_FULL_SCALE = 32000  # 320 mV in 10 uV steps (PGA /8, the power-on default)
_BUS_MAX_V = 26.0  # absolute maximum rating of the bus input


class INA219:
    MODEL = "ina219"

    def __init__(self, i2c, address=0x40, shunt_ohms=0.1, max_current=3.2):
        self._i2c = i2c
        self._addr = address
        cal = int(0.04096 / (max_current / 32768 * shunt_ohms) + 1e-6) & 0xFFFE  # bit 0 void
        if not 0 < cal <= 0xFFFE:
            raise ValueError("INA219: no calibration for %r ohm, %r A" % (shunt_ohms, max_current))
        self.cal = cal
        self.current_lsb = 0.04096 / (cal * shunt_ohms)  # exact for the truncated CAL
        self._calbuf = struct.pack(">H", cal)
        self._buf = bytearray(2)

    def _reg(self, reg, fmt):
        self._i2c.readfrom_mem_into(self._addr, reg, self._buf)
        return struct.unpack_from(fmt, self._buf, 0)[0]

    def start(self):
        try:
            self._reg(_REG_CONFIG, ">H")
            self._i2c.writeto_mem(self._addr, _REG_CONFIG, _RESET)  # as after power-on
            self._i2c.writeto_mem(self._addr, _REG_CAL, self._calbuf)
        except OSError as e:
            raise NoDevice("INA219 at 0x%02x: %s" % (self._addr, e)) from e

    def read(self):
        try:
            self._i2c.writeto_mem(self._addr, _REG_CAL, self._calbuf)
            bus = self._reg(_REG_BUS, ">H")
            if bus & 0x01:
                raise Implausible("INA219: math overflow (OVF)")
            if not bus & 0x02:
                raise NotReady("INA219: no conversion since the last read")
            shunt = self._reg(_REG_SHUNT, ">h")
            current = self._reg(_REG_CURRENT, ">h")
            power = self._reg(_REG_POWER, ">H")  # clears CNVR
        except OSError as e:
            raise NoDevice("INA219 at 0x%02x: %s" % (self._addr, e)) from e
        expected = shunt * self.cal // 4096
        if abs(current - expected) > 2 + abs(expected) // 8:
            raise NotReady("INA219: current computed with another CAL (brown-out?)")
        if abs(shunt) >= _SHUNT_FULL_SCALE:
            raise Implausible("INA219: shunt voltage at full scale")
        volts = (bus >> 3) * 0.004
        if volts > _BUS_MAX_V:
            raise Implausible("INA219: bus %.2f V" % volts)
        return {
            "current": current * self.current_lsb,
            "voltage": volts,
            "power": power * 20 * self.current_lsb,
        }
