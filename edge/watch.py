"""Watches that turn readings into alarms in the health stream: a leaning pole and a
lamp that does not do what it was told.

Each watch observes the values a sensor delivers (after the plausibility check) and
raises or clears a named alarm in ``Health``; a newly raised alarm makes the daemon
publish health at once, so the city sees it within one window, not one health period.

- ``TiltWatch``: the LIS3DH driver already averages tilt over seconds (wind sway);
  above ``max_deg`` the alarm ``pole_tilted`` is raised, cleared below
  ``max_deg - hysteresis_deg``.
- ``LampWatch``: the lamp monitor's heuristic (edge/lamp.py) on the measured current
  against the commanded state: ``lamp_failed``, ``lamp_degraded``, ``lamp_day_burner``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edge.health import Health
from edge.lamp import LampMonitor

LAMP_ALARMS = {
    "failed": "lamp_failed",
    "degraded": "lamp_degraded",
    "day_burner": "lamp_day_burner",
}


class TiltWatch:
    def __init__(
        self, health: Health, sensor: str, max_deg: float = 5.0, hysteresis_deg: float = 0.5
    ) -> None:
        self.health = health
        self.sensor = sensor
        self.max_deg = max_deg
        self.clear_deg = max_deg - hysteresis_deg

    def observe(self, sensor: str, values: dict) -> None:
        tilt = values.get("tilt") if sensor == self.sensor else None
        if tilt is None:
            return
        if tilt > self.max_deg:
            self.health.raise_alarm("pole_tilted", f"{tilt:.1f} deg > {self.max_deg} deg")
        elif tilt < self.clear_deg:
            self.health.clear_alarm("pole_tilted")


class LampWatch:
    def __init__(
        self,
        health: Health,
        sensor: str,
        commanded: Callable[[], bool],
        nominal_current: float,
        monotonic: Callable[[], float] = time.monotonic,
        debounce_s: float = 5.0,
        settle_s: float = 2.0,
    ) -> None:
        self.health = health
        self.sensor = sensor
        self.commanded = commanded
        self.monotonic = monotonic
        self.monitor = LampMonitor(nominal_current, debounce_s=debounce_s, settle_s=settle_s)
        self.state = "settling"
        self.override: bool | None = None  # the lamp test by day commands "on" meanwhile

    def observe(self, sensor: str, values: dict) -> None:
        current = values.get("current") if sensor == self.sensor else None
        if current is None:
            return
        commanded = self.override if self.override is not None else self.commanded()
        state = self.monitor.update(commanded, abs(current), self.monotonic())
        if state == self.state or state == "settling":
            return
        self.state = state
        for st, alarm in LAMP_ALARMS.items():
            if st == state:
                self.health.raise_alarm(alarm, f"{abs(current):.2f} A")
            else:
                self.health.clear_alarm(alarm)


def commanded_from_file(path: str) -> Callable[[], bool]:
    """The luminaire controller writes '1' (on) or '0' (off) to ``path``."""

    def commanded() -> bool:
        try:
            with open(path) as f:
                return f.read().strip() == "1"
        except OSError:
            return False

    return commanded


def commanded_by_schedule(
    on: str = "17:00", off: str = "07:30", clock: Callable[[], float] = time.time
) -> Callable[[], bool]:
    """On between ``on`` and ``off`` local time (a fixed dusk-to-dawn schedule)."""

    def minutes(hhmm: str) -> int:
        h, m = hhmm.split(":")
        return int(h) * 60 + int(m)

    t_on, t_off = minutes(on), minutes(off)

    def commanded() -> bool:
        lt = time.localtime(clock())
        now = lt.tm_hour * 60 + lt.tm_min
        return now >= t_on or now < t_off if t_on > t_off else t_on <= now < t_off

    return commanded
