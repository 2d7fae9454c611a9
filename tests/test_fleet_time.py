"""A fleet in accelerated simulated time: 60 s windows every real second, stamped in
simulated time, verified through a real broker."""

from __future__ import annotations

import asyncio
import os

import pytest

from host_sim.fleet import Fleet
from host_sim.simtime import SimClock, local_epoch
from provisioning.receiver import run_receiver
from provisioning.trustlist import load_keys
from provisioning.verifier import Verifier

pytestmark = pytest.mark.broker


def test_fleet_runs_sixty_times_faster(mosquitto, tmp_path):
    prefix = "ft" + os.urandom(3).hex()
    start = local_epoch("2026-06-21", "12:00")
    clock = SimClock(start, rate=60)
    got = []

    async def go() -> None:
        fleet = Fleet(3, tmp_path, mosquitto.url, window_s=60, prefix=prefix, clock=clock)
        verifier = Verifier(load_keys(tmp_path / "trust.json"), topic_prefix=prefix)
        stop_recv, stop = asyncio.Event(), asyncio.Event()
        ready = asyncio.Event()
        recv = asyncio.create_task(
            run_receiver(
                mosquitto.url, verifier, lambda t, v: got.append(v), stop_recv, ready=ready
            )
        )
        await asyncio.wait_for(ready.wait(), 15)
        run = asyncio.create_task(fleet.run(stop))
        await asyncio.sleep(6)
        stop.set()
        await run
        await asyncio.sleep(1)
        stop_recv.set()
        await recv

    asyncio.run(go())
    data = [v for v in got if v.accepted and v.kind == "data"]
    assert not [v for v in got if v.status == "rejected"]
    per_pole: dict[str, list[float]] = {}
    for v in data:
        if v.records[0].value == 60:  # not the last, partial window sealed at the stop
            per_pole.setdefault(v.pole_id, []).append(v.records[0].time)
    assert len(per_pole) == 3
    for ends in per_pole.values():
        ends.sort()
        assert len(ends) >= 3, ends  # six real seconds hold six simulated minutes
        assert all(b - a == 60 for a, b in zip(ends, ends[1:], strict=False)), ends
        assert start < ends[0] < start + 10 * 60  # stamped in simulated time, not now
