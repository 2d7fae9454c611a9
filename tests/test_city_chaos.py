"""Chaos: workers SIGKILLed at random moments and PostgreSQL stopped for 30 s while a
fleet publishes. Every message the poles got to the broker is stored exactly once, with
its exact signed bytes, and re-verifies with pycose (an independent COSE library) from
the export.

"What the poles sent" is taken by a witness: an independent persistent QoS 1
subscription on the same broker, which is never disturbed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import cbor2
import pytest

from city.devdb import PostgresCluster
from city.store import open_store
from host_sim.broker import Mosquitto
from host_sim.world import World
from provisioning.trustlist import TrustList
from tests.city_fixtures import Ingest, need_postgres
from tests.polekit import Fixed

pytestmark = [pytest.mark.broker, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent
POLES = 5
RUN_S = 75  # the fleet publishes this long
OUTAGE = (12, 42)  # PostgreSQL is down from 12 s to 42 s


def key_of(raw: bytes) -> tuple[bytes, bytes]:
    prot = cbor2.loads(cbor2.loads(raw).value[0])
    return prot[4], prot[15][7]


class Witness:
    def __init__(self, url: str) -> None:
        self.url = url
        self.got: dict[tuple[bytes, bytes], tuple[str, bytes]] = {}

    async def run(self, ready: asyncio.Event, stop: asyncio.Event) -> None:
        host, port = self.url.removeprefix("mqtt://").split(":")
        async with aiomqtt.Client(
            host, int(port), identifier="witness", protocol=aiomqtt.ProtocolVersion.V5
        ) as c:
            await c.subscribe("poles/#", qos=1)
            ready.set()
            async for m in c.messages:
                self.got[key_of(m.payload)] = (m.topic.value, m.payload)
                if stop.is_set():
                    break


def children(pid: int) -> set[int]:
    with contextlib.suppress(OSError):
        return {int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}
    return set()


def test_workers_killed_and_database_stopped_lose_nothing_and_store_once(tmp_path):
    need_postgres()
    from host_sim.pole import SimPole

    rng = random.Random(int(os.environ.get("CITY_CHAOS_SEED", "15")))
    pg = PostgresCluster(durable=True).start()  # a real commit: fsync and synchronous
    broker = Mosquitto(workdir=tmp_path / "mosquitto", extra_config="max_inflight_messages 1000\n")
    broker.start()
    db_url = pg.create_database("chaos")
    trust = tmp_path / "trust.sqlite"
    world = World(seed=3)
    poles = []
    with TrustList(trust) as tl:
        for i in range(POLES):
            pid = f"nl-chaos-{i + 1:04d}"
            p = SimPole(pid, tmp_path / pid, broker.url, Fixed() if i else world.pole(i),
                        window_s=1, health_s=2)  # fmt: skip
            tl.add(pid, p.identity.public_key)
            poles.append(p)
        tl.export_file(tmp_path / "trust.json")
    ingest = Ingest(
        "--db", db_url, "--broker", broker.url, "--workers", "3", "--trust", str(trust),
        "--stop-timeout", "15", log=tmp_path / "ingest.log",
    )  # fmt: skip
    store = open_store(db_url)
    events: list[str] = []
    try:
        ingest.wait_up(3)
        witness = Witness(broker.url)
        asyncio.run(_chaos(poles, witness, ingest, pg, rng, events))
        # Drain: everything the witness saw reaches the store.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if store.query("SELECT count(*) FROM messages", {})[0][0] >= len(witness.got):
                    break
            time.sleep(0.5)
        time.sleep(2)  # anything more would be a second copy: give it the chance to show
        rows = store.query("SELECT kid, cti, raw FROM messages", {})
        stored: dict[tuple[bytes, bytes], list[bytes]] = {}
        for kid, cti, raw in rows:
            stored.setdefault((bytes(kid), bytes(cti)), []).append(bytes(raw))
        kills = sum(e.startswith("kill") for e in events)
        summary = f"{len(witness.got)} sent, {len(rows)} rows, {kills} kills, events {events}"
        assert kills >= 5, summary
        assert len(witness.got) > 300, summary
        missing = set(witness.got) - set(stored)
        assert not missing, f"{len(missing)} lost: {summary}"
        twice = {k: v for k, v in stored.items() if len(v) > 1}
        assert not twice, f"{len(twice)} stored twice: {summary}"
        assert set(stored) == set(witness.got), summary  # nothing that was not sent
        assert all(stored[k][0] == raw for k, (_t, raw) in witness.got.items())
        # Derived rows exactly once too: one observation per series per data message.
        dup_obs = store.query(
            "SELECT count(*) FROM (SELECT kid, cti, sensor, field FROM observations "
            "GROUP BY 1, 2, 3, 4 HAVING count(*) > 1) d",
            {},
        )
        assert dup_obs == [(0,)]
        n_data = sum(t.endswith("/data") for t, _ in witness.got.values())
        n_obs = store.query("SELECT count(DISTINCT (kid, cti)) FROM observations", {})[0][0]
        assert n_obs == n_data
        assert "database_down" in " ".join(events), events  # the alarm was raised
        assert ingest.stop() == 0
        _pycose_verifies_the_export(db_url, tmp_path, len(witness.got))
    finally:
        ingest.stop()
        store.close()
        broker.close()
        pg.close()


async def _chaos(poles, witness, ingest, pg, rng, events) -> None:
    stop_poles, stop_witness, ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
    wtask = asyncio.create_task(witness.run(ready, stop_witness))
    await asyncio.wait_for(ready.wait(), 10)
    tasks = [asyncio.create_task(p.run(stop_poles)) for p in poles]
    t0 = time.monotonic()
    pg_down = False
    next_kill = t0 + rng.uniform(2, 5)
    loop = asyncio.get_running_loop()
    try:
        while (now := time.monotonic()) - t0 < RUN_S:
            el = now - t0
            if not pg_down and OUTAGE[0] <= el < OUTAGE[1]:
                await loop.run_in_executor(None, pg.stop, "immediate")  # a crash, not a goodbye
                pg_down = True
                events.append(f"pg down {el:.0f}s")
            elif pg_down and el >= OUTAGE[1]:
                await loop.run_in_executor(None, pg.start)
                pg_down = False
                events.append(f"pg up {el:.0f}s")
            if now >= next_kill:
                pids = await loop.run_in_executor(None, ingest.worker_pids)
                live = sorted(set(pids.values()) & children(ingest.proc.pid))
                if live:
                    victim = rng.choice(live)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, signal.SIGKILL)
                        events.append(f"kill {victim} {el:.0f}s")
                next_kill = now + rng.uniform(3, 8)
            if pg_down:
                with contextlib.suppress(OSError):
                    text = await loop.run_in_executor(None, ingest.metrics)
                    raised = 'city_alarm{alarm="database_down"} 1.0' in text
                    if raised and not any("database_down" in e for e in events):
                        events.append(f"alarm database_down {el:.0f}s")
            await asyncio.sleep(0.25)
    finally:
        stop_poles.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        if pg_down:
            await loop.run_in_executor(None, pg.start)
    await asyncio.sleep(3)  # the last deaths and windows reach the witness
    stop_witness.set()
    wtask.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await wtask


def _pycose_verifies_the_export(db_url: str, work: Path, n: int) -> None:
    from tests.test_interop import interop_python

    out = work / "export.jsonl"
    subprocess.run(
        [sys.executable, "-m", "city.cli", "export", "--db", db_url, "--out", str(out)],
        cwd=ROOT, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    lines = out.read_text()
    assert len(lines.splitlines()) == n
    r = subprocess.run(
        [str(interop_python()), str(ROOT / "tests/interop/pycose_verify.py"),
         str(work / "trust.json")],
        input=lines, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(results) == n, r.stderr[-2000:]
    bad = [x for x in results if not x["ok"]]
    assert not bad, bad[:3]
