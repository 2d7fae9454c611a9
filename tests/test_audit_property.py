"""The traffic equals the audit: for random valid configurations (sensor sets, privacy
settings, a valid clock or none), a real pole publishes through a real Mosquitto and
every record of every verified message lies within what `pole-admin audit` derives
from that configuration. And the docs' generated tables are the code's."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.clock import VALID_AFTER
from edge.config import PoleConfig
from edge.descriptors import load_sensor
from edge.manifest import allowed, output_schema
from host_sim.pole import SimPole
from host_sim.simtime import SimClock
from host_sim.world import World
from provisioning.receiver import run_receiver
from provisioning.trustlist import KeyRecord
from provisioning.verifier import Verifier
from tests.test_interop import ROOT

pytestmark = pytest.mark.broker

MODELS = ("sds011", "bme280", "sht31", "lis3dh", "ina219", "d4i", "pms5003", "ld2450")
RATE = 30  # simulated seconds per real second: bins of a minute in two seconds

configs = st.fixed_dictionaries(
    {
        "models": st.sets(st.sampled_from(MODELS), min_size=1),
        "probe": st.booleans(),
        "unique": st.booleans(),
        "mode": st.sampled_from(["k", "dp"]),
        "k": st.integers(1, 20),
        "round_to": st.integers(1, 10),
        "bin_s": st.sampled_from([60, 120]),
        "window_s": st.sampled_from([5, 10, 30]),
        "clock_valid": st.booleans(),
        "location": st.booleans(),
    }
)


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(c=configs)
def test_every_published_record_is_in_the_audit(mosquitto, tmp_path_factory, c):
    work = tmp_path_factory.mktemp("audit")
    privacy = {"k": c["k"], "round_to": c["round_to"], "bin_s": c["bin_s"], "mode": c["mode"]}
    if c["probe"]:
        privacy |= {"legal_basis": "test: audit property", "unique_devices": c["unique"]}
    overrides: dict = {"privacy": privacy}
    if c["location"]:
        overrides["location"] = {"lat": 51.44, "lon": 5.47}
    start = (VALID_AFTER + 86400 * 30) if c["clock_valid"] else 1_000_000
    clock = SimClock(start, rate=RATE)
    prefix = "audit" + work.name[-6:].replace("-", "")
    sp = SimPole(
        "nl-audit-0001",
        work / "state",
        mosquitto.url,
        World(1).pole(0),
        window_s=c["window_s"],
        health_s=c["window_s"],
        topic_prefix=prefix,
        sensors="full",
        clock=clock.edge_clock(),
        driver_timeout_s=0,
        config_overrides=overrides,
        probe_legal_basis="test: audit property" if c["probe"] else "",
        only=set(c["models"]) | ({"probe_sniffer"} if c["probe"] else set()),
    )
    # The audit, derived from the configuration alone (what pole-admin audit prints).
    cfg = PoleConfig({**sp.config_dict})
    schema = output_schema(
        [(s.name, load_sensor(s.model, cfg.hardware_dir)) for s in cfg.sensors], cfg.privacy
    )
    ident = sp.identity
    verifier = Verifier({ident.kid: KeyRecord(sp.pole_id, ident.public_key)}, topic_prefix=prefix)
    seen: list = []

    async def go() -> None:
        stop_recv, stop_pole, ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
        recv = asyncio.create_task(
            run_receiver(
                mosquitto.url, verifier, lambda t, v: seen.append(v), stop_recv, ready=ready
            )
        )
        await asyncio.wait_for(ready.wait(), 10)
        pole = asyncio.create_task(sp.run(stop_pole))
        await asyncio.sleep(2 * c["bin_s"] / RATE + 1.5)  # two bins, a few windows
        stop_pole.set()
        await pole
        await asyncio.sleep(0.5)
        stop_recv.set()
        await recv

    asyncio.run(go())
    rejected = [(v.kind, v.reason) for v in seen if v.status == "rejected"]
    assert not rejected, rejected
    kinds = {v.kind for v in seen if v.accepted}
    assert {"birth", "manifest", "data", "health", "death"} <= kinds, kinds
    if any(m in c["models"] for m in ("ld2450",)) or (c["probe"] and c["unique"]):
        assert "counts" in kinds, kinds
    outside = {
        (v.kind, r.name.split("/", 1)[1])
        for v in seen
        if v.accepted
        for r in v.records
        if not allowed(schema, v.kind, r.name.split("/", 1)[1])
    }
    assert not outside, outside
    if not c["clock_valid"]:  # honest time: relative base time and the uptime record
        data = [v for v in seen if v.accepted and v.kind == "data"]
        assert all(v.iat is None for v in data)
        assert all(any(r.name.endswith("/uptime") for r in v.records) for v in data)


def test_generated_docs_are_current():
    r = subprocess.run(
        [sys.executable, "-m", "tools.docgen", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
