"""The conformance kit passes every built-in driver and fails a broken one, clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge.descriptors import load_all_sensors, load_sensor
from host_sim.conformance import run
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
    rows = {r: (v, why) for r, v, why in run(load_sensor("sds011"), BrokenSDS011)}
    assert rows["wrong checksum"][0] == "FAIL"
    assert "wrong checksum was not refused" in rows["wrong checksum"][1]
    assert rows["timeout"][0] == "FAIL" and "blocks" in rows["timeout"][1]


def test_command_line_for_a_vendor_descriptor(tmp_path):
    desc = json.loads((ROOT / "hardware/sensors/sds011.json").read_text())
    desc["driver"] = "tests.vendor.broken_sds011:BrokenSDS011"
    path = tmp_path / "acme_pm.json"
    path.write_text(json.dumps(desc))
    r = subprocess.run(
        [sys.executable, "-m", "host_sim.cli", "conformance", "--descriptor", str(path)],
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
