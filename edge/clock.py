"""Is the wall clock trustworthy? After a power cut a controller without a battery-backed
RTC wakes up in 1970 (or at its last shutdown) until NTP syncs.

We never invent an absolute time: while the clock is not valid, packs carry SenML
relative time (bt = 0, "roughly now") plus the pole's uptime and boot number, and the
CWT iat is left out. Health messages sent once the clock is valid carry both the
wall time and the uptime, so a receiver can place earlier packs of the same boot on
the time axis (a later correction). See docs/wire-format.md, "Time".

Validity test: the wall clock is at or after ``valid_after`` (default: 2026-01-01,
before this software existed, so an unset clock fails it). On controllers that run an
NTP client, ``sync_file`` (e.g. systemd-timesyncd's /run/systemd/timesync/synchronized)
can be required as well.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable

VALID_AFTER = 1_767_225_600  # 2026-01-01T00:00:00Z


class Clock:
    """The pole's one notion of time: ``wall`` (maybe not yet valid), ``monotonic`` (never
    jumps), ``valid()``, ``uptime()`` and ``sleep_until(wall_time)``."""

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        valid_after: float = VALID_AFTER,
        sync_file: str | None = None,
        rate: float = 1.0,
    ) -> None:
        """``rate``: seconds of ``wall`` per real second. 1 on a pole; a simulator running
        accelerated time passes a faster ``wall`` and its rate, so the daemon sleeps
        wall-clock intervals (windows, bins, health) divided by it."""
        self.rate = rate
        self.wall = wall
        self.monotonic = monotonic
        self.valid_after = valid_after
        self.sync_file = sync_file
        self._t0 = monotonic()

    def valid(self) -> bool:
        if self.wall() < self.valid_after:
            return False
        return self.sync_file is None or os.path.exists(self.sync_file)

    async def sleep_until(self, t: float) -> None:
        """Sleep until the wall clock reads ``t`` (at once if it already does). A clock
        that runs ``rate`` times faster (a simulator) is waited for in real seconds."""
        wait = t - self.wall()
        if wait > 0:
            await asyncio.sleep(wait / self.rate)

    def uptime(self) -> float:
        """Seconds since this process started counting (monotonic, never jumps)."""
        return self.monotonic() - self._t0
