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


def test_no_private_key_bytes_in_any_output_or_file(tmp_path):
    """Run the demo, then scan its output and every file it left (but the key files
    themselves) for the private keys in raw, hex and base64 form."""
    import base64

    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "host_sim.cli",
            "demo",
            "--duration",
            "6",
            "--window",
            "1",
            "--workdir",
            str(tmp_path),
            "--log-level",
            "DEBUG",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    seeds = [p.read_bytes() for p in tmp_path.glob("*/identity.key")]
    assert len(seeds) == 3
    forms = []
    for seed in seeds:
        forms += [
            seed,
            seed.hex().encode(),
            seed.hex().upper().encode(),
            base64.b64encode(seed).rstrip(b"="),
            base64.urlsafe_b64encode(seed).rstrip(b"="),
        ]
    blobs = {"stdout": r.stdout.encode(), "stderr": r.stderr.encode()}
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != "identity.key":
            blobs[str(path)] = path.read_bytes()
    assert len(blobs) > 10
    leaks = [name for name, blob in blobs.items() for f in forms if f in blob]
    assert not leaks, leaks
