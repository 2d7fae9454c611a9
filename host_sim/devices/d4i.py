"""A DALI-2 / Zhaga-D4i LED driver as seen through a DALI bridge: ``read_bank(bank)``.

Memory banks 1 (Part 251 luminaire info), 202 (Part 252 active energy and power), 205
(Part 253 control gear diagnostics) and 206 (light source diagnostics), laid out as
documented in ``edge.drivers.d4i`` and docs/d4i-bridge.md. Each bank starts with its last
accessible address, an indicator byte (0), the lock/latch byte (0xFF) and the bank
version (1).

Physics: ``source()`` gives {"power": W input, "lampOn": bool, "supplyVoltage": V,
"powerFactor": 0..1, "driverTemperature": degC, "frequency": Hz}; missing keys take
defaults. Time comes from the injectable ``clock``: each read integrates the power since
the last one into the energy counter (which never decreases), and advances operating time,
lamp on-time and the start counters (a lamp start is a lampOn 0 -> 1 transition).

Fault knobs: ``lamp_failure`` (open circuit: no output, standby power only, failure flags
and counters), ``thermal_derating`` (output current cut to ``derated_percent``, power
with it, flag and counter), ``tmask_power`` (active power temporarily unavailable),
``no_reply`` (the gear does not answer: OSError), ``power_cycle()`` (start counter).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

LAST = {1: 0x77, 202: 0x0F, 205: 0x1C, 206: 0x20}
STANDBY_W = 0.3


def uint(value: int, n: int) -> bytes:
    """An n-byte big-endian counter, saturating below TMASK."""
    return max(0, min(int(value), (1 << (8 * n)) - 3)).to_bytes(n, "big")


def scaled(value: float, scale: int, n: int, floor: bool = False) -> bytes:
    raw = value / 10.0**scale
    return (scale & 0xFF).to_bytes(1, "big") + uint(math.floor(raw) if floor else round(raw), n)


def tmask(n: int) -> bytes:
    return ((1 << (8 * n)) - 2).to_bytes(n, "big")


class D4iSim:
    def __init__(
        self,
        source: Callable[[], dict],
        clock: Callable[[], float] = time.monotonic,
        gtin: int = 8712345678906,
        nominal_power: int = 60,
        energy_scale: int = 0,
        power_scale: int = -1,
        energy_wh: float = 0.0,
    ) -> None:
        self.source = source
        self.clock = clock
        self.gtin = gtin
        self.nominal_power = nominal_power
        self.energy_scale = energy_scale
        self.power_scale = power_scale
        self.energy_wh = energy_wh
        self.lamp_failure = False
        self.thermal_derating = False
        self.derated_percent = 70
        self.tmask_power = False
        self.no_reply = False
        self.operating_s = 0.0
        self.gear_starts = 1
        self.lamp_starts = 0
        self.lamp_on_s = 0.0
        self.counters = {"lamp_failure": 0, "thermal_derating": 0}
        self._flags = {"lamp_failure": False, "thermal_derating": False}
        self._lamp_was_on = False
        self._t = clock()
        self._now: dict = {}
        self.level: int | None = None  # the last DALI command, None: normal control
        self.on_level: Callable[[int | None], None] | None = None

    def set_level(self, level: int | None) -> None:
        """The bridge contract's command (docs/d4i-bridge.md): DALI arc power 0-254, or
        None to return the lamp to its normal control. ``on_level`` (set by the simulated
        pole) makes the world's lamp follow."""
        if level is not None and not 0 <= level <= 254:
            raise ValueError("DALI arc power is 0 to 254")
        if self.no_reply:
            raise OSError(5, "DALI: no answer from control gear")
        self.level = level
        if self.on_level is not None:
            self.on_level(level)

    def power_cycle(self) -> None:
        self.gear_starts += 1

    def _advance(self) -> None:
        now = self.clock()
        dt = max(0.0, now - self._t)
        self._t = now
        v = self.source()
        lamp_on = bool(v.get("lampOn", v.get("power", 0.0) > 1.0)) and not self.lamp_failure
        power = max(0.0, float(v.get("power", 0.0)))
        percent = 100 if lamp_on else 0
        if self.lamp_failure or not lamp_on:
            power = min(power, STANDBY_W)
        elif self.thermal_derating:
            percent = self.derated_percent
            power = STANDBY_W + (power - STANDBY_W) * percent / 100
        for name in self._flags:
            active = getattr(self, name)
            if active and not self._flags[name]:
                self.counters[name] += 1
            self._flags[name] = active
        if lamp_on and not self._lamp_was_on:
            self.lamp_starts += 1
        self._lamp_was_on = lamp_on
        self.energy_wh += power * dt / 3600.0
        self.operating_s += dt
        if lamp_on:
            self.lamp_on_s += dt
        self._now = {
            "power": power,
            "percent": percent,
            "supplyVoltage": float(v.get("supplyVoltage", 230.0)),
            "powerFactor": float(v.get("powerFactor", 0.95)),
            "driverTemperature": float(v.get("driverTemperature", 45.0)),
            "frequency": int(v.get("frequency", 50)),
        }

    def _header(self, bank: int) -> bytes:
        return bytes([LAST[bank], 0x00, 0xFF, 0x01])

    def read_bank(self, bank: int) -> bytes:
        if self.no_reply:
            raise OSError(5, "DALI: no answer from control gear")
        if bank not in LAST:
            return b""
        self._advance()
        n = self._now
        if bank == 1:
            data = bytes([LAST[1], 0x00, 0xFF]) + uint(self.gtin, 6)
            data += bytes.fromhex("00000000000004d2")  # luminaire serial (the driver skips it)
            data += uint(3, 2) + bytes([24, 17]) + uint(self.nominal_power, 2)
            data += uint(6, 2) + uint(198, 2) + uint(264, 2) + uint(8000, 3)
            data += bytes([70]) + uint(3000, 2) + bytes([3])
            data += b"graphite".ljust(24, b"\0")
            data += b"Pole 17 Main Street".ljust(60, b"\0")  # free text: not for export
            return data
        if bank == 202:
            if self.tmask_power:
                power = bytes([self.power_scale & 0xFF]) + tmask(4)
            else:
                power = scaled(n["power"], self.power_scale, 4)
            energy = scaled(self.energy_wh, self.energy_scale, 6, floor=True)
            return self._header(202) + energy + power
        if bank == 205:
            derating = self._flags["thermal_derating"]
            return (
                self._header(205)
                + uint(self.operating_s, 4)
                + uint(self.gear_starts, 3)
                + uint(round(n["supplyVoltage"] * 10), 2)
                + bytes([n["frequency"], max(0, min(100, round(n["powerFactor"] * 100)))])
                + bytes([0, 0, 0, 0, 0, 0, 0, 0])  # overall, under/over-voltage, power limit
                + bytes([int(derating), self.counters["thermal_derating"], 0, 0])
                + bytes([max(0, min(0xFD, round(n["driverTemperature"]) + 60)), n["percent"]])
            )
        failed = self._flags["lamp_failure"]
        count = self.counters["lamp_failure"]
        return (
            self._header(206)
            + uint(self.lamp_starts, 3) * 2
            + uint(self.lamp_on_s, 4) * 2
            + uint(0 if failed else 1200, 2)
            + uint(0 if failed else 500, 2)
            + bytes([int(failed), count, 0, 0, int(failed), count, 0, 0, 0, 0])
            + bytes([max(0, min(0xFD, round(n["driverTemperature"]) + 55))])
        )
