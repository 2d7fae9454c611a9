"""Interop: pycose (an independent COSE implementation) verifies messages captured from a
real run using only the exported trust list, and the SenML resolves to what the
simulated sensors measured. pycose 1.1.0 needs cbor2 < 6, so it runs in a virtual
environment of its own (created once, kept in .venv-interop)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.polekit import Fixed, Harness

pytestmark = pytest.mark.broker
ROOT = Path(__file__).resolve().parent.parent
IVENV = ROOT / ".venv-interop"
PINS = ["pycose==1.1.0", "cbor2>=5.6,<6"]


def interop_python() -> Path:
    py = IVENV / "bin" / "python"
    stamp = IVENV / ".pins"
    if not py.exists() or not stamp.exists() or stamp.read_text() != " ".join(PINS):
        venv.create(IVENV, with_pip=True, clear=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PINS], check=True, timeout=600)
        stamp.write_text(" ".join(PINS))
    return py


def test_pycose_verifies_with_only_the_trust_list(mosquitto, tmp_path):
    py = interop_python()

    async def go() -> Harness:
        h = Harness(tmp_path, mosquitto.url, n=2, window_s=1)
        await h.start()
        await asyncio.sleep(4)
        await h.stop()
        return h

    h = asyncio.run(go())
    assert h.raw, "nothing captured"
    lines = "".join(json.dumps({"topic": t, "payload": p.hex()}) + "\n" for t, p in h.raw)
    # A tampered copy must fail there too, or the check proves nothing.
    t0, p0 = h.raw[0]
    bad = bytearray(p0)
    bad[-1] ^= 0x01
    lines += json.dumps({"topic": t0, "payload": bytes(bad).hex()}) + "\n"
    r = subprocess.run(
        [str(py), str(ROOT / "tests/interop/pycose_verify.py"), str(tmp_path / "trust.json")],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    results = [json.loads(x) for x in r.stdout.splitlines()]
    assert len(results) == len(h.raw) + 1
    *ours, tampered = results
    assert all(x["ok"] for x in ours), [x for x in ours if not x["ok"]][:3]
    assert not tampered["ok"]
    checked = 0
    for x in ours:
        pole = x["topic"].split("/")[1]
        assert x["iss"] == pole == x["pole_id"]
        for rec in x["records"]:
            field = rec["n"].split("/", 1)[1]
            expected = {**Fixed.CLIMATE, **Fixed.AIR}
            parts = field.split("/")
            if x["topic"].endswith("/data") and len(parts) == 3 and parts[2] == "mean":
                res = {"temperature": 0.01, "humidity": 0.01, "pressure": 1.0}.get(parts[1], 0.05)
                assert abs(rec["v"] - expected[parts[1]]) <= res, rec
                assert rec["t"] > 1_700_000_000
                checked += 1
    assert checked >= 10, checked
    assert sys.version_info >= (3, 11)
