"""Issue 8: every scenario of the catalogue runs, with its expectations checked at the
verifier (signed, verified messages only), and prints its report table."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from host_sim import scenarios

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("name", list(scenarios.CATALOGUE))
def test_scenario_meets_its_expectations(name, mosquitto, tmp_path, capsys):
    rows = asyncio.run(scenarios.run([name], mosquitto.url, tmp_path, say=lambda _m: None))
    table = scenarios.format_table(rows)
    with capsys.disabled():
        print("\n" + table, end="")
    assert rows and all(r.scenario == name for r in rows)
    assert all(r.ok for r in rows), table


def test_without_its_fault_a_scenario_fails_its_expectation(mosquitto, tmp_path):
    """A control run: the truck does not come, so 'alarm within one window' must fail
    while 'the other pole has no alarm' still holds. The checks can fail."""
    rows = asyncio.run(
        scenarios.run(["pole-knocked"], mosquitto.url, tmp_path, say=lambda _m: None, control=True)
    )
    assert [r.ok for r in rows] == [False, True], scenarios.format_table(rows)
    assert rows[0].observed == "no alarm"


def test_cli_lists_and_refuses_unknown_names():
    exe = [sys.executable, "-m", "host_sim.cli", "scenario"]
    out = subprocess.run([*exe, "--list"], capture_output=True, text=True, check=True).stdout
    assert all(name in out for name in scenarios.CATALOGUE)
    r = subprocess.run([*exe, "no-such-thing"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown scenario" in r.stdout and "day-night" in r.stdout


def test_sim_clock_runs_fast_and_jumps():
    clock = scenarios.SimClock(scenarios.local_epoch("2026-11-28", "16:59"), rate=60)
    t0 = clock.wall()
    asyncio.run(clock.until(t0 + 30))  # 30 simulated seconds: half a real second
    assert 30 <= clock.wall() - t0 < 60
    clock.jump(scenarios.local_epoch("2026-11-29", "07:29"))
    assert scenarios._hm(clock.wall()) == "07:29"
    assert clock.edge_clock().rate == 60


def test_docs_list_every_scenario():
    doc = (Path(__file__).parent.parent / "docs" / "scenarios.md").read_text()
    for name in scenarios.CATALOGUE:
        assert f"`{name}`" in doc, name
