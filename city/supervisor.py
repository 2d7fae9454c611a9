"""The ingest service: N worker processes, the housekeeping they share, and /metrics.

One supervisor per machine. It applies the migrations and creates partitions before any
worker starts (retrying while the database is unreachable), then starts the workers
as processes (one core each: verification is CPU work, and a process is the unit that
can be killed without harming its siblings) and restarts any that dies. A
housekeeping thread keeps the database in shape while the workers run: the trust list
file synchronised into the store every second (only on the machine given ``--trust``),
partitions created ahead and old ones dropped every hour, a database check every few
seconds for the ``database_down`` alarm.

SIGTERM or SIGINT: every worker is asked to stop (it commits and acknowledges what it
holds), then waited for; one that does not stop within the timeout is killed, which
loses nothing either (its session keeps what it had not acknowledged).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from city.ingest import WorkerConfig, worker_main
from city.keys import sync_trust, trust_stamp
from city.metrics import Board, serve
from city.store import StoreUnavailable, open_store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceConfig:
    worker: WorkerConfig  # the template: index, client id and login are set per worker
    workers: int = 2
    first_worker: int = 1
    reader_base: str = "city-ingest"
    password_dir: str | None = None
    trust: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    partitions_ahead_days: int = 3
    retention_days: int = 0
    raw_retention_days: int | None = None
    maintain_every_s: float = 3600.0
    trust_every_s: float = 1.0
    stop_timeout_s: float = 30.0


class Service:
    def __init__(self, cfg: ServiceConfig) -> None:
        self.cfg = cfg
        self.indexes = list(range(cfg.first_worker, cfg.first_worker + cfg.workers))
        self.board = Board(self.indexes)
        self.stop = threading.Event()
        self.procs: dict[int, multiprocessing.Process] = {}
        self._ctx = multiprocessing.get_context("spawn")
        self._tmp = tempfile.TemporaryDirectory(prefix="city-ingest-")
        self.report_path = os.path.join(self._tmp.name, "reports")
        self.metrics_server = None

    def worker_config(self, i: int) -> WorkerConfig:
        name = f"{self.cfg.reader_base}-{i}"
        pw = str(Path(self.cfg.password_dir) / name) if self.cfg.password_dir else None
        return replace(
            self.cfg.worker,
            index=i,
            client_id=name,
            username=name if pw else None,
            password_file=pw,
            report_path=self.report_path,
        )

    # -- start --------------------------------------------------------------------------
    def prepare(self) -> None:
        """Migrations, partitions and the first trust sync, retried until the database
        answers (or a stop is requested)."""
        store = open_store(self.cfg.worker.db)
        delay = 1.0
        try:
            while not self.stop.is_set():
                try:
                    for name in store.migrate():
                        log.info("applied migration %s", name)
                    for line in self._maintain(store):
                        log.info("%s", line)
                    if self.cfg.trust:
                        sync_trust(store, Path(self.cfg.trust))
                    self.board.service_db_up = True
                    return
                except StoreUnavailable as exc:
                    self.board.service_db_up = False
                    log.error("database not ready (%s); retrying in %.0f s", exc, delay)
                    self.stop.wait(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            store.close()

    def _maintain(self, store) -> list[str]:
        return store.maintain(
            time.time(),
            self.cfg.partitions_ahead_days,
            self.cfg.retention_days,
            self.cfg.raw_retention_days,
        )

    def _spawn(self, i: int, restart: bool) -> None:
        p = self._ctx.Process(
            target=worker_main, args=(self.worker_config(i),), name=f"city-worker-{i}"
        )
        p.start()
        self.procs[i] = p
        self.board.worker_started(i, restart)
        log.info("%s worker %d (pid %d)", "restarted" if restart else "started", i, p.pid)

    # -- run ----------------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop.set())
        self.board.listen(self.report_path)
        self.metrics_server = serve(self.board, self.cfg.metrics_host, self.cfg.metrics_port)
        log.info(
            "metrics on http://%s:%d/metrics",
            self.cfg.metrics_host,
            self.metrics_server.server_port,
        )
        self.prepare()
        if self.stop.is_set():
            return 0
        for i in self.indexes:
            self._spawn(i, restart=False)
        keeper = threading.Thread(target=self._housekeeping, name="city-housekeeping", daemon=True)
        keeper.start()
        due: dict[int, float] = {}
        failures: dict[int, int] = {}
        retiring = self.cfg.worker.retire
        while not self.stop.is_set():
            self.board.poll()
            now = time.monotonic()
            if retiring and not any(p.is_alive() for p in self.procs.values()):
                break  # every retired session drained (or a worker says why not)
            for i, p in list(self.procs.items()):
                if p.is_alive() or retiring:
                    continue
                if i not in due:
                    self.board.worker_exited(i)
                    failures[i] = failures.get(i, 0) + 1
                    delay = min(0.5 * 2 ** min(failures[i] - 1, 6), 30.0)
                    log.error(
                        "worker %d exited (code %s); restarting in %.1f s", i, p.exitcode, delay
                    )
                    due[i] = now + delay
                elif now >= due[i]:
                    del due[i]
                    self._spawn(i, restart=True)
            for i, s in self.board.latest.items():  # a worker that ran a minute is healthy
                if time.time() - s.get("started", time.time()) > 60:
                    failures.pop(i, None)
            self.stop.wait(0.2)
        self._shutdown()
        if retiring:
            failed = [i for i, p in self.procs.items() if p.exitcode != 0]
            for i in failed:
                log.error("worker %d: session not drained; run the retirement again", i)
            return 1 if failed else 0
        return 0

    def _housekeeping(self) -> None:
        store = open_store(self.cfg.worker.db)
        trust = Path(self.cfg.trust) if self.cfg.trust else None
        stamp: tuple | None = None
        rev = 0
        next_maintain = time.monotonic() + self.cfg.maintain_every_s
        try:
            while not self.stop.is_set():
                try:
                    changes, rev = store.keys_since(rev)  # doubles as the database check
                    if trust is not None:
                        s = trust_stamp(trust)
                        rotated = any(r.rotated_from for r in changes)
                        if s != stamp or rotated:  # a changed file, or rotations to write back
                            sync_trust(store, trust)
                            stamp = s
                    if time.monotonic() >= next_maintain:
                        for line in self._maintain(store):
                            log.info("%s", line)
                        next_maintain = time.monotonic() + self.cfg.maintain_every_s
                    if not self.board.service_db_up:
                        log.info("database reachable again")
                    self.board.service_db_up = True
                except StoreUnavailable as exc:
                    if self.board.service_db_up:
                        log.error("database unavailable: %s", exc)
                    self.board.service_db_up = False
                except Exception:  # a bad trust file must not stop the service
                    log.exception("housekeeping failed; retrying")
                self.stop.wait(self.cfg.trust_every_s)
        finally:
            store.close()

    def _shutdown(self) -> None:
        log.info("stopping %d workers", len(self.procs))
        for p in self.procs.values():
            if p.is_alive():
                p.terminate()  # SIGTERM: commit, acknowledge, leave the session
        deadline = time.monotonic() + self.cfg.stop_timeout_s
        for i, p in self.procs.items():
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                log.warning("worker %d did not stop in time; killing it", i)
                p.kill()
                p.join(5)
            self.board.worker_exited(i)
        self.board.poll()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
        self._tmp.cleanup()
        log.info("stopped")
