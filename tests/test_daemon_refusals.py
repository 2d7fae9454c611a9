"""The daemon refuses what cannot work, with one sentence each: a second daemon on the
same state dir, a pole id that is not the key's, a broker URL that does not parse
exactly; and `pole-edge --check` says what would run without touching anything."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from edge.state import LOCK_FILE, create_identity
from tests.test_interop import ROOT


def _config(tmp: Path, pole_id: str = "nl-chk-0001", url: str = "mqtt://127.0.0.1:9") -> Path:
    cfg = tmp / "pole.toml"
    cfg.write_text(
        f'pole_id = "{pole_id}"\n'
        f'state_dir = "state"\n'
        f'board = "linux-controller"\n'
        f'transport = "file"\n'
        f'[mqtt]\nurl = "{url}"\n'
        f'[file_drop]\ndir = "drop"\n'
    )
    return cfg


def _edge(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge.daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def test_check_prints_what_would_run_and_touches_nothing(tmp_path):
    create_identity(tmp_path / "state", "nl-chk-0001")
    before = sorted(p.name for p in (tmp_path / "state").iterdir())
    r = _edge("--config", str(_config(tmp_path)), "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sensor sds011: sds011 on uart /dev/ttyUSB0" in r.stdout
    assert "transport: file drop into" in r.stdout and "configuration OK" in r.stdout
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == before  # no counters
    assert not (tmp_path / "drop").exists()


def test_check_reports_a_missing_key(tmp_path):
    r = _edge("--config", str(_config(tmp_path)), "--check")
    assert r.returncode == 2 and "no pole identity" in r.stderr, r.stderr


def test_a_pole_id_that_is_not_the_keys_is_refused(tmp_path):
    create_identity(tmp_path / "state", "nl-chk-0001")
    r = _edge("--config", str(_config(tmp_path, pole_id="nl-chk-0002")))
    assert r.returncode == 2
    assert "belongs to pole nl-chk-0001, not nl-chk-0002" in r.stderr, r.stderr


def test_a_broker_url_with_one_slash_is_refused(tmp_path):
    create_identity(tmp_path / "state", "nl-chk-0001")
    for url in ("mqtt:/broker", "mqtt://broker:", "mqtt://broker/x", "tcp://broker"):
        r = _edge("--config", str(_config(tmp_path, url=url)))
        assert r.returncode == 2 and "mqtt.url" in r.stderr, (url, r.stderr)


def test_a_second_daemon_on_the_same_state_dir_exits_naming_the_first(tmp_path):
    create_identity(tmp_path / "state", "nl-chk-0001")
    cfg = _config(tmp_path)
    first = subprocess.Popen(
        [sys.executable, "-m", "edge.daemon", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        lock = tmp_path / "state" / LOCK_FILE
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (lock.exists() and lock.read_text().strip()):
            time.sleep(0.1)
        r = _edge("--config", str(cfg))
        assert r.returncode == 2, r.stderr
        assert f"pid {first.pid}" in r.stderr and "already running" in r.stderr, r.stderr
        assert first.poll() is None  # the first one is untouched
    finally:
        first.terminate()
        first.wait(15)
    # Once the first has stopped, the state dir is free again (the kernel drops the lock).
    r = _edge("--config", str(cfg), "--check")
    assert r.returncode == 0
