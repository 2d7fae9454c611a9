"""The full sensor set on one simulated pole, through a real broker: every sensor's data
arrives verified, and a knocked pole and a failed lamp raise alarms within one window."""

from __future__ import annotations

import asyncio
import time

import pytest

from host_sim.world import World
from tests.polekit import Harness

pytestmark = pytest.mark.broker
WINDOW = 5


def alarm_times(h: Harness, name: str) -> list[float]:
    return [
        t
        for t, v in h.timed
        if v.accepted
        and v.kind == "health"
        and any(r.name.endswith("/alarm/" + name) for r in v.records)
    ]


def test_full_set_publishes_and_alarms_within_one_window(mosquitto, tmp_path):
    world = World(seed=3).pole(0)
    world.lamp_override = True  # night: the lamp is commanded on
    events: dict[str, float] = {}

    async def go() -> Harness:
        h = Harness(tmp_path, mosquitto.url, n=1, window_s=WINDOW, world=world, sensors="full")
        h.timed = []
        orig = h._on

        def on(topic, v):
            h.timed.append((time.monotonic(), v))
            orig(topic, v)

        h._on = on
        await h.start()
        await asyncio.sleep(2 * WINDOW + 2)  # settle: tilt window, lamp debounce
        events["knock"] = time.monotonic()
        world.tilt_deg = 12.0  # hit by a truck
        await asyncio.sleep(WINDOW + 2)
        events["fail"] = time.monotonic()
        world.lamp_failed = True
        await asyncio.sleep(WINDOW + 3)
        await h.stop()
        return h

    h = asyncio.run(go())
    assert not h.rejected(), h.rejected()
    names = {r.name.split("/", 1)[1] for v in h.accepted(kind="data") for r in v.records}
    for expected in (
        "sds011/pm2_5/mean",
        "bme280/temperature/mean",
        "sht31/humidity/mean",
        "lis3dh/tilt/mean",
        "lis3dh/sway/mean",
        "ina219/current/mean",
        "d4i/activeEnergy/max",
    ):
        assert expected in names, (expected, sorted(names))
    before = [t for t in alarm_times(h, "pole_tilted") if t < events["knock"]]
    assert not before, "tilt alarm before the pole was hit"
    tilted = [t for t in alarm_times(h, "pole_tilted") if t >= events["knock"]]
    assert tilted and tilted[0] - events["knock"] <= WINDOW + 1, "no tilt alarm within a window"
    assert not [t for t in alarm_times(h, "lamp_failed") if t < events["fail"]]
    failed = [t for t in alarm_times(h, "lamp_failed") if t >= events["fail"]]
    assert failed and failed[0] - events["fail"] <= WINDOW + 1, "no lamp alarm within a window"
