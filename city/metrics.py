"""What the ingest service tells its operators, in the Prometheus text format.

Each worker counts what it did (``WorkerStats``) and sends a snapshot about once a
second to its supervisor as one Unix datagram: a datagram arrives whole or not at all,
so a worker killed mid-send cannot corrupt the channel, and a supervisor that stops
reading never blocks a worker. The supervisor keeps the latest snapshot per worker
(``Board``) and serves them on ``/metrics``; counters stay monotonic across a worker's
restarts (the last snapshot of the previous process is carried over).

Metrics (every series labelled ``worker`` unless said otherwise):

- ``city_ingest_messages_total{status}``: ``accepted`` (new, stored) or ``duplicate``
  (already stored: a QoS 1 redelivery or a replay of a stored message)
- ``city_ingest_rejected_total{reason}``: refused by the verifier, by the reason's class
  (``signature``, ``kid``, ``replay``, ... as in docs/security.md)
- ``city_ingest_unstorable_total``: authentic messages the database refused even bare
- ``city_ingest_rate``: messages per second over the last 10 s
- ``city_ingest_lag_seconds``: for the last batch, the largest time from a message's
  signed iat to its commit (backlog after an outage shows here)
- ``city_ingest_held``: messages received and not yet acknowledged (the broker keeps
  them); ``city_ingest_parked``: messages waiting for a key this worker does not know yet
- ``city_database_up``: 1 if the worker's last database call succeeded
- ``city_keys_revision``: the key revision the worker has applied (compare with the
  store's to see a revocation reach every worker)
- ``city_worker_up``, ``city_worker_restarts_total``, ``city_worker_pid``
- ``city_alarm{alarm}`` (no worker label): 1 while ``database_down`` (a worker or the
  service cannot reach the database) or ``worker_down`` (fewer workers than configured)
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter, deque

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import CollectorRegistry

_REASON = re.compile(r"[a-z_]{1,24}")
_COUNTERS = ("accepted", "duplicate", "unstorable", "batches")


def reason_class(reason: str) -> str:
    """The class of a verifier's reason ("signature: does not verify" -> "signature"):
    a bounded label set, never text a sender chose."""
    head = reason.split(":", 1)[0]
    return head if _REASON.fullmatch(head) else "other"


class WorkerStats:
    """A worker's counters and gauges; ``snapshot()`` is what it reports."""

    def __init__(self, index: int, pid: int) -> None:
        self.index = index
        self.pid = pid
        self.started = time.time()
        self.accepted = 0
        self.duplicate = 0
        self.unstorable = 0
        self.batches = 0
        self.rejected: Counter[str] = Counter()
        self.db_up = False
        self.lag_s = 0.0
        self.keys_rev = 0
        self._recent: deque[tuple[float, int]] = deque()

    def reject(self, reason: str) -> None:
        self.rejected[reason_class(reason)] += 1

    def rate(self) -> float:
        now = time.monotonic()
        done = self.accepted + self.duplicate + sum(self.rejected.values())
        self._recent.append((now, done))
        while len(self._recent) > 2 and now - self._recent[0][0] > 10:
            self._recent.popleft()
        t0, n0 = self._recent[0]
        return (done - n0) / (now - t0) if now > t0 else 0.0

    def snapshot(self, **gauges: float) -> dict:
        return {
            "worker": self.index,
            "pid": self.pid,
            "started": self.started,
            "accepted": self.accepted,
            "duplicate": self.duplicate,
            "unstorable": self.unstorable,
            "batches": self.batches,
            "rejected": dict(self.rejected),
            "db_up": int(self.db_up),
            "lag_s": self.lag_s,
            "keys_rev": self.keys_rev,
            "rate": self.rate(),
            **gauges,
        }


