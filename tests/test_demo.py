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


def test_the_demo_tells_the_story_at_night_and_stops_at_once(tmp_path):
    """--at 21:00: the lamp is on, so the failing lamp shows as lamp_failed beside the
    truck's pole_tilted; Ctrl-C stops everything within two seconds, with no broker
    warnings on the way out."""
    import signal
    import time

    p = subprocess.Popen(
        [sys.executable, "-m", "host_sim.cli", "demo", "--at", "21:00", "--duration", "10",
         "--window", "2", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    seen: list[str] = []
    deadline = time.monotonic() + 90
    assert p.stdout is not None
    for line in p.stdout:
        seen.append(line)
        text = "".join(seen)
        if ("lamp_failed" in text and "pole_tilted" in text) or time.monotonic() > deadline:
            break
    t0 = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    stopped = time.monotonic() - t0
    text = "".join(seen) + out
    assert "ALARMS: lamp_failed" in text and "ALARMS: pole_tilted" in text, text[-3000:]
    assert p.returncode == 0 and stopped < 2.0, (p.returncode, stopped)
    assert "unreachable" not in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    "args, says",
    [
        (["--at", "25:00"], "25:00 is not a time of day"),
        (["--poles", "x"], "x is not a whole number"),
        (["--broker", "mqtt:/broker"], "write the scheme and two slashes"),
        (["--duration", "-1"], "not a positive number"),
    ],
)
def test_a_bad_option_is_one_sentence(args, says):
    r = subprocess.run([sys.executable, "-m", "host_sim.cli", "demo", *args],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)  # fmt: skip
    assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_run_without_arguments_prints_its_usage():
    r = subprocess.run([str(ROOT / "run")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "./run demo" in r.stdout + r.stderr and "./run test" in r.stdout + r.stderr


def test_every_option_of_every_command_has_a_help_line():
    """argparse: no action of pole-edge, pole-admin, pole-sim or pole-console without help."""
    import argparse

    from edge import console, daemon
    from host_sim import cli as sim_cli
    from provisioning import cli as admin_cli

    def parsers(p: argparse.ArgumentParser, path: str):
        yield path, p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from parsers(sub, f"{path} {name}")

    missing = []
    for main, prog in ((daemon.main, "pole-edge"), (admin_cli.main, "pole-admin"),
                       (sim_cli.main, "pole-sim"), (console.main, "pole-console")):  # fmt: skip
        captured: list[argparse.ArgumentParser] = []
        orig = argparse.ArgumentParser.parse_args

        def grab(self, *a, captured=captured, **k):
            captured.append(self)
            raise SystemExit(0)

        argparse.ArgumentParser.parse_args = grab  # type: ignore[method-assign]
        try:
            with pytest.raises(SystemExit):
                main([])
        finally:
            argparse.ArgumentParser.parse_args = orig  # type: ignore[method-assign]
        for path, p in parsers(captured[0], prog):
            for a in p._actions:
                if a.help is None and not isinstance(
                    a, (argparse._HelpAction, argparse._SubParsersAction)
                ):
                    missing.append(f"{path} {'/'.join(a.option_strings) or a.dest}")
    assert not missing, missing
