"""Fixtures and builders for the city tests (tests/test_city_*.py import what they use).

A real PostgreSQL (started by the tests as its own user, city/devdb.py) and a real
SQLite file behind the same ``store`` fixture; signed messages of every kind built with
the pole's own encoders; the ingest service run as the command an operator runs.
Tests that need PostgreSQL skip, with the reason, only when its binaries are missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from city import devdb
from city.store import Store, open_store
from edge import messages, senml
from edge.cose import Signer, cti_bytes
from edge.window import Window

ROOT = Path(__file__).resolve().parent.parent
NOW = int(time.time()) // 3600 * 3600  # an hour boundary in the present: inside partitions


def need_postgres() -> None:
    """Skip when PostgreSQL's server binaries are missing, and only then: a PostgreSQL
    without PostGIS is a broken set-up, reported as a failure."""
    why = devdb.missing()
    if why:
        pytest.skip(why)
    if not devdb.postgis_installed():
        pytest.fail("PostGIS is not installed: apt-get install postgresql-15-postgis-3")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[devdb.PostgresCluster]:
    need_postgres()
    cluster = devdb.PostgresCluster().start()
    yield cluster
    cluster.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'city.sqlite'}"
    cluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database("t" + uuid.uuid4().hex[:12])


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    s.migrate()
    s.maintain(time.time(), 2, 0)
    yield s
    s.close()


# -- signed messages, built as a pole builds them ------------------------------------------
SERIES = [
    senml.Series("sds011", "pm2_5", "pm2_5", "ug/m3", 0.1),
    senml.Series("sds011", "pm10", "pm10", "ug/m3", 0.1),
    senml.Series("bme280", "temperature", "temperature", "Cel", 0.01),
]


def signer(pole_id: str) -> Signer:
    return Signer(os.urandom(32), pole_id)


def data(s: Signer, seq: int, end: int, pm25: list[float], temp: float = 11.5, boot=1) -> bytes:
    """A data message for the window ending at ``end`` (60 s) with these PM2.5 samples."""
    w = Window(end - 60, 60)
    for v in pm25:
        w.add(("sds011", "pm2_5"), v)
        w.add(("sds011", "pm10"), v * 2)
        w.add(("bme280", "temperature"), temp)
    payload = senml.WindowPackEncoder(s.pole_id, SERIES).encode(w, w.end)
    return s.sign("data", payload, end, cti_bytes(boot, seq))


def pack(s: Signer, kind: str, seq: int, t: int, items: list, boot: int = 1) -> bytes:
    payload = messages.pack(messages.kind(kind), s.pole_id, t, items)
    return s.sign(kind, payload, t, cti_bytes(boot, seq))


def birth(s: Signer, seq: int, t: int, lat: float, lon: float) -> bytes:
    return pack(
        s,
        "birth",
        seq,
        t,
        [
            ("bdSeq", 1),
            ("boot", 1),
            ("software", "lightpole-gateway 0.1.0"),
            ("sensors", "sds011:sds011,bme280:bme280"),
            ("window", 60),
            ("location/lat", lat),
            ("location/lon", lon),
        ],
    )


def health(s: Signer, seq: int, t: int, alarms: dict[str, str] | None = None) -> bytes:
    items: list = [
        ("time/uptime", 120.0),
        ("time/valid", True),
        ("sensor/sds011/up", True),
        ("counter/publish_ok", 7),
    ]
    for name, detail in (alarms or {}).items():
        items += [(f"alarm/{name}", True), (f"alarm/{name}/detail", detail)]
    return pack(s, "health", seq, t, items)


def counts(s: Signer, seq: int, t: int, people: int, suppressed: bool = False) -> bytes:
    return pack(
        s,
        "counts",
        seq,
        t,
        [("bin", 900), ("ld2450/people/count", people), ("ld2450/people/suppressed", suppressed)],
    )


def offset(lat: float, lon: float, north_m: float) -> tuple[float, float]:
    """A point ``north_m`` metres north of (lat, lon)."""
    return lat + north_m / 111_195.0, lon


# -- the ingest service, as an operator runs it -------------------------------------------
class Ingest:
    """``python -m city.cli ingest ...`` in a subprocess, with its /metrics."""

    def __init__(self, *args: str, log: Path) -> None:
        self.port = devdb.free_port()
        self.log = log
        cmd = [sys.executable, "-m", "city.cli", "ingest", "--metrics-port", str(self.port), *args]
        self._out = log.open("ab")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self._out, stderr=subprocess.STDOUT)

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()

    def values(self, name: str) -> dict[tuple, float]:
        """{labels as sorted (key, value) pairs: value} of one metric."""
        out = {}
        for line in self.metrics().splitlines():
            m = re.fullmatch(name + r"(\{(.*)\})? (\S+)", line)
            if m:
                labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")))
                out[labels] = float(m.group(3))
        return out

    def per_worker(self, name: str, **match: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for labels, v in self.values(name).items():
            d = dict(labels)
            if all(d.get(k) == val for k, val in match.items()) and "worker" in d:
                out[d["worker"]] = out.get(d["worker"], 0.0) + v
        return out

    def wait_up(self, workers: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            with contextlib.suppress(OSError):
                up = self.per_worker("city_worker_up")
                db = self.per_worker("city_database_up")
                if len(up) == len(db) == workers and all(up.values()) and all(db.values()):
                    return
            time.sleep(0.3)
        raise AssertionError("ingest did not come up:\n" + self.log.read_text()[-3000:])

    def worker_pids(self) -> dict[str, int]:
        return {w: int(v) for w, v in self.per_worker("city_worker_pid").items()}

    def stop(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode
