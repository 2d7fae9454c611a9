"""Benchmark: how many simulated poles one process sustains on one core, at one message
per pole per 10 seconds, with publish latency under one second.

Each pole is the real pipeline (pty + pyserial SDS011, simulated-I2C BME280, windows,
COSE signing, SQLite spool, its own aiomqtt connection) against a real Mosquitto. The
fleet runs in a child process pinned to core 0; this process (core 1) receives and
measures latency = arrival time - the window end the pack is stamped with.
Run: .venv/bin/python -m bench.bench_fleet [N ...] [--aligned]  (default 250 500 1000)
By default pole i's windows are offset by i mod 10 s (window_offset_s, as "auto" does
for a real district); --aligned makes every pole close its window on the same second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import cbor2

from host_sim.broker import Mosquitto
from host_sim.fleet import Fleet, raise_fd_limit

WINDOW = 10


async def child(n: int, broker: str, work: Path, duration: float, aligned: bool) -> None:
    os.sched_setaffinity(0, {0})
    t0 = time.monotonic()
    fleet = Fleet(n, work, broker, window_s=WINDOW, large=True, spread_windows=not aligned)
    setup_s = time.monotonic() - t0
    stop = asyncio.Event()
    task = asyncio.create_task(fleet.run(stop))
    await asyncio.sleep(2 * WINDOW)  # connection storm and first windows: not measured
    print("MEASURING", flush=True)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(duration)
    cpu = (time.process_time() - cpu0) / (time.monotonic() - wall0)
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"cpu": cpu, "rss_kb": rss_kb, "setup_s": setup_s}), flush=True)
    stop.set()
    await asyncio.wait_for(task, 60)


async def measure(n: int, broker: Mosquitto, duration: float, aligned: bool) -> dict:
    lat: list[float] = []
    per_pole: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="fleet-") as d:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.bench_fleet",
            "--child",
            str(n),
            "--broker",
            broker.url,
            "--work",
            d,
            "--duration",
            str(duration),
            *(["--aligned"] if aligned else []),
            stdout=subprocess.PIPE,
        )
        measuring = False
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            await client.subscribe("poles/+/data", qos=0)

            async def collect() -> None:
                async for m in client.messages:
                    now = time.time()
                    if not measuring:
                        continue
                    body = cbor2.loads(m.payload).value
                    bt = cbor2.loads(body[2])[0][-3]
                    lat.append(now - bt)
                    pole = str(m.topic).split("/")[1]
                    per_pole[pole] = per_pole.get(pole, 0) + 1

            task = asyncio.create_task(collect())
            assert (await proc.stdout.readline()).strip() == b"MEASURING"
            measuring = True
            out = await proc.stdout.readline()
            task.cancel()
        await proc.wait()
    stats = json.loads(out)
    lat.sort()

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {
        "n": n,
        "received": len(lat),
        "poles_heard": len(per_pole),
        "expected": int(n * duration / WINDOW),
        "p50": q(0.5),
        "p99": q(0.99),
        "max": lat[-1] if lat else float("nan"),
        **stats,
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("sizes", nargs="*", type=int, default=[250, 500, 1000])
    ap.add_argument("--duration", type=float, default=60.0)
    ap.add_argument("--child", type=int)
    ap.add_argument("--broker")
    ap.add_argument("--work", type=Path)
    ap.add_argument(
        "--aligned",
        action="store_true",
        help="every pole closes its window on the same second (no window_offset_s)",
    )
    a = ap.parse_args()
    if a.child:
        asyncio.run(child(a.child, a.broker, a.work, a.duration, a.aligned))
        return 0
    raise_fd_limit()
    os.sched_setaffinity(0, {1})
    rows = []
    with Mosquitto(extra_config="max_connections -1\n") as broker:
        for n in a.sizes:
            r = asyncio.run(measure(n, broker, a.duration, a.aligned))
            rows.append(r)
            print(
                f"{n:5d} poles: {r['received']:6d}/{r['expected']} msgs from "
                f"{r['poles_heard']} poles, latency p50 {r['p50'] * 1000:6.0f} ms "
                f"p99 {r['p99'] * 1000:6.0f} ms max {r['max'] * 1000:6.0f} ms, "
                f"CPU {r['cpu'] * 100:5.1f}% of a core, RSS {r['rss_kb'] / 1024:6.1f} MB "
                f"({r['rss_kb'] / r['n']:5.0f} KB/pole), setup {r['setup_s']:.1f} s",
                flush=True,
            )
    ok = [
        r
        for r in rows
        if r["p99"] < 1.0 and r["cpu"] < 0.95 and r["received"] >= 0.95 * r["expected"]
    ]
    best = max((r["n"] for r in ok), default=0)
    mode = "aligned windows" if a.aligned else "windows spread over the 10 s (window_offset_s)"
    print(f"{mode}: sustained on one core with p99 latency < 1 s: {best} poles (target >= 1000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
