"""A small physical world that drives the simulated sensors: deterministic for a seed.

Temperature follows a day curve (coolest before dawn, warmest mid-afternoon),
humidity moves against it, pressure drifts slowly, and particulates rise with the
morning and evening traffic peaks. Each pole gets its own offsets, so a fleet does
not report identical streets. Time is whatever clock the world is given
(wall-clock, or accelerated simulated time).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable


class World:
    def __init__(
        self,
        seed: int = 1,
        clock: Callable[[], float] = time.time,
        utc_offset_h: float = 1.0,
        dusk_h: float = 17.0,
        dawn_h: float = 7.5,
    ) -> None:
        """``dusk_h``/``dawn_h``: local hours at which the lamps are switched on and off
        (the lighting circuit's schedule; scenarios state their expectations from them)."""
        self.seed = seed
        self.clock = clock
        self.utc_offset_h = utc_offset_h
        self.dusk_h = dusk_h
        self.dawn_h = dawn_h
        self.heat_wave = 0.0  # extra °C, for scenarios

    def hour(self, t: float) -> float:
        return ((t / 3600.0) + self.utc_offset_h) % 24.0

    def pole(self, index: int) -> PoleWorld:
        return PoleWorld(self, index)


class PoleWorld:
    """What the sensors of one pole experience."""

    def __init__(self, world: World, index: int) -> None:
        self.world = world
        rng = random.Random(world.seed * 1_000_003 + index)
        self.rng = rng
        self.t_offset = rng.uniform(-1.0, 1.0)
        self.pm_factor = rng.uniform(0.7, 1.4)
        self.pressure_offset = rng.uniform(-150, 150)
        # Scenario knobs: what happens to this pole.
        self.tilt_deg = rng.uniform(0.2, 1.2)  # a new pole is not perfectly plumb
        self.azimuth_deg = rng.uniform(0, 360)
        self.lamp_failed = False
        self.lamp_override: bool | None = None  # force the command on/off (tests)
        self.dali_level: int | None = None  # set over DALI (the lamp test by day)
        # A controller fed from the switched lighting circuit has power only while the
        # lamps are commanded on: it stops at dawn and boots again at dusk.
        self.switched_circuit = False
        self.nominal_current = 2.5  # A, a 60 W LED on a 24 V DC feed

    def climate(self) -> dict[str, float]:
        t = self.world.clock()
        h = self.world.hour(t)
        temp = 11.0 + 6.0 * math.sin(2 * math.pi * (h - 9.0) / 24.0) + self.t_offset
        temp += self.world.heat_wave + self.rng.gauss(0, 0.05)
        rh = min(99.0, max(20.0, 75.0 - 2.5 * (temp - 11.0) + self.rng.gauss(0, 0.3)))
        p = 101325.0 + self.pressure_offset + 300.0 * math.sin(2 * math.pi * t / (5 * 86400))
        return {"temperature": temp, "humidity": rh, "pressure": p + self.rng.gauss(0, 2)}

    def air(self) -> dict[str, float]:
        h = self.world.hour(self.world.clock())
        traffic = math.exp(-((h - 8.0) ** 2) / 2.0) + 0.8 * math.exp(-((h - 17.5) ** 2) / 3.0)
        pm25 = max(0.0, self.pm_factor * (6.0 + 14.0 * traffic) + self.rng.gauss(0, 0.8))
        pm10 = pm25 * 1.6 + abs(self.rng.gauss(0, 1.0))
        return {"pm2_5": pm25, "pm10": pm10}

    # -- structure and lamp ------------------------------------------------------------
    def tilt(self) -> dict[str, float]:
        wind = 0.15 + 0.1 * math.sin(self.world.clock() / 600.0)
        return {"tilt": self.tilt_deg, "azimuth": self.azimuth_deg, "sway": max(0.0, wind)}

    def lamp_commanded(self) -> bool:
        """Dusk to dawn: on from 17:00 to 07:30 local time (``World.dusk_h``/``dawn_h``)."""
        if self.lamp_override is not None:
            return self.lamp_override
        h = self.world.hour(self.world.clock())
        return h >= self.world.dusk_h or h < self.world.dawn_h

    def powered(self) -> bool:
        """Whether the pole's controller has power: always on a permanent feed; on the
        switched lighting circuit only while the lamps are commanded on."""
        return self.lamp_commanded() if self.switched_circuit else True

    def lamp_on(self) -> bool:
        """Whether the lamp is switched on: a DALI command (the pole's lamp test) wins over
        the lighting schedule while it lasts."""
        if self.dali_level is not None:
            return self.dali_level > 0
        return self.lamp_commanded()

    def lamp_supply(self) -> dict[str, float]:
        burning = self.lamp_on() and not self.lamp_failed
        current = self.nominal_current * (0.97 + 0.02 * self.rng.random()) if burning else 0.002
        return {"current": current, "voltage": 24.0 + self.rng.gauss(0, 0.02)}

    def luminaire(self) -> dict[str, float]:
        burning = self.lamp_on() and not self.lamp_failed
        return {
            "power": 60.0 if burning else 0.0,
            "lampOn": burning,
            "driverTemperature": 38.0 + (12.0 if burning else 0.0),
        }
