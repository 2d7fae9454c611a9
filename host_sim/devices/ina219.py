"""Byte-exact register model of a TI INA219 measuring a lamp supply through a shunt.

Modelled (datasheet SBOS448); the pointer, the reset bit and the conversion timing are
the INA226's too and live in ``host_sim.devices.ina2xx``:
- 00 config (power-on 0x399F; bit 15 resets everything; bit 14 unused, reads 0), 01 shunt
  (s16, 10 uV/LSB, clamped to the PGA range), 02 bus ((V / 4 mV) << 3 | CNVR << 1 | OVF;
  clamped to the 16 V or 32 V range), 03 power, 04 current, 05 calibration (bit 0 always
  0). Only 00 and 05 are writable; a read of any other pointer NACKs.
- Conversion time from BADC/SADC. At the END of each conversion the chip computes
  current = trunc(shunt x CAL / 4096) and power = trunc(|current| x bus / 5000) with the
  CAL in force then, sets CNVR, and sets OVF if either does not fit.
- Reading the power register or writing a new mode clears CNVR.

``source()`` gives {"current": A, "voltage": V}. Fault knob: ``brown_out()`` (power-on
reset: config back to 0x399F, CAL 0, results 0).
"""

from __future__ import annotations

from host_sim.devices.ina2xx import BUS, CAL, CONFIG, POWER, INA2xxSim

CONFIG_DEFAULT = 0x399F


def _adc_s(code: int) -> float:
    """BADC/SADC setting -> conversion time in seconds (0X00..0X11: 9..12 bit, 1001..: avg)."""
    if code < 8:
        return (84e-6, 148e-6, 276e-6, 532e-6)[code & 3]
    return 532e-6 * (1 << (code - 8))  # 1000 = 12 bit, 1001..1111 = 2..128 samples


def shunt_raw(current: float, shunt_ohms: float, pga: int = 3) -> int:
    limit = 4000 << pga
    return max(-limit, min(limit, round(current * shunt_ohms / 10e-6)))


def bus_raw(volts: float, brng: int = 1) -> int:
    limit = 8000 if brng else 4000
    return max(0, min(limit, round(volts / 0.004)))


class INA219Sim(INA2xxSim):
    POWER_ON = (CONFIG_DEFAULT, 0, 0, 0, 0, 0)
    CURRENT_DIV = 4096
    POWER_DIV = 5000

    def brown_out(self) -> None:
        self._cnvr = False
        self._ovf = False
        super().brown_out()

    def _period(self) -> float:
        c = self.regs[CONFIG]
        mode = c & 7
        t = 0.0
        if mode & 1:
            t += _adc_s((c >> 3) & 0xF)
        if mode & 2:
            t += _adc_s((c >> 7) & 0xF)
        return t

    def _shunt_code(self, amps: float) -> int:
        return shunt_raw(amps, self.shunt_ohms, (self.regs[CONFIG] >> 11) & 3)

    def _bus_code(self, volts: float) -> int:
        return bus_raw(volts, (self.regs[CONFIG] >> 13) & 1)

    def _converted(self, overflow: bool) -> None:
        self._ovf = overflow
        self._cnvr = True

    def _write_reg(self, reg: int, value: int) -> None:
        if reg == CONFIG:
            self.regs[CONFIG] = value & 0x3FFF
            self._cnvr = False
            self._restart()
        elif reg == CAL:
            self.regs[CAL] = value & 0xFFFE

    def _read_reg(self, reg: int) -> int:
        if reg > CAL:
            raise OSError(5, "INA219: no such register")
        if reg == BUS:
            return self.regs[BUS] << 3 | self._cnvr << 1 | self._ovf
        if reg == POWER:
            self._cnvr = False
        return self.regs[reg] & 0xFFFF
