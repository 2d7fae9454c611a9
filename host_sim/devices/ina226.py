"""Byte-exact register model of a TI INA226 measuring a lamp supply through a shunt.

Modelled (datasheet SBOS547); the pointer, the reset bit and the conversion timing are
the INA219's too and live in ``host_sim.devices.ina2xx``:
- 00 config (power-on 0x4127; bit 15 resets everything), 01 shunt (s16, 2.5 uV/LSB,
  saturating at +-81.92 mV), 02 bus (1.25 mV/LSB, 0..0x7FFF), 03 power, 04 current, 05 CAL
  (bit 15 reserved, reads 0), 06 Mask/Enable (CVRF bit 3, OVF bit 2; reading it clears
  CVRF), 07 alert limit, FE manufacturer id 0x5449, FF die id 0x2260.
- Conversion period (VBUSCT + VSHCT) x AVG. At the END of each conversion current =
  trunc(shunt x CAL / 2048) and power = trunc(|current| x bus / 20000) with the CAL in
  force then; CVRF set; OVF set if a result does not fit.
- Writing the config register clears CVRF.

``source()`` gives {"current": A, "voltage": V}. Fault knob: ``brown_out()`` (power-on
reset: config 0x4127, CAL 0, results 0).
"""

from __future__ import annotations

from host_sim.devices.ina2xx import CAL, CONFIG, INA2xxSim

MASK, ALERT = 6, 7
CONFIG_DEFAULT = 0x4127
MANUFACTURER_ID, DIE_ID = 0x5449, 0x2260
_CT_S = (140e-6, 204e-6, 332e-6, 588e-6, 1.1e-3, 2.116e-3, 4.156e-3, 8.244e-3)
_AVG = (1, 4, 16, 64, 128, 256, 512, 1024)
_MASK_WRITABLE = 0xFC03  # alert function bits, APOL, LEN


def shunt_raw(current: float, shunt_ohms: float) -> int:
    return max(-32768, min(32767, round(current * shunt_ohms / 2.5e-6)))


def bus_raw(volts: float) -> int:
    return max(0, min(0x7FFF, round(volts / 1.25e-3)))


class INA226Sim(INA2xxSim):
    POWER_ON = (CONFIG_DEFAULT, 0, 0, 0, 0, 0, 0, 0)
    CURRENT_DIV = 2048
    POWER_DIV = 20000

    def _period(self) -> float:
        c = self.regs[CONFIG]
        t = 0.0
        if c & 1:
            t += _CT_S[(c >> 3) & 7]
        if c & 2:
            t += _CT_S[(c >> 6) & 7]
        return t * _AVG[(c >> 9) & 7]

    def _shunt_code(self, amps: float) -> int:
        return shunt_raw(amps, self.shunt_ohms)

    def _bus_code(self, volts: float) -> int:
        return bus_raw(volts)

    def _converted(self, overflow: bool) -> None:
        self.regs[MASK] = (self.regs[MASK] & ~0x000C) | 0x0008 | (0x0004 if overflow else 0)

    def _write_reg(self, reg: int, value: int) -> None:
        if reg == CONFIG:
            self.regs[CONFIG] = value | 0x4000  # bit 14 reads 1
            self.regs[MASK] &= ~0x0008
            self._restart()
        elif reg == CAL:
            self.regs[CAL] = value & 0x7FFF
        elif reg == MASK:
            self.regs[MASK] = (self.regs[MASK] & ~_MASK_WRITABLE) | (value & _MASK_WRITABLE)
        elif reg == ALERT:
            self.regs[ALERT] = value

    def _read_reg(self, reg: int) -> int:
        if reg == 0xFE:
            return MANUFACTURER_ID
        if reg == 0xFF:
            return DIE_ID
        if reg > ALERT:
            raise OSError(5, "INA226: no such register")
        value = self.regs[reg] & 0xFFFF
        if reg == MASK:
            self.regs[MASK] &= ~0x0018  # reading clears CVRF and AFF
        return value
