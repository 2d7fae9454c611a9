"""The transport seam, proved by a second transport: the same pole and the same signed
bytes as files in a folder (an air gap), verified by pole-admin and by pycose alone."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from host_sim.pole import SimPole
from provisioning.trustlist import TrustList
from tests.polekit import Fixed
from tests.test_interop import ROOT, interop_python


def _run_pole(tmp_path: Path, drop: Path, seconds: float) -> SimPole:
    sp = SimPole(
        "nl-drop-0001",
        tmp_path / "state",
        "mqtt://127.0.0.1:9",  # never used: the transport is the file drop
        Fixed(),
        window_s=1,
        health_s=2,
        config_overrides={"transport": "file", "file_drop": {"dir": str(drop)}},
    )

    async def go() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(seconds, stop.set)
        await sp.run(stop)

    asyncio.run(go())
    return sp


def _admin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "provisioning.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_file_drop_carries_every_kind_and_verifies(tmp_path):
    drop = tmp_path / "drop"
    sp = _run_pole(tmp_path, drop, 4.5)
    tl = TrustList(tmp_path / "trust.sqlite")
    tl.add(sp.pole_id, sp.identity.public_key)
    tl.export_file(tmp_path / "trust.json")
    tl.close()
    folder = drop / sp.pole_id
    kinds = {p.name: sorted(p.iterdir()) for p in folder.iterdir()}
    assert {"birth", "death", "data", "health", "manifest"} <= set(kinds), kinds.keys()
    # Every window the pole sealed is a file, exactly once (file names are ctis).
    assert len(kinds["data"]) == sp.pole.windows_sent >= 3

    r = _admin(
        "verify",
        "--files",
        str(drop),
        "--trust",
        str(tmp_path / "trust.json"),
        "--store",
        str(tmp_path / "store.sqlite"),
    )
    assert r.returncode == 0, r.stderr + r.stdout
    counts = json.loads(r.stderr.strip().splitlines()[-1])
    assert counts.get("accepted") == sum(len(v) for v in kinds.values()), counts
    assert "verified data" in r.stdout and "temperature 18.2 Cel" in r.stdout

    # The same files, verified by pycose with nothing but the trust list.
    lines = "".join(
        json.dumps({"topic": f"poles/{sp.pole_id}/{k}", "payload": f.read_bytes().hex()}) + "\n"
        for k, files in kinds.items()
        for f in files
    )
    out = subprocess.run(
        [
            str(interop_python()),
            str(ROOT / "tests/interop/pycose_verify.py"),
            str(tmp_path / "trust.json"),
        ],
        input=lines,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    results = [json.loads(x) for x in out.stdout.splitlines()]
    assert len(results) == lines.count("\n") and all(x["ok"] for x in results), results[:3]
    assert {x["typ"] for x in results} >= {
        f"application/vnd.lightpole.{k}+cose" for k in ("data", "health", "birth", "manifest")
    }

    # A changed byte in one file: that file is rejected, the command says so.
    victim = kinds["data"][0]
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 1
    victim.write_bytes(bytes(raw))
    r = _admin("verify", "--files", str(drop), "--trust", str(tmp_path / "trust.json"))
    assert r.returncode == 1 and "REJECTED" in r.stdout and "signature" in r.stdout


def test_hostile_files_in_a_drop_are_refused_and_never_block(tmp_path):
    import os

    drop = tmp_path / "drop"
    sp = _run_pole(tmp_path, drop, 2.5)
    tl = TrustList(tmp_path / "trust.sqlite")
    tl.add(sp.pole_id, sp.identity.public_key)
    tl.export_file(tmp_path / "trust.json")
    tl.close()
    data = drop / sp.pole_id / "data"
    os.mkfifo(data / "ffffffffffffffff.cose")  # would hang a naive reader
    (data / "fffffffffffffffe.cose").symlink_to("/etc/passwd")
    (data / "fffffffffffffffd.cose").write_bytes(b"\x00" * (70 * 1024))
    (drop / "a b").mkdir()
    (drop / "a b" / "data").mkdir()
    (drop / "a b" / "data" / "x.cose").write_bytes(b"\xd2")
    r = _admin("verify", "--files", str(drop), "--trust", str(tmp_path / "trust.json"))
    assert r.returncode == 1
    rejected = [line for line in r.stdout.splitlines() if "REJECTED" in line]
    assert len(rejected) == 4, r.stdout
    assert "root:" not in r.stdout + r.stderr  # nothing of the symlink's target is shown
