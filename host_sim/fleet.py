"""Fleets of simulated poles in one process: each the real edge pipeline (drivers, windows,
signing, spool, publishing) with its own identity and its own MQTT connection.

Deterministic for a seed (the world, not the scheduler). Used by ``pole-sim fleet``,
by the fleet benchmark, and by the pytest plugin for other people's CI.
"""

from __future__ import annotations

import asyncio
import resource
from pathlib import Path

from host_sim.pole import SimPole
from host_sim.simtime import SimClock
from host_sim.world import World
from provisioning.trustlist import TrustList


def raise_fd_limit() -> int:
    """Each pole holds a pty pair, a serial fd, a socket and SQLite files: lift the soft
    file-descriptor limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Fleet:
    def __init__(
        self,
        n: int,
        work: Path,
        broker_url: str,
        window_s: int = 10,
        seed: int = 1,
        sensors: str = "basic",
        prefix: str = "poles",
        id_format: str = "nl-sim-{:05d}",
        large: bool = False,
        spread_windows: bool | None = None,
        clock: SimClock | None = None,
    ) -> None:
        """``large``: settings for hundreds of poles per process (no driver threads, a
        slower pty pump, health every 5 windows, spool synchronous=NORMAL: hundreds of
        poles share one disk here, where each real pole has its own flash).
        ``spread_windows`` (default: with ``large``): pole i's windows start i mod
        window_s seconds after the aligned second (config ``window_offset_s``), as a
        district configured with ``window_offset_s = "auto"`` does; otherwise every
        pole closes its window on the same second."""
        spread = large if spread_windows is None else spread_windows
        # ``clock``: accelerated simulated time (host_sim.simtime) for the world and every
        # pole; None: real time.
        raise_fd_limit()
        self.world = World(seed=seed, clock=clock.wall) if clock else World(seed=seed)
        self.clock = clock
        self.work = work
        trust = TrustList(work / "trust.sqlite")
        self.poles: list[SimPole] = []
        for i in range(n):
            pid = id_format.format(i + 1)
            sp = SimPole(
                pid,
                work / "poles" / pid,
                broker_url,
                self.world.pole(i),
                window_s=window_s,
                health_s=window_s * 5 if large else None,
                topic_prefix=prefix,
                sensors=sensors,
                driver_timeout_s=0 if large else 2.0,
                pty_tick=0.25 if large else 0.05,
                config_overrides={"window_offset_s": i % window_s} if spread else None,
                clock=clock.edge_clock() if clock else None,
            )
            trust.add(pid, sp.identity.public_key)
            self.poles.append(sp)
        trust.export_file(work / "trust.json")
        trust.close()

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(p.run(stop) for p in self.poles), return_exceptions=True)
