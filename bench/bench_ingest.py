"""Benchmark: signed messages ingested into PostgreSQL per worker core, against bare
Ed25519 verification on the same machine, in one run.

What runs is what a city runs: a durable PostgreSQL (fsync and synchronous commit on)
with PostGIS, Mosquitto, and ``python -m city.cli ingest --workers N`` (persistent
sessions, a shared subscription, QoS 1, acknowledged after commit). The broker is
loaded first (the workers' sessions exist, the workers are stopped), then the workers
start and drain it: the rate is measured between 10 % and 90 % of the messages stored,
and so is the CPU time of each process (from /proc), which gives:

- ingest rate per worker core = messages / CPU seconds of the worker processes
  (target: >= 0.5x the bare verification rate, end to end into the database);
- the wall-clock rate with 1 and with 2 workers (on this machine the database and the
  broker share the same cores: scaling shows the sum of everything);
- CPU per message of PostgreSQL and of Mosquitto, and bytes stored per message (the raw
  signed bytes, the observations, the indexes).

Messages: the demo pole's window (SDS011 + BME280: 5 series, 60 samples each), one per
pole per window, from 1,000 poles. Run: .venv/bin/python -m bench.bench_ingest
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from nacl.bindings import crypto_sign_open

from city.devdb import PostgresCluster
from city.store import open_store
from edge import senml
from edge.cose import Signer, cti_bytes
from edge.window import Window
from host_sim.broker import Mosquitto, free_port
from provisioning.trustlist import KeyRecord
from provisioning.verifier import Verifier

ROOT = Path(__file__).resolve().parent.parent
SERIES = [
    senml.Series("sds011", "pm2_5", "pm2_5", "ug/m3", 0.1),
    senml.Series("sds011", "pm10", "pm10", "ug/m3", 0.1),
    senml.Series("bme280", "temperature", "temperature", "Cel", 0.01),
    senml.Series("bme280", "pressure", "pressure", "Pa", 1.0),
    senml.Series("bme280", "humidity", "humidity", "%RH", 0.01),
]
TICK = os.sysconf("SC_CLK_TCK")


def make_messages(poles: int, total: int) -> tuple[list[Signer], list[tuple[str, bytes]]]:
    rng = random.Random(7)
    signers = [Signer(rng.randbytes(32), f"nl-bench-{i:05d}") for i in range(poles)]
    encoders = [senml.WindowPackEncoder(s.pole_id, SERIES) for s in signers]
    start = int(time.time()) // 60 * 60 - 60 * (total // poles + 1)
    msgs = []
    for k in range(total // poles):
        end = start + 60 * (k + 1)
        for s, enc in zip(signers, encoders, strict=True):
            w = Window(end - 60, 60)
            for _ in range(60):
                w.add(("sds011", "pm2_5"), round(rng.uniform(5, 30), 1))
                w.add(("sds011", "pm10"), round(rng.uniform(8, 50), 1))
                w.add(("bme280", "temperature"), round(rng.uniform(10, 12), 2))
                w.add(("bme280", "pressure"), float(round(rng.uniform(101000, 101100))))
                w.add(("bme280", "humidity"), round(rng.uniform(60, 70), 2))
            payload = enc.encode(w, w.end)
            msgs.append(
                (f"poles/{s.pole_id}/data", s.sign("data", payload, end, cti_bytes(1, k + 1)))
            )
    return signers, msgs


def components(signers, msgs, db: str) -> dict[str, float]:
    """One core, in-process, interleaved in chunks of 500 (a worker's batch) so that load
    from other tenants falls on all alike: bare Ed25519 verifications/s of one message's
    Sig_structure, and the CPU microseconds per message of a worker's steps: the
    verifier (records built), the rows (city/rows.py), the database client's share of a
    batch (COPY and the merge statement; the server's CPU is not counted here)."""
    import cbor2

    from city import rows

    s0 = signers[0]
    body = cbor2.loads(msgs[0][1]).value
    sm, pk = body[3] + s0.sig_structure(body[0], body[2]), s0.public_key
    keys = {s.kid: KeyRecord(s.pole_id, s.public_key) for s in signers}
    ver = Verifier(keys, window=64)
    for t, m in msgs[: len(signers)]:  # every pole seen once: the template path after
        ver.check(t, m)
    store = open_store(db)
    store.migrate()
    store.maintain(time.time(), 2, 0)
    work = msgs[len(signers) : len(signers) + 6000]
    spent = {"bare": 0.0, "verify": 0.0, "rows": 0.0, "write": 0.0}
    for i in range(0, len(work), 500):
        part = work[i : i + 500]
        t0 = time.process_time()
        for _ in part:
            crypto_sign_open(sm, pk)
        t1 = time.process_time()
        verdicts = [(ver.check(t, m), m) for t, m in part]
        for v, _ in verdicts:
            v.records  # noqa: B018 - built by the worker too
        t2 = time.process_time()
        items = [rows.item(v, m, time.time()) for v, m in verdicts]
        t3 = time.process_time()
        store.write(items)
        t4 = time.process_time()
        for k, dt_ in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[k] += dt_
    store.close()
    n = len(work)
    return {"bare_rate": n / spent["bare"], **{k: 1e6 * v / n for k, v in spent.items()}}


def bare_rate(signers, msgs) -> float:
    """Bare Ed25519 verifications per second (one core), as in ``components``."""
    import cbor2

    body = cbor2.loads(msgs[0][1]).value
    sm, pk = body[3] + signers[0].sig_structure(body[0], body[2]), signers[0].public_key
    t0 = time.process_time()
    for _ in range(4000):
        crypto_sign_open(sm, pk)
    return 4000 / (time.process_time() - t0)


def cpu_s(pids: list[int]) -> dict[int, float]:
    """CPU seconds (user + system) of each live process."""
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
    return out


def spent(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds between two readings (a process that appeared in between counts whole)."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def children(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(x) for x in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


async def publish(url: str, msgs: list[tuple[str, bytes]]) -> None:
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes

    from edge.transport.mqtt import _props

    props = _props(PacketTypes.PUBLISH)  # what a pole sends with every message
    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(
        host, int(port), protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=500
    ) as c:
        c.pending_calls_threshold = 10**6  # many publishes in flight is the point here
        for i in range(0, len(msgs), 500):
            await asyncio.gather(
                *(c.publish(t, m, qos=1, properties=props) for t, m in msgs[i : i + 500])
            )


def ingest(db: str, broker: str, workers: int, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "city.cli",
        "ingest",
        "--db",
        db,
        "--broker",
        broker,
        "--workers",
        str(workers),
        "--metrics-port",
        str(free_port()),
        "--reader-base",
        f"bench{workers}",
        "--group",
        f"bench{workers}",
    ]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT)


def stop(p: subprocess.Popen) -> None:
    p.terminate()
    p.wait(60)


def count(store) -> int:
    return store.query("SELECT count(*) FROM messages", {})[0][0]


def run(pg, broker, signers, msgs, workers: int, log: Path) -> dict:
    db = pg.create_database(f"bench{workers}")
    store = open_store(db)
    store.migrate()
    store.maintain(time.time(), 2, 0)
    store.apply_trust([KeyRecord(s.pole_id, s.public_key) for s in signers], [])
    # The workers' sessions first (then stopped), so the broker keeps what follows. Each
    # run has its own group: a stopped session of another run would take its share.
    p = ingest(db, broker.url, workers, log)
    time.sleep(4)
    stop(p)
    asyncio.run(publish(broker.url, msgs))
    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
    p = ingest(db, broker.url, workers, log)
    n = len(msgs)
    lo, hi = int(0.1 * n), int(0.9 * n)
    marks: dict[str, tuple] = {}
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        c = count(store)
        now = time.monotonic()
        w = [x for x in children(p.pid) if "spawn_main" in _cmdline(x)]
        snap = (now, c, cpu_s(w), cpu_s(children(postmaster)), cpu_s([broker.proc.pid]))
        if "lo" not in marks and c >= lo:
            marks["lo"] = snap
        if c >= hi:
            marks["hi"] = snap
            break
        time.sleep(0.05)
    while count(store) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    stop(p)
    (t0, c0, w0, g0, m0), (t1, c1, w1, g1, m1) = marks["lo"], marks["hi"]
    done = c1 - c0
    wcpu, gcpu, mcpu = spent(w0, w1), spent(g0, g1), spent(m0, m1)
    size = store.size()
    stored = count(store)
    store.close()
    return {
        "workers": workers,
        "rate": done / (t1 - t0),
        "per_core": done / max(wcpu, 1e-9),
        "worker_cpu_us": 1e6 * wcpu / done,
        "pg_cpu_us": 1e6 * gcpu / done,
        "mqtt_cpu_us": 1e6 * mcpu / done,
        "bytes": size["total"] / stored,
        "size": size,
        "stored": stored,
    }


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--poles", type=int, default=1000, help="poles (keys) in the traffic")
    ap.add_argument("--messages", type=int, default=20000, help="messages per run")
    a = ap.parse_args()
    signers, msgs = make_messages(a.poles, a.messages)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-ingest-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    results = []
    with (
        PostgresCluster(durable=True) as pg,
        Mosquitto(
            workdir=work / "mosquitto", extra_config="max_inflight_messages 1000\n"
        ) as broker,
    ):
        parts = components(signers, msgs, pg.create_database("parts"))
        bares = [parts["bare_rate"]]
        for n in (1, 2):
            results.append(run(pg, broker, signers, msgs, n, work / "ingest.log"))
            bares.append(bare_rate(signers, msgs))  # this machine is shared: measure again
    bare = statistics.median(bares)
    one, two = results
    print(
        f"ingest benchmark: {len(msgs)} data messages ({len(msgs[0][1])} bytes signed, "
        f"5 series) from {a.poles} poles, durable PostgreSQL + PostGIS, Mosquitto, "
        f"{os.cpu_count()} cores shared by all"
    )
    print(
        f"  bare Ed25519 verification (one core):             {bare:8.0f} /s (median of "
        f"{', '.join(f'{b:.0f}' for b in bares)}: before, between and after the runs)"
    )
    print(
        f"  Verifier.check + records (one core):              {1e6 / parts['verify']:8.0f} /s "
        f"({1e6 / parts['verify'] / bare:.2f}x)"
    )
    for r in results:
        print(
            f"  {r['workers']} worker(s): {r['rate']:6.0f} msg/s stored (wall), "
            f"{r['per_core']:6.0f} msg/s per worker core ({r['per_core'] / bare:.2f}x bare); "
            f"CPU per message: worker {r['worker_cpu_us']:.0f} us, PostgreSQL "
            f"{r['pg_cpu_us']:.0f} us, Mosquitto {r['mqtt_cpu_us']:.0f} us"
        )
    print(f"  scaling 1 -> 2 workers: {two['rate'] / one['rate']:.2f}x (wall)")
    sz = one["size"]
    print(
        f"  bytes stored per message: {one['bytes']:.0f} (messages "
        f"{sz['messages'] / one['stored']:.0f}, observations "
        f"{sz['observations'] / one['stored']:.0f}; tables, indexes, TOAST)"
    )
    w = statistics.mean(r["worker_cpu_us"] for r in results)
    mqtt = w - parts["verify"] - parts["rows"] - parts["write"]
    print(
        f"  a worker's CPU per message, {w:.0f} us: verifier {parts['verify']:.0f}, rows "
        f"{parts['rows']:.0f}, database client {parts['write']:.0f}, MQTT receive and "
        f"acknowledge (paho/aiomqtt, asyncio) {mqtt:.0f}; bare Ed25519 {parts['bare']:.0f}"
    )
    ratio = statistics.median([r["per_core"] / bare for r in results])
    print(f"  end to end per worker core: {ratio:.2f}x bare verification (target >= 0.5x)")
    print("  target met" if ratio >= 0.5 else "  TARGET MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