class Reporter:
    """The worker's end of the channel: non-blocking datagrams to the supervisor."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def send(self, snapshot: dict) -> None:
        try:
            self.sock.sendto(json.dumps(snapshot).encode(), self.path)
        except OSError:
            pass  # the supervisor is busy or gone: the next snapshot says it all again


class Board:
    """The supervisor's view: the latest snapshot of every worker, as Prometheus metrics.

    ``listen(path)`` binds the datagram socket workers report to; ``poll(timeout)``
    reads what arrived. A ``prometheus_client`` collector (``collect``)."""

    def __init__(self, workers: list[int]) -> None:
        self.workers = list(workers)
        self.latest: dict[int, dict] = {}
        self.base: dict[int, Counter] = {i: Counter() for i in workers}
        self.restarts: Counter[int] = Counter()
        self.alive: dict[int, bool] = {i: False for i in workers}
        self.service_db_up = True
        self._lock = threading.Lock()
        self.sock: socket.socket | None = None

    def listen(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0)

    def poll(self) -> int:
        n = 0
        while self.sock is not None:
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError, TimeoutError):
                break
            try:
                self.update(json.loads(data))
                n += 1
            except (ValueError, KeyError, TypeError):
                continue
        return n

    def update(self, snap: dict) -> None:
        i = int(snap["worker"])
        with self._lock:
            prev = self.latest.get(i)
            if prev is not None and prev["pid"] != snap["pid"]:
                self._carry(i, prev)  # a new process: keep the old one's counts
            self.latest[i] = snap

    def _carry(self, i: int, prev: dict) -> None:
        base = self.base.setdefault(i, Counter())
        for k in _COUNTERS:
            base[k] += prev.get(k, 0)
        for r, n in prev.get("rejected", {}).items():
            base["rejected:" + r] += n

    def worker_started(self, i: int, restart: bool) -> None:
        with self._lock:
            self.alive[i] = True
            if restart:
                self.restarts[i] += 1

    def worker_exited(self, i: int) -> None:
        with self._lock:
            self.alive[i] = False

    def collect(self):
        with self._lock:
            latest = {i: dict(s) for i, s in self.latest.items()}
            base = {i: Counter(b) for i, b in self.base.items()}
            alive = dict(self.alive)
            restarts = Counter(self.restarts)
            service_db_up = self.service_db_up
        msgs = CounterMetricFamily(
            "city_ingest_messages", "Authentic messages by outcome", labels=["worker", "status"]
        )
        rej = CounterMetricFamily(
            "city_ingest_rejected", "Messages refused by the verifier", labels=["worker", "reason"]
        )
        unstorable = CounterMetricFamily(
            "city_ingest_unstorable", "Authentic messages the database refused", labels=["worker"]
        )
        batches = CounterMetricFamily("city_ingest_batches", "Committed batches", labels=["worker"])
        gauges = {
            "rate": GaugeMetricFamily(
                "city_ingest_rate", "Messages per second, last 10 s", labels=["worker"]
            ),
            "lag_s": GaugeMetricFamily(
                "city_ingest_lag_seconds",
                "Largest signed-iat-to-commit time in the last batch",
                labels=["worker"],
            ),
            "held": GaugeMetricFamily(
                "city_ingest_held", "Received, not yet acknowledged", labels=["worker"]
            ),
            "parked": GaugeMetricFamily(
                "city_ingest_parked", "Waiting for a key not known yet", labels=["worker"]
            ),
            "db_up": GaugeMetricFamily(
                "city_database_up", "The worker's last database call succeeded", labels=["worker"]
            ),
            "keys_rev": GaugeMetricFamily(
                "city_keys_revision", "Key revision applied by the worker", labels=["worker"]
            ),
            "pid": GaugeMetricFamily("city_worker_pid", "Process id", labels=["worker"]),
        }
        up = GaugeMetricFamily("city_worker_up", "The worker process runs", labels=["worker"])
        rs = CounterMetricFamily("city_worker_restarts", "Worker restarts", labels=["worker"])
        for i in self.workers:
            w = str(i)
            s, b = latest.get(i, {}), base.get(i, Counter())
            msgs.add_metric([w, "accepted"], s.get("accepted", 0) + b["accepted"])
            msgs.add_metric([w, "duplicate"], s.get("duplicate", 0) + b["duplicate"])
            unstorable.add_metric([w], s.get("unstorable", 0) + b["unstorable"])
            batches.add_metric([w], s.get("batches", 0) + b["batches"])
            reasons = Counter({k[9:]: n for k, n in b.items() if k.startswith("rejected:")})
            reasons.update(s.get("rejected", {}))
            for r, n in sorted(reasons.items()):
                rej.add_metric([w, r], n)
            for k, g in gauges.items():
                if k in s:
                    g.add_metric([w], float(s[k]))
            up.add_metric([w], 1.0 if alive.get(i) else 0.0)
            rs.add_metric([w], restarts[i])
        yield from (msgs, rej, unstorable, batches, *gauges.values(), up, rs)
        db = GaugeMetricFamily(
            "city_service_database_up", "The service's own database check succeeds"
        )
        db.add_metric([], 1.0 if service_db_up else 0.0)
        yield db
        alarm = GaugeMetricFamily("city_alarm", "1 while an alarm is raised", labels=["alarm"])
        live = [s for i, s in latest.items() if alive.get(i)]
        down = not service_db_up or any(not s.get("db_up", 1) for s in live)
        alarm.add_metric(["database_down"], 1.0 if down else 0.0)
        alarm.add_metric(["worker_down"], 0.0 if all(alive.get(i) for i in self.workers) else 1.0)
        yield alarm


def serve(board: Board, host: str, port: int):
    """Serve ``/metrics`` from a thread (prometheus_client's own HTTP server); returns the
    server, whose ``shutdown()`` stops it. Port 0 picks a free one (``server_port``)."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(board)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
