"""Byte-exact register model of a TI INA219 measuring a lamp supply through a shunt.

Modelled (datasheet SBOS448):
- 16-bit big-endian registers behind a pointer: a 1-byte write sets the pointer, a 3-byte
  write sets it and writes the register; reads return the pointed register (no
  auto-increment; longer reads repeat it).
- 00 config (power-on 0x399F; bit 15 resets everything), 01 shunt (s16, 10 uV/LSB,
  clamped to the PGA range), 02 bus ((V / 4 mV) << 3 | CNVR << 1 | OVF), 03 power, 04
  current, 05 calibration (bit 0 always 0). Only 00 and 05 are writable.
- Conversions run on the injectable ``clock`` at the rate given by BADC/SADC; in
  continuous modes (5..7) one every period, in triggered modes (1..3) once after the
  config write, none in power-down / ADC-off. At the END of each conversion the chip
  computes current = trunc(shunt x CAL / 4096) and power = trunc(|current| x bus / 5000)
  with the CAL in force then, sets CNVR, and sets OVF if either does not fit.
- Reading the power register or writing a new mode clears CNVR.

``source()`` gives {"current": A, "voltage": V}. Fault knob: ``brown_out()`` (power-on
reset: config back to 0x399F, CAL 0, results 0).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

CONFIG, SHUNT, BUS, POWER, CURRENT, CAL = range(6)
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


class INA219Sim:
    def __init__(
        self,
        source: Callable[[], dict],
        shunt_ohms: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.shunt_ohms = shunt_ohms
        self.clock = clock
        self.brown_out()

    def brown_out(self) -> None:
        self.regs = [CONFIG_DEFAULT, 0, 0, 0, 0, 0]
        self._ptr = 0
        self._cnvr = False
        self._ovf = False
        self._restart()

    # --- conversions ----------------------------------------------------------------
    def _period(self) -> float:
        c = self.regs[CONFIG]
        mode = c & 7
        t = 0.0
        if mode & 1:
            t += _adc_s((c >> 3) & 0xF)
        if mode & 2:
            t += _adc_s((c >> 7) & 0xF)
        return t

    def _restart(self) -> None:
        self._t0 = self.clock()
        self._done = 0  # conversions completed since _t0

    def _tick(self) -> None:
        mode = self.regs[CONFIG] & 7
        if mode in (0, 4):
            return
        n = math.floor((self.clock() - self._t0) / self._period())
        if mode < 4:
            n = min(n, 1)  # triggered: a single conversion
        if n > self._done:
            self._done = n
            self._convert()

    def _convert(self) -> None:
        v = self.source()
        c = self.regs[CONFIG]
        mode = c & 7
        if mode & 1:
            self.regs[SHUNT] = shunt_raw(v["current"], self.shunt_ohms, (c >> 11) & 3)
        if mode & 2:
            self.regs[BUS] = bus_raw(v["voltage"], (c >> 13) & 1)
        current = int(self.regs[SHUNT] * self.regs[CAL] / 4096)
        power = int(abs(current) * self.regs[BUS] / 5000)
        self._ovf = not -32768 <= current <= 32767 or power > 0xFFFF
        self.regs[CURRENT] = max(-32768, min(32767, current))
        self.regs[POWER] = min(power, 0xFFFF)
        self._cnvr = True

    # --- bus ------------------------------------------------------------------------
    def _value(self, reg: int) -> int:
        if reg == BUS:
            return self.regs[BUS] << 3 | self._cnvr << 1 | self._ovf
        return self.regs[reg] & 0xFFFF

    def write(self, data: bytes) -> None:
        self._tick()
        if not data:
            return
        self._ptr = data[0]
        if len(data) < 3:
            return
        value = int.from_bytes(data[1:3], "big")
        if self._ptr == CONFIG:
            if value & 0x8000:
                self.brown_out()
                return
            self.regs[CONFIG] = value
            self._cnvr = False
            self._restart()
        elif self._ptr == CAL:
            self.regs[CAL] = value & 0xFFFE

    def read(self, n: int) -> bytes:
        self._tick()
        if self._ptr > CAL:
            raise OSError(5, "INA219: no such register")
        raw = self._value(self._ptr).to_bytes(2, "big")
        if self._ptr == POWER:
            self._cnvr = False
        return (raw * ((n + 1) // 2))[:n]
