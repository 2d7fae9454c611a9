"""The plugin as another project's CI would use it: poles appear, a platform sees
verified readings using only the trust list the fixture hands over."""

from __future__ import annotations

import asyncio

import pytest

from provisioning.receiver import run_receiver
from provisioning.trustlist import load_keys
from provisioning.verifier import Verifier

pytestmark = pytest.mark.broker


def test_fleet_fixture_gives_verifiable_poles(lightpole_fleet):
    fleet = lightpole_fleet(n=3, window_s=1, prefix="ci")
    verifier = Verifier(load_keys(fleet.trust_json), topic_prefix="ci")
    seen = []

    async def platform() -> None:
        stop, ready = asyncio.Event(), asyncio.Event()
        task = asyncio.create_task(
            run_receiver(fleet.broker_url, verifier, lambda t, v: seen.append(v), stop, ready=ready)
        )
        await asyncio.wait_for(ready.wait(), 10)
        for _ in range(40):
            await asyncio.sleep(0.25)
            if len({v.pole_id for v in seen if v.accepted and v.kind == "data"}) == 3:
                break
        stop.set()
        await task

    asyncio.run(platform())
    fleet.stop()
    assert {v.pole_id for v in seen if v.accepted and v.kind == "data"} == {
        "nl-sim-00001",
        "nl-sim-00002",
        "nl-sim-00003",
    }
    assert not [v for v in seen if v.status == "rejected"]
