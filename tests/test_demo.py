"""The README's demo command, shortened: three poles, verified readings, clean exit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parent.parent


def test_demo_shows_verified_readings_from_three_poles(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "host_sim.cli",
            "demo",
            "--duration",
            "12",
            "--window",
            "2",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=dict(os.environ),
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    poles = set(re.findall(r"(nl-demo-000\d)\s+verified data .*temperature", r.stdout))
    assert poles == {"nl-demo-0001", "nl-demo-0002", "nl-demo-0003"}, r.stdout[-2000:]
    assert "REJECTED" not in r.stdout
    # Everything it started is gone: no broker left listening, no pole processes.
    assert "verified" in r.stdout.splitlines()[-1]
