"""Byte-exact register model of a TI INA226 measuring a lamp supply through a shunt.

Modelled (datasheet SBOS547); the pointer, the reset bit and the conversion timing are
the INA219's too and live in ``host_sim.devices.ina2xx``:
- 00 config (power-on 0x4127; bit 15 resets everything; bits 14..12 reserved, read 100),
  01 shunt (s16, 2.5 uV/LSB, saturating at +-81.92 mV), 02 bus (1.25 mV/LSB, 0..0x7FFF),
  03 power, 04 current, 05 CAL (bit 15 reserved, reads 0), 06 Mask/Enable, 07 alert
  limit, FE manufacturer id 0x5449, FF die id 0x2260. Other pointers NACK a read.
- Conversion period (VBUSCT + VSHCT) x AVG. At the END of each conversion current =
  trunc(shunt x CAL / 2048) and power = trunc(|current| x bus / 20000) with the CAL in
  force then; CVRF (bit 3) set; OVF (bit 2) set if a result does not fit.
- Mask/Enable: one alert function (SOL, SUL, BOL, BUL, POL in bits 15..11, the highest
  set wins) compares each conversion with the alert limit (shunt and bus in their register
  LSBs, power in power-register LSBs) and sets AFF (bit 4); CNVR (bit 10) alerts on CVRF;
  APOL (bit 1), LEN (bit 0). Reading Mask/Enable clears CVRF, and AFF in latch mode (LEN=1);
  in transparent mode AFF follows the latest conversion. ``alert`` is the ALERT pin's
  state, active or not (APOL only inverts the pin's level).
- Writing the config register clears CVRF.

``source()`` gives {"current": A, "voltage": V}. Fault knob: ``brown_out()`` (power-on
reset: config 0x4127, CAL 0, results 0).
"""

from __future__ import annotations

from host_sim.devices.ina2xx import BUS, CAL, CONFIG, POWER, SHUNT, INA2xxSim

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
        mask = (self.regs[MASK] & ~0x000C) | 0x0008 | (0x0004 if overflow else 0)
        hit = self._alert_condition()
        if hit:
            mask |= 0x0010
        elif not mask & 0x0001:  # transparent: AFF follows the latest conversion
            mask &= ~0x0010
        self.regs[MASK] = mask

    def _alert_condition(self) -> bool:
        mask, limit = self.regs[MASK], self.regs[ALERT]
        shunt = self.regs[SHUNT]
        if mask & 0x8000:  # SOL: shunt voltage over limit (both as signed register values)
            return shunt > _signed(limit)
        if mask & 0x4000:  # SUL
            return shunt < _signed(limit)
        if mask & 0x2000:  # BOL
            return self.regs[BUS] > limit
        if mask & 0x1000:  # BUL
            return self.regs[BUS] < limit
        if mask & 0x0800:  # POL
            return self.regs[POWER] > limit
        return False

    @property
    def alert(self) -> bool:
        """The ALERT pin is active: an alert function fired, or CNVR and a fresh result."""
        self._tick()
        mask = self.regs[MASK]
        return bool(mask & 0xF800 and mask & 0x0010 or mask & 0x0400 and mask & 0x0008)

    def _write_reg(self, reg: int, value: int) -> None:
        if reg == CONFIG:
            self.regs[CONFIG] = (value & 0x0FFF) | 0x4000  # bits 14..12 reserved: 100
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
        if reg == MASK:  # reading clears CVRF, and AFF when latched
            self.regs[MASK] &= ~(0x0018 if value & 0x0001 else 0x0008)
        return value


def _signed(value: int) -> int:
    return value - 0x10000 if value & 0x8000 else value
