"""What the INA219 and INA226 register models share (TI datasheets SBOS448 and SBOS547).

- 16-bit big-endian registers behind a pointer: a 1-byte write sets the pointer, a 3-byte
  write sets it and writes the register; reads return the pointed register (no
  auto-increment; longer reads repeat it).
- 00 config, 01 shunt, 02 bus, 03 power, 04 current, 05 calibration; config bit 15
  resets everything to the power-on values, as a brown-out does.
- Conversions run on the injectable ``clock``: in continuous modes (5..7) one every
  ``_period()``, in triggered modes (1..3) once after the config write, none in
  power-down / ADC-off (0, 4). At the END of each conversion the chip computes
  current = trunc(shunt x CAL / CURRENT_DIV) and power = trunc(|current| x bus /
  POWER_DIV) with the CAL in force then, and flags an overflow if either does not fit.

A chip class declares ``POWER_ON`` (its registers after power-on, from 00), the two
divisors, and what differs: ``_period()``, ``_shunt_code(amps)``, ``_bus_code(volts)``,
``_converted(overflow)`` (its ready and overflow flags), ``_write_reg(reg, value)`` (the
registers a write may change) and ``_read_reg(reg)`` (a read's value and side effects).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

CONFIG, SHUNT, BUS, POWER, CURRENT, CAL = range(6)


class INA2xxSim:
    POWER_ON: tuple[int, ...] = ()
    CURRENT_DIV = 1
    POWER_DIV = 1

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
        """Power-on reset: config to its default, CAL 0, results 0."""
        self.regs = list(self.POWER_ON)
        self._ptr = 0
        self._restart()

    # --- what a chip class declares --------------------------------------------------
    def _period(self) -> float:
        raise NotImplementedError

    def _shunt_code(self, amps: float) -> int:
        raise NotImplementedError

    def _bus_code(self, volts: float) -> int:
        raise NotImplementedError

    def _converted(self, overflow: bool) -> None:
        raise NotImplementedError

    def _write_reg(self, reg: int, value: int) -> None:
        raise NotImplementedError

    def _read_reg(self, reg: int) -> int:
        raise NotImplementedError

    # --- conversions ----------------------------------------------------------------
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
        mode = self.regs[CONFIG] & 7
        if mode & 1:
            self.regs[SHUNT] = self._shunt_code(v["current"])
        if mode & 2:
            self.regs[BUS] = self._bus_code(v["voltage"])
        current = int(self.regs[SHUNT] * self.regs[CAL] / self.CURRENT_DIV)
        power = int(abs(current) * self.regs[BUS] / self.POWER_DIV)
        self.regs[CURRENT] = max(-32768, min(32767, current))
        self.regs[POWER] = min(power, 0xFFFF)
        self._converted(not -32768 <= current <= 32767 or power > 0xFFFF)

    # --- bus ------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self._tick()
        if not data:
            return
        self._ptr = data[0]
        if len(data) < 3:
            return
        value = int.from_bytes(data[1:3], "big")
        if self._ptr == CONFIG and value & 0x8000:
            self.brown_out()
        else:
            self._write_reg(self._ptr, value)

    def read(self, n: int) -> bytes:
        self._tick()
        raw = self._read_reg(self._ptr).to_bytes(2, "big")
        return (raw * ((n + 1) // 2))[:n]
