"""Byte-exact register model of a TI INA226 measuring a lamp supply through a shunt.

Modelled (datasheet SBOS547):
- 16-bit big-endian registers behind a pointer (1-byte write sets it, 3-byte write sets and
  writes; reads return the pointed register, repeated for longer reads).
- 00 config (power-on 0x4127; bit 15 resets everything), 01 shunt (s16, 2.5 uV/LSB,
  saturating at +-81.92 mV), 02 bus (1.25 mV/LSB, 0..0x7FFF), 03 power, 04 current, 05 CAL
  (bit 15 reserved, reads 0), 06 Mask/Enable (CVRF bit 3, OVF bit 2; reading it clears
  CVRF), 07 alert limit, FE manufacturer id 0x5449, FF die id 0x2260.
- Conversions on the injectable ``clock``: period (VBUSCT + VSHCT) x AVG; continuous modes
  (5..7) repeat, triggered modes (1..3) run once after the config write. At the END of each
  conversion current = trunc(shunt x CAL / 2048) and power = trunc(|current| x bus / 20000)
  with the CAL in force then; CVRF set; OVF set if a result does not fit.
- Writing the config register clears CVRF.

``source()`` gives {"current": A, "voltage": V}. Fault knob: ``brown_out()`` (power-on
reset: config 0x4127, CAL 0, results 0).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

CONFIG, SHUNT, BUS, POWER, CURRENT, CAL, MASK, ALERT = range(8)
CONFIG_DEFAULT = 0x4127
MANUFACTURER_ID, DIE_ID = 0x5449, 0x2260
_CT_S = (140e-6, 204e-6, 332e-6, 588e-6, 1.1e-3, 2.116e-3, 4.156e-3, 8.244e-3)
_AVG = (1, 4, 16, 64, 128, 256, 512, 1024)
_MASK_WRITABLE = 0xFC03  # alert function bits, APOL, LEN


def shunt_raw(current: float, shunt_ohms: float) -> int:
    return max(-32768, min(32767, round(current * shunt_ohms / 2.5e-6)))


def bus_raw(volts: float) -> int:
    return max(0, min(0x7FFF, round(volts / 1.25e-3)))


class INA226Sim:
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
        self.regs = [CONFIG_DEFAULT, 0, 0, 0, 0, 0, 0, 0]
        self._ptr = 0
        self._restart()

    # --- conversions ----------------------------------------------------------------
    def _period(self) -> float:
        c = self.regs[CONFIG]
        t = 0.0
        if c & 1:
            t += _CT_S[(c >> 3) & 7]
        if c & 2:
            t += _CT_S[(c >> 6) & 7]
        return t * _AVG[(c >> 9) & 7]

    def _restart(self) -> None:
        self._t0 = self.clock()
        self._done = 0

    def _tick(self) -> None:
        mode = self.regs[CONFIG] & 7
        if mode in (0, 4):
            return
        n = math.floor((self.clock() - self._t0) / self._period())
        if mode < 4:
            n = min(n, 1)
        if n > self._done:
            self._done = n
            self._convert()

    def _convert(self) -> None:
        v = self.source()
        mode = self.regs[CONFIG] & 7
        if mode & 1:
            self.regs[SHUNT] = shunt_raw(v["current"], self.shunt_ohms)
        if mode & 2:
            self.regs[BUS] = bus_raw(v["voltage"])
        current = int(self.regs[SHUNT] * self.regs[CAL] / 2048)
        power = int(abs(current) * self.regs[BUS] / 20000)
        ovf = not -32768 <= current <= 32767 or power > 0xFFFF
        self.regs[CURRENT] = max(-32768, min(32767, current))
        self.regs[POWER] = min(power, 0xFFFF)
        self.regs[MASK] = (self.regs[MASK] & ~0x000C) | 0x0008 | (0x0004 if ovf else 0)

    # --- bus ------------------------------------------------------------------------
    def _value(self, reg: int) -> int:
        if reg == 0xFE:
            return MANUFACTURER_ID
        if reg == 0xFF:
            return DIE_ID
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
            self.regs[CONFIG] = value | 0x4000  # bit 14 reads 1
            self.regs[MASK] &= ~0x0008
            self._restart()
        elif self._ptr == CAL:
            self.regs[CAL] = value & 0x7FFF
        elif self._ptr == MASK:
            self.regs[MASK] = (self.regs[MASK] & ~_MASK_WRITABLE) | (value & _MASK_WRITABLE)
        elif self._ptr == ALERT:
            self.regs[ALERT] = value

    def read(self, n: int) -> bytes:
        self._tick()
        if self._ptr > ALERT and self._ptr not in (0xFE, 0xFF):
            raise OSError(5, "INA226: no such register")
        raw = self._value(self._ptr).to_bytes(2, "big")
        if self._ptr == MASK:
            self.regs[MASK] &= ~0x0018  # reading clears CVRF and AFF
        return (raw * ((n + 1) // 2))[:n]
