"""The release check: a wheel built from this checkout, installed into a fresh virtual
environment outside it, runs the three commands with everything they need (board
profiles and sensor descriptors are package data, not files of the checkout)."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.test_interop import ROOT

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict | None = None, timeout: float = 600):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    return r


def test_a_wheel_in_a_fresh_venv_runs_the_three_commands(tmp_path):
    dist = tmp_path / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        cwd=tmp_path,
    )
    wheel = next(dist.glob("lightpole_gateway-*.whl"))
    env_dir = tmp_path / "fresh"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    _run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "-q",
            "--require-hashes",
            "-r",
            str(ROOT / "requirements.lock"),
        ],
        cwd=tmp_path,
    )
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=tmp_path)
    # Nothing of the checkout may leak in: run elsewhere, without PYTHONPATH.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LIGHTPOLE_HARDWARE")}
    bin_ = env_dir / "bin"
    work = tmp_path / "site"
    work.mkdir()
    _run(
        [
            str(bin_ / "pole-admin"),
            "identity",
            "create",
            "--state-dir",
            "state",
            "--pole-id",
            "nl-whl-0001",
        ],
        cwd=work,
        env=env,
    )
    (work / "pole.toml").write_text(
        'pole_id = "nl-whl-0001"\nstate_dir = "state"\nboard = "linux-controller"\n'
        '[mqtt]\nurl = "mqtt://broker.example:1883"\n'
    )
    r = _run([str(bin_ / "pole-edge"), "--config", "pole.toml", "--check"], cwd=work, env=env)
    assert "sensor bme280: bme280 on i2c" in r.stdout and "configuration OK" in r.stdout
    r = _run([str(bin_ / "pole-admin"), "audit", "--board", "linux-controller"], cwd=work, env=env)
    assert "sds011/pm2_5/mean" in r.stdout
    r = _run([str(bin_ / "pole-sim"), "conformance"], cwd=work, env=env)
    assert "FAIL" not in r.stdout and "bme280" in r.stdout, r.stdout
    site = _run(
        [str(py), "-c", "import hardware, edge; print(hardware.__file__, edge.__file__)"],
        cwd=work,
        env=env,
    ).stdout
    assert str(ROOT) not in site, site  # the installed copy, not the checkout
