"""Simulated time for fleets and scenarios: real time, or faster from a chosen moment.

``SimClock(start, rate)`` runs simulated wall time ``rate`` times faster than real time
from ``start`` (epoch seconds), and can ``jump`` ahead (a night in an instant). Give
its ``wall`` to the world (``World(clock=sim.wall)``) and ``edge_clock()`` to each pole:
packs are stamped in simulated time and the daemon divides its window, bin and health
sleeps by the rate. Sensor polling and debounce timers stay in real time.
"""

from __future__ import annotations

import asyncio
import calendar
import time

from edge.clock import Clock

UTC_OFFSET_H = 1.0  # the world's local time (host_sim.world)


def local_epoch(date: str, hhmm: str) -> float:
    """Epoch seconds of a local wall time, e.g. ("2026-11-28", "16:57")."""
    t = time.strptime(f"{date} {hhmm}", "%Y-%m-%d %H:%M")
    return calendar.timegm(t) - UTC_OFFSET_H * 3600


class SimClock:
    """Simulated wall time: ``start`` (epoch s) running ``rate`` times real time."""

    def __init__(self, start: float, rate: float = 1.0, ref: float | None = None) -> None:
        """``ref``: the time.monotonic() instant at which the clock reads ``start``
        (default: now). CLOCK_MONOTONIC is shared by every process on the machine, so a
        pole started as its own process keeps its scenario's simulated time."""
        self.rate = rate
        self.start = start
        self.m0 = time.monotonic() if ref is None else ref

    def wall(self) -> float:
        return self.start + (time.monotonic() - self.m0) * self.rate

    def jump(self, to: float) -> None:
        """Skip ahead (a night passes in an instant); the daemons realign their windows."""
        self.start, self.m0 = to, time.monotonic()

    def edge_clock(self) -> Clock:
        return Clock(wall=self.wall, rate=self.rate)

    async def until(self, t: float) -> None:
        """Sleep until simulated time ``t``."""
        while (left := t - self.wall()) > 0:
            await asyncio.sleep(min(left / self.rate, 0.5))
