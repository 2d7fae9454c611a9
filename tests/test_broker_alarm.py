"""broker_unreachable is raised while the broker is away and cleared once the pole is
connected again (a short-circuit once kept it raised forever after the first outage)."""

from __future__ import annotations

import asyncio

import pytest

from tests.polekit import Harness

pytestmark = pytest.mark.broker


def test_broker_alarm_is_raised_during_an_outage_and_cleared_after(fresh_mosquitto, tmp_path):
    async def go() -> Harness:
        h = Harness(tmp_path, fresh_mosquitto.url, n=1, window_s=1)
        await h.start()
        await asyncio.sleep(2)
        fresh_mosquitto.stop()
        await asyncio.sleep(3)
        fresh_mosquitto.start()
        await asyncio.sleep(8)  # reconnect backoff, backlog, then fresh health reports
        await h.stop(settle=2)
        return h

    h = asyncio.run(go())
    health = sorted(h.accepted(kind="health"), key=lambda v: v.records[0].time)
    flags = ["/alarm/broker_unreachable" in " ".join(r.name for r in v.records) for v in health]
    assert any(flags), "the outage was not reported"
    first = flags.index(True)
    assert not flags[-1] and False in flags[first:], f"never cleared: {flags}"
