"""The lamp test by day on a whole simulated pole, through a real broker: by day the lamp
is off by its schedule, so the pole switches it on over DALI to prove it burns, and a
dead lamp raises ``lamp_test_failed``; the lamp goes back to its schedule afterwards."""

from __future__ import annotations

import asyncio

import pytest

from host_sim.world import World
from provisioning.commission import Commissioning
from tests.polekit import Harness

pytestmark = pytest.mark.broker


def health_fields(h: Harness) -> dict[str, object]:
    """The newest health message's fields, without the pole's base name."""
    reports = sorted(h.accepted(kind="health"), key=lambda v: v.records[0].time or 0)
    assert reports, "no health message arrived"
    return {r.name.split("/", 1)[1]: r.value for r in reports[-1].records}


def commission(h: Harness) -> Commissioning:
    """Judge the verified messages as ``pole-admin commission`` does."""
    job = Commissioning(h.poles[0].config.pole_id)
    for topic, v in h.verdicts:
        job.observe(topic, v)
    return job


def run_day(tmp_path, mosquitto, lamp_failed: bool) -> tuple[Harness, object]:
    world = World(seed=5).pole(0)
    world.lamp_override = False  # day: the schedule has the lamp off
    world.lamp_failed = lamp_failed
    levels: list[object] = []

    async def go() -> Harness:
        h = Harness(
            tmp_path, mosquitto.url, n=1, window_s=2, world=world, sensors="full",
            config_overrides={"lamp": {"test_s": 10}},
        )  # fmt: skip
        gear = h.poles[0].d4i
        seen = gear.on_level
        gear.on_level = lambda level: (levels.append(level), seen(level))  # type: ignore[misc]
        await h.start()
        await asyncio.sleep(5 + 10 + 5)  # first test after 5 s, at most 10 s, a report
        await h.stop()
        return h

    return asyncio.run(go()), (world, levels)


def test_lamp_test_by_day_proves_a_burning_lamp(mosquitto, tmp_path):
    h, (world, levels) = run_day(tmp_path, mosquitto, lamp_failed=False)
    assert not h.rejected(), h.rejected()
    fields = health_fields(h)
    assert fields.get("counter/lamp_test.pass", 0) >= 1, fields
    assert "counter/lamp_test.fail" not in fields, fields
    assert not [k for k in fields if k.startswith("alarm/lamp")], fields
    assert levels[:2] == [254, None], levels  # switched on, then handed back
    assert world.dali_level is None and not world.lamp_on()  # back on its schedule
    # While it burned, the current was measured: some window saw the lamp's current.
    peaks = [
        r.value
        for v in h.accepted(kind="data")
        for r in v.records
        if r.name.endswith("ina219/current/max")
    ]
    assert peaks and max(peaks) > 0.8 * world.nominal_current, peaks
    job = commission(h)  # what a technician commissioning at noon is told
    assert job.complete() and "ok    lamp burns when commanded" in job.report(), job.report()


def test_lamp_test_by_day_finds_a_dead_lamp(mosquitto, tmp_path):
    h, (world, levels) = run_day(tmp_path, mosquitto, lamp_failed=True)
    fields = health_fields(h)
    assert fields.get("counter/lamp_test.fail", 0) >= 1, fields
    assert "counter/lamp_test.pass" not in fields, fields
    assert fields.get("alarm/lamp_test_failed") is True, fields
    assert "switched on by day" in str(fields.get("alarm/lamp_test_failed/detail")), fields
    assert levels[:2] == [254, None], levels
    assert world.dali_level is None
    job = commission(h)  # a dead lamp fails commissioning at noon
    report = job.report()
    assert job.complete() and not job.passed(), report
    assert "FAIL  lamp burns when commanded" in report and "lamp_test_failed" in report, report
