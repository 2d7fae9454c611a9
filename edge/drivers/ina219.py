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
``INA2xx`` here is what the INA226 driver shares with this one: the calibration, the read
sequence and its checks, with each chip's numbers declared as class attributes.
Portable: runs unchanged on MicroPython.
"""

import struct

from edge.bus.i2c import I2CDevice, const
from edge.errors import Implausible, NotReady

# The register map the INA219 and INA226 have in common.
_REG_CONFIG = const(0x00)
_REG_SHUNT = const(0x01)
_REG_BUS = const(0x02)
_REG_POWER = const(0x03)
_REG_CURRENT = const(0x04)
_REG_CAL = const(0x05)
_RESET = b"\x80\x00"  # config bit 15: everything back to power-on values


class INA2xx:
    """What the INA219 and INA226 drivers share: the calibration, CAL written before every
    read, the read sequence and its checks. A chip class declares its numbers (below, as
    the datasheet gives them) and a ``start()`` that probes the chip, then ``_configure()``.
    """

    NAME = ""
    _CAL_SCALE = 0.0  # CAL = _CAL_SCALE / (current LSB x shunt ohms)
    _CAL_MAX = 0  # the largest CAL the formula may give
    _CAL_BITS = 0  # the CAL bits the chip keeps
    _CURRENT_DIV = 1  # current register = shunt register x CAL / _CURRENT_DIV
    _POWER_LSB = 0  # power register LSB, in current LSBs
    _FLAGS = 0  # the register holding the _OVF and _READY bits
    _OVF = 0  # math overflow: current or power did not fit
    _READY = 0  # a conversion finished since the last read
    _BUS_SHIFT = 0  # volts = (bus register >> _BUS_SHIFT) x _BUS_LSB_V
    _BUS_LSB_V = 0.0
    _SHUNT_FULL_SCALE = 0  # a shunt register this large (either sign) is saturated
    _BUS_MAX_V = 0.0  # above this the bus reading cannot be real

    def __init__(self, i2c, address, shunt_ohms, max_current):
        raw = int(self._CAL_SCALE / (max_current / 32768 * shunt_ohms) + 1e-6)
        cal = raw & self._CAL_BITS
        if not 0 < raw <= self._CAL_MAX or not cal:
            raise ValueError(
                "%s: no calibration for %r ohm, %r A" % (self.NAME, shunt_ohms, max_current)
            )
        self.cal = cal
        self.current_lsb = self._CAL_SCALE / (cal * shunt_ohms)  # exact for the truncated CAL
        self._calbuf = struct.pack(">H", cal)
        self._dev = I2CDevice(i2c, address, self.NAME)

    def _configure(self):
        self._dev.writeto_mem(_REG_CONFIG, _RESET)  # as after power-on
        self._dev.writeto_mem(_REG_CAL, self._calbuf)

    def read(self):
        d = self._dev
        d.writeto_mem(_REG_CAL, self._calbuf)
        flags = d.u16(self._FLAGS)
        if flags & self._OVF:
            raise Implausible("%s: math overflow (OVF)" % self.NAME)
        if not flags & self._READY:
            raise NotReady("%s: no conversion since the last read" % self.NAME)
        shunt = d.s16(_REG_SHUNT)
        bus = flags if self._FLAGS == _REG_BUS else d.u16(_REG_BUS)
        current = d.s16(_REG_CURRENT)
        power = d.u16(_REG_POWER)
        expected = shunt * self.cal // self._CURRENT_DIV
        if abs(current - expected) > 2 + abs(expected) // 8:
            raise NotReady("%s: current computed with another CAL (brown-out?)" % self.NAME)
        if abs(shunt) >= self._SHUNT_FULL_SCALE:
            raise Implausible("%s: shunt voltage at full scale" % self.NAME)
        volts = (bus >> self._BUS_SHIFT) * self._BUS_LSB_V
        if volts > self._BUS_MAX_V:
            raise Implausible("%s: bus %.2f V" % (self.NAME, volts))
        return {
            "current": current * self.current_lsb,
            "voltage": volts,
            "power": power * self._POWER_LSB * self.current_lsb,
        }


class INA219(INA2xx):
    MODEL = "ina219"
    NAME = "INA219"
    _CAL_SCALE = 0.04096
    _CAL_MAX = 0xFFFF
    _CAL_BITS = 0xFFFE  # bit 0 is void
    _CURRENT_DIV = 4096
    _POWER_LSB = 20
    _FLAGS = _REG_BUS  # bus voltage << 3 | CNVR << 1 | OVF; reading POWER clears CNVR
    _OVF = 0x0001
    _READY = 0x0002
    _BUS_SHIFT = 3
    _BUS_LSB_V = 0.004
    _SHUNT_FULL_SCALE = 32000  # 320 mV in 10 uV steps (PGA /8, the power-on default)
    _BUS_MAX_V = 26.0  # absolute maximum rating of the bus input

    def __init__(self, i2c, address=0x40, shunt_ohms=0.1, max_current=3.2):
        super().__init__(i2c, address, shunt_ohms, max_current)

    def start(self):
        self._dev.u16(_REG_CONFIG)  # any answer will do: the INA219 has no id register
        self._configure()
