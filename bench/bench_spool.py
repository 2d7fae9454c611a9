"""Benchmark: the spool's cost per message against a bare SQLite insert, and the backlog
drain rate from spool to a real Mosquitto.

Both figures come from one run on this machine. The bare insert uses the same
journal mode and sync setting (WAL, synchronous=FULL, autocommit), so the ratio shows
what the spool adds, not what durability costs. Run: .venv/bin/python -m bench.bench_spool
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from edge.config import MqttConfig
from edge.cose import Signer
from edge.health import Health
from edge.outbox import Outbox
from edge.spool import Spool
from edge.state import PersistentCounter
from edge.transport.mqtt import MqttTransport
from host_sim.broker import Mosquitto

PAYLOAD = os.urandom(880)  # a signed demo-pole window is ~880 bytes


def bare_inserts(path: Path, n: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, kind TEXT, payload BLOB)")
    t0 = time.perf_counter()
    for _ in range(n):
        db.execute("INSERT INTO t (kind, payload) VALUES (?, ?)", ("data", PAYLOAD))
    el = time.perf_counter() - t0
    db.close()
    return el / n


def spool_puts(path: Path, n: int) -> float:
    sp = Spool(path)
    t0 = time.perf_counter()
    for _ in range(n):
        sp.put("data", PAYLOAD)
    el = time.perf_counter() - t0
    sp.close()
    return el / n


async def drain(work: Path, n: int) -> tuple[float, int]:
    with Mosquitto(workdir=work / "mosq") as broker:
        sp = Spool(work / "drain.sqlite")
        signer = Signer(bytes(32), "nl-bench-0001")
        health = Health()
        outbox = Outbox(signer, PersistentCounter(work / "boot"), sp, health)
        for _ in range(n):  # a backlog as after a long outage
            outbox.post("data", PAYLOAD)
        pub = MqttTransport(
            MqttConfig({"url": broker.url}),
            outbox,
            PersistentCounter(work / "bdseq"),
            lambda b: b"\x80",
            lambda b: b"\x80",
            health,
        )
        task = asyncio.create_task(pub.run())
        await pub.connected.wait()
        t0 = time.perf_counter()
        while sp.depth() > 0:
            await asyncio.sleep(0.01)
        el = time.perf_counter() - t0
        pub.stop()
        await asyncio.wait_for(task, 10)
        sp.close()
        return n / el, pub.replayed


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="bench-spool-", dir=".") as d:
        work = Path(d)
        n = 2000
        bare = min(bare_inserts(work / f"bare{i}.sqlite", n) for i in range(3))
        spool = min(spool_puts(work / f"spool{i}.sqlite", n) for i in range(3))
        rate, replayed = asyncio.run(drain(work, 5000))
    print("spool benchmark (this machine's disk, WAL + synchronous=FULL, 880-byte messages)")
    print(f"  bare SQLite insert:  {bare * 1e6:8.1f} us/msg")
    print(f"  spool.put:           {spool * 1e6:8.1f} us/msg  ({spool / bare:.2f}x bare)")
    print(
        f"  backlog drain spool -> Mosquitto (QoS 1, PUBACK before delete): {rate:8.0f} msg/s"
        f"  ({replayed} marked replay)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
