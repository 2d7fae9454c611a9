"""The conformance kit passes every built-in driver and fails a broken one, clearly."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.descriptors import load_all_sensors, load_sensor
from host_sim.conformance import Rig, run
from tests.vendor.broken_sds011 import BrokenSDS011

ROOT = Path(__file__).resolve().parent.parent
MODELS = sorted(m for m, d in load_all_sensors().items() if d.simulator)


@pytest.mark.parametrize("model", MODELS)
def test_every_builtin_driver_passes(model):
    rows = run(load_sensor(model))
    failing = [(r, why) for r, v, why in rows if v == "FAIL"]
    assert not failing, failing
    assert any(v == "pass" for row, v, _why in rows if row != "reads value")


def test_broken_driver_fails_with_clear_reasons():
    asked = ("wrong checksum", "timeout")  # its reads busy-wait: every row takes seconds
    rows = {r: (v, why) for r, v, why in run(load_sensor("sds011"), BrokenSDS011, rows=asked)}
    assert rows["wrong checksum"][0] == "FAIL"
    assert "wrong checksum was not refused" in rows["wrong checksum"][1]
    assert rows["timeout"][0] == "FAIL" and "blocks" in rows["timeout"][1]


def test_command_line_for_a_vendor_descriptor(tmp_path):
    desc = json.loads((ROOT / "hardware/sensors/sds011.json").read_text())
    desc["driver"] = "tests.vendor.broken_sds011:BrokenSDS011"
    path = tmp_path / "acme_pm.json"
    path.write_text(json.dumps(desc))
    r = subprocess.run(
        # Its reads busy-wait 0.2 s: under a 0.1 s limit every row fails at once.
        [sys.executable, "-m", "host_sim.cli", "conformance", "--descriptor", str(path)]
        + ["--time-limit", "0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "wrong checksum    FAIL" in r.stdout and "failing check(s)" in r.stdout
    ok = subprocess.run(
        [sys.executable, "-m", "host_sim.cli", "conformance", "sds011"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert ok.returncode == 0 and "0 failing check(s)" in ok.stdout


# -- a fault switch that does nothing fails its row ------------------------------------

SWITCH_ROWS = {
    "corrupt_next": "wrong checksum",
    "corrupt_crc_next": "wrong checksum",
    "truncate_next": "truncated frame",
    "misalign": "misaligned frame",
    "stuck": "stuck value",
    "out_of_range": "out of range",
    "no_reply": "unplug/replug",
}


def _dead_switch(sim_cls: type, knob: str) -> type:
    """``sim_cls`` with ``knob`` set-able but without effect: it always reads False."""
    return type(
        f"Dead_{sim_cls.__name__}_{knob}",
        (sim_cls,),
        {knob: property(lambda self: False, lambda self, value: None)},
    )


def _switches() -> list[tuple[str, str]]:
    out = []
    for model in MODELS:
        sim = Rig(load_sensor(model)).sim
        out += [(model, knob) for knob in SWITCH_ROWS if hasattr(sim, knob)]
    return out


@pytest.mark.parametrize(("model", "knob"), _switches())
def test_a_switch_that_does_nothing_fails(model, knob):
    desc = load_sensor(model)
    module, _, name = desc.simulator.partition(":")
    dead = _dead_switch(getattr(importlib.import_module(module), name), knob)
    globals()[dead.__name__] = dead  # where the descriptor's "module:Class" finds it
    desc.simulator = f"{__name__}:{dead.__name__}"
    rows = {r: (v, why) for r, v, why in run(desc)}
    verdict, why = rows[SWITCH_ROWS[knob]]
    assert verdict == "FAIL", (knob, why)
    if knob not in ("corrupt_next", "corrupt_crc_next"):  # those fail as "not refused"
        assert f"{knob} switch changes nothing" in why, why


def test_every_row_is_timed_on_every_bus():
    """A driver that blocks fails "timeout" whatever its bus, within the time limit."""
    import time

    class Stalls:
        def __init__(self, bus, **_kw):
            pass

        def start(self):
            pass

        def read(self):
            time.sleep(2.0)

    for model in ("sds011", "sht31", "d4i"):
        t0 = time.monotonic()
        rows = {r: (v, why) for r, v, why in run(load_sensor(model), Stalls, time_limit_s=0.1)}
        assert rows["timeout"][0] == "FAIL" and "timeout (blocks)" in rows["timeout"][1], rows
        assert time.monotonic() - t0 < 5, model
