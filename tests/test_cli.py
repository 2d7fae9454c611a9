"""The technician and city commands, as a person would type them."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

from provisioning.cli import main as admin


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "provisioning.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_identity_trust_export_revoke(tmp_path, capsys):
    state = tmp_path / "pole"
    r = run("identity", "create", "--state-dir", str(state), "--pole-id", "nl-ex-0001")
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    key = (state / "identity.key").read_bytes()
    assert stat.S_IMODE((state / "identity.key").stat().st_mode) == 0o600
    assert key.hex() not in r.stdout + r.stderr
    # Running it again keeps the key (idempotent) and says so.
    r2 = run("identity", "create", "--state-dir", str(state), "--pole-id", "nl-ex-0001")
    assert r2.returncode == 0 and json.loads(r2.stdout)["public_key"] == record["public_key"]
    assert "kept" in r2.stderr

    db = str(tmp_path / "trust.sqlite")
    assert admin(["trust", "add", "--db", db, "--state-dir", str(state)]) == 0
    assert admin(["trust", "add", "--db", db, "--state-dir", str(state)]) == 0  # idempotent
    out = tmp_path / "trust.json"
    assert admin(["trust", "export", "--db", db, "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["format"] == "lightpole-trust-list" and len(doc["keys"]) == 1
    k = doc["keys"][0]
    assert (k["pole_id"], k["kid"], k["public_key"], k["status"]) == (
        "nl-ex-0001",
        record["kid"],
        record["public_key"],
        "active",
    )
    assert key.hex() not in out.read_text()
    assert admin(["trust", "revoke", "--db", db, "--pole-id", "nl-ex-0001"]) == 0
    admin(["trust", "export", "--db", db, "--out", str(out)])
    assert json.loads(out.read_text())["keys"][0]["status"] == "revoked"
    capsys.readouterr()


def test_errors_say_what_to_do(tmp_path):
    r = run("identity", "show", "--state-dir", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "pole-admin identity create" in r.stderr
    r = run("--help")
    assert r.returncode == 0 and "trust" in r.stdout and "verify" in r.stdout


def test_daemon_reports_bad_config(tmp_path):
    cfg = tmp_path / "pole.toml"
    cfg.write_text('pole_id = "-bad"\n')
    r = subprocess.run(
        [sys.executable, "-m", "edge.daemon", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "pole_id" in r.stderr
    cfg.write_text('pole_id = "nl-ex-0001"\nstate_dir = "st"\n')
    r = subprocess.run(
        [sys.executable, "-m", "edge.daemon", "-c", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "pole-admin identity create" in r.stderr
