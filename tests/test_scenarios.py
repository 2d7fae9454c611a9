"""Issue 8, "Scenarios": every scenario of the catalogue runs against a real Mosquitto, with
its expectations checked at the verifier (signed, verified messages only), and prints
its report table. The checks can fail: a control run without the fault fails, and a
counter used for two messages or a message from an unknown key fails the integrity row.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from edge import senml
from edge.cose import Signer, cti_bytes
from edge.state import create_identity, load_identity
from host_sim import scenarios
from host_sim.simtime import SimClock

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.broker
@pytest.mark.parametrize("name", list(scenarios.CATALOGUE))
def test_scenario_meets_its_expectations(name, mosquitto, tmp_path, capsys):
    plots = tmp_path / "plots"
    rows = asyncio.run(
        scenarios.run([name], mosquitto.url, tmp_path, say=lambda _m: None, plots=plots)
    )
    table = scenarios.format_table(rows)
    with capsys.disabled():
        print("\n" + table, end="")
    assert rows and all(r.scenario == name for r in rows)
    assert all(r.ok for r in rows), table
    # Its picture: an SVG with a line per pole of the verified series that tell it.
    svg = (plots / f"{name}.svg").read_text()
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "nl-sc" in svg and "<path" in svg


@pytest.mark.broker
def test_without_its_fault_a_scenario_fails_its_expectation(mosquitto, tmp_path):
    """A control run: the same two afternoons without the heat wave, so every pole's
    'eight degrees warmer' must fail while the integrity row still holds."""
    rows = asyncio.run(
        scenarios.run(["heat-wave"], mosquitto.url, tmp_path, say=lambda _m: None, control=True)
    )
    assert [r.ok for r in rows] == [False, False, False, True], scenarios.format_table(rows)
    assert all("(+0.0" in r.observed or "(-0.0" in r.observed for r in rows[:3]), rows


def _pack(pole_id: str, value: float) -> bytes:
    base = [(senml.BN, pole_id + "/"), (senml.BT, 1_790_000_000)]
    return senml.encode_pack([[*base, (0, "window"), (1, "s"), (2, int(value))]])


def test_integrity_row_fails_on_a_reused_cti_or_an_unknown_key(tmp_path):
    """The verifier calls a second message under a seen cti a duplicate; the stage compares
    the bytes, so a counter reused for different content fails the row, as does a message
    signed by a key that is not on the trust list."""
    st = scenarios.Stage(tmp_path, "mqtt://127.0.0.1:1", 1, sensors="basic", processes=(0,))
    pid = st.ids[0]
    ident = load_identity(tmp_path / pid, pid)
    signer = Signer(ident.seed, pid)
    topic = f"{st.prefix}/{pid}/data"

    def deliver(payload: bytes) -> None:
        st._on(topic, st._check(topic, payload))

    deliver(signer.sign("data", _pack(pid, 1.0), None, cti_bytes(7, 1)))
    deliver(signer.sign("data", _pack(pid, 1.0), None, cti_bytes(7, 1)))  # a QoS 1 redelivery
    assert st.integrity("t").ok, st.integrity("t")
    deliver(signer.sign("data", _pack(pid, 2.0), None, cti_bytes(7, 1)))  # same cti, new content
    row = st.integrity("t")
    assert not row.ok and "1 ctis reused" in row.observed

    st.seen.clear()
    stranger = create_identity(tmp_path / "stranger", pid)  # right name, unregistered key
    deliver(Signer(stranger.seed, pid).sign("data", _pack(pid, 3.0), None, cti_bytes(8, 1)))
    deliver(signer.sign("data", _pack(pid, 4.0), None, cti_bytes(9, 1)))
    row = st.integrity("t")
    assert not row.ok and "1 rejected (kid: unknown key" in row.observed


def test_cli_lists_and_refuses_unknown_names():
    exe = [sys.executable, "-m", "host_sim.cli", "scenario"]
    out = subprocess.run([*exe, "--list"], capture_output=True, text=True, check=True).stdout
    assert all(name in out for name in scenarios.CATALOGUE)
    r = subprocess.run([*exe, "no-such-thing"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown scenario" in r.stdout and "day-night" in r.stdout


def test_sim_clock_runs_fast_jumps_and_is_shared_with_pole_processes():
    clock = scenarios.SimClock(scenarios.local_epoch("2026-11-28", "16:59"), rate=60)
    t0 = clock.wall()
    asyncio.run(clock.until(t0 + 30))  # 30 simulated seconds: half a real second
    assert 30 <= clock.wall() - t0 < 60
    clock.jump(scenarios.local_epoch("2026-11-29", "07:29"))
    assert scenarios._hm(clock.wall()) == "07:29"
    assert clock.edge_clock().rate == 60
    # A pole process is handed (start, monotonic reference, rate) and reads the same
    # time: CLOCK_MONOTONIC is one clock for every process on the machine.
    code = (
        "import sys; from host_sim.simtime import SimClock as C; "
        "s, m, r = map(float, sys.argv[1:]); print(C(s, r, ref=m).wall())"
    )
    args = [repr(clock.start), repr(clock.m0), repr(clock.rate)]
    out = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    assert 0 <= clock.wall() - float(out) < 60 * 5  # the child ran within the last 5 s
    assert abs(SimClock(clock.start, clock.rate, ref=clock.m0).wall() - clock.wall()) < 1


def test_docs_list_every_scenario():
    doc = (ROOT / "docs" / "scenarios.md").read_text()
    for name in scenarios.CATALOGUE:
        assert f"`{name}`" in doc, name
