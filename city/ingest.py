"""An ingest worker: one MQTT 5 session in a shared subscription, the city's verifier, and
a store whose commit comes before every acknowledgement.

Why it is shaped like this:

- **Acknowledge after commit.** A message is PUBACKed only once the batch holding it is
  committed (city/mqtt.py). A worker killed at any moment leaves its unacknowledged
  messages in its broker session; the supervisor restarts it with the same client id,
  the broker sends them again, and the store's unique key turns any copy that was
  already committed into a duplicate. Nothing lost, nothing stored twice.
- **The database decides, not the worker.** The verifier keeps its per-key replay
  window as a fast first filter, but every authentic message (accepted *or* "duplicate"
  in this worker's memory) is written with ``INSERT ... ON CONFLICT DO NOTHING``: what
  the database says is the verdict. A replay is a replay whichever worker sees it.
- **A database that is down or slow stops acknowledgements, not the worker.** The
  batch is kept and retried; reading pauses once two batches are held; the broker keeps
  everything else (up to the Receive Maximum in flight, the rest queued in the session);
  ``city_database_up`` drops to 0 and the service raises ``database_down``. When the
  database returns, the same batch commits and the acknowledgements flow again.
- **Keys are shared through the store** (city/keys.py): polled every second, and at
  once when a message names a key or pole this worker does not know yet. Such a message
  is parked for a few seconds instead of refused: the rotation it follows may have gone
  to a sibling worker that has not committed it yet.
- **Natural batching.** The writer takes everything verified while the previous commit
  was running, so batches grow with the load and a lone message waits for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import aiomqtt

from city import mqtt, rows
from city.keys import RotationIntake, SharedKeys
from city.metrics import Reporter, WorkerStats
from city.store import Store, StoreUnavailable, open_store
from edge.state import read_private
from provisioning.receiver import BrokerLogin
from provisioning.verifier import Verdict, Verifier

log = logging.getLogger(__name__)

_PARKABLE = ("kid: unknown key", "pole: no key registered")


@dataclass(frozen=True)
class WorkerConfig:
    """Everything one worker process needs (picklable: it crosses to the process)."""

    index: int
    broker: str
    db: str
    client_id: str
    group: str = "city-ingest"
    prefix: str = "poles"
    username: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    max_skew_s: float | None = None
    receive_maximum: int = 1000
    batch_max: int = 500
    key_poll_s: float = 1.0
    park_s: float = 5.0
    park_max: int = 1000
    session_expiry_s: int = 7 * 86400
    floor_flush_s: float = 30.0
    stop_grace_s: float = 10.0
    report_s: float = 1.0
    report_path: str | None = None
    retire: bool = False  # drain this worker's session into the store, then end it
    retire_idle_s: float = 3.0


class _Held:
    __slots__ = ("item", "msg", "gen", "floor")

    def __init__(self, item: rows.Item, msg: aiomqtt.Message, gen: int, floor: int) -> None:
        self.item = item
        self.msg = msg
        self.gen = gen
        self.floor = floor


class _Parked:
    __slots__ = ("deadline", "topic", "payload", "msg", "gen")

    def __init__(self, deadline: float, topic: str, payload: bytes, msg, gen: int) -> None:
        self.deadline = deadline
        self.topic = topic
        self.payload = payload
        self.msg = msg
        self.gen = gen


class Worker:
    """Args:
    cfg: the worker's configuration.
    report: called with a snapshot about once a second (the supervisor's channel).
    store: a store to use instead of opening ``cfg.db`` (tests).
    """

    def __init__(self, cfg: WorkerConfig, report=None, store: Store | None = None) -> None:
        self.cfg = cfg
        self.report = report or (lambda _s: None)
        self.store = store
        self.stats = WorkerStats(cfg.index, os.getpid())
        self.keys = SharedKeys()
        self.intake = RotationIntake()
        self.pending: list[_Held] = []
        self.parked: list[_Parked] = []
        self.floors: dict[bytes, int] = {}
        self._dirty_floors: dict[bytes, int] = {}
        self.client: aiomqtt.Client | None = None
        self.generation = 0
        self._writing = False
        self._last_message = time.monotonic()
        self.retired = False
        self.verifier: Verifier | None = None

    # -- the database thread ------------------------------------------------------------
    async def _db(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _until_db(self, stop: asyncio.Event, fn, *args):
        """``fn(*args)`` in the database thread, retried until it succeeds (None if
        ``stop`` comes first)."""
        delay = 0.5
        while not stop.is_set():
            try:
                out = await self._db(fn, *args)
                self.stats.db_up = True
                return out
            except StoreUnavailable as exc:
                self._db_failed(exc)
                await _wait(stop, delay)
                delay = min(delay * 2, 5.0)
        return None

    def _db_failed(self, exc: Exception) -> None:
        if self.stats.db_up:
            log.error("worker %d: database unavailable (%s); holding messages", self.cfg.index, exc)
        self.stats.db_up = False

    # -- run ----------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"city-db-{self.cfg.index}")
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._poke_keys = asyncio.Event()
        self.store = self.store or open_store(self.cfg.db)
        others: list[asyncio.Task] = [asyncio.create_task(self._report_loop(stop))]
        try:
            # Keys first: a worker that knows none would refuse everything it reads.
            recs = await self._until_db(stop, self.keys.refresh, self.store)
            floors = await self._until_db(stop, self.store.floors)
            if recs is None or floors is None:
                return
            self.keys.apply(recs)
            self.floors = floors
            self.stats.keys_rev = self.keys.rev
            gc.freeze()  # keys and code: long-lived, never garbage; spare the collector
            self.verifier = Verifier(
                self.keys.keys,
                topic_prefix=self.cfg.prefix,
                max_skew_s=self.cfg.max_skew_s,
                history=lambda kid, _window: ([], self.floors.get(kid, -1)),
                trust=self.intake,  # type: ignore[arg-type]  # only .add() is called
            )
            others += [
                asyncio.create_task(self._writer()),
                asyncio.create_task(self._keys_loop()),
                asyncio.create_task(self._floors_loop()),
            ]
            await self._sessions(stop)
        finally:
            for t in others:
                t.cancel()
            for t in others:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            # Best effort, bounded: a database that hangs must not hold up a stop.
            with contextlib.suppress(StoreUnavailable, TimeoutError):
                await asyncio.wait_for(self._db(self._flush_floors_now), 5)
            self.report(self._snapshot())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._db(self.store.close), 5)
            self._pool.shutdown(wait=False)

    def _login(self) -> BrokerLogin:
        password = None
        if self.cfg.password_file:
            password = read_private(self.cfg.password_file).decode().strip()
        return BrokerLogin(self.cfg.username, password, self.cfg.ca_file)

    async def _sessions(self, stop: asyncio.Event) -> None:
        """Connect, subscribe, read until stopped; reconnect with backoff on broker loss.
        On stop: read no more, commit and acknowledge what is held (within the grace
        time), then disconnect; the session (and anything unacknowledged) stays."""
        topic = f"$share/{self.cfg.group}/{self.cfg.prefix}/+/+"
        backoff = 1.0
        while not stop.is_set():
            client = mqtt.consumer(
                self.cfg.broker,
                client_id=self.cfg.client_id,
                login=self._login(),
                session_expiry_s=self.cfg.session_expiry_s,
                receive_maximum=self.cfg.receive_maximum,
            )
            idle = None
            try:
                async with client:
                    self.generation += 1
                    self.client = client
                    if self.cfg.retire:  # take nothing new; what the session holds comes
                        self._last_message = time.monotonic()
                        await client.unsubscribe(topic)
                        idle = asyncio.create_task(self._until_idle(stop))
                    else:
                        await client.subscribe(topic, qos=1)
                        log.info("worker %d subscribed to %s", self.cfg.index, topic)
                    backoff = 1.0
                    reader = asyncio.create_task(self._read(client, self.generation))
                    stopper = asyncio.create_task(stop.wait())
                    await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if not reader.done():
                        reader.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await reader
                        await self._drain(self.cfg.stop_grace_s)
                    else:
                        stopper.cancel()
                        reader.result()
            except aiomqtt.MqttError as exc:
                log.warning("worker %d: broker connection lost (%s)", self.cfg.index, exc)
            finally:
                self.client = None
                if idle is not None:
                    idle.cancel()
            if not stop.is_set():
                await _wait(stop, backoff)
                backoff = min(backoff * 2, 30.0)
        if self.cfg.retire and not self.pending and not self._writing:
            await self._end_session()

    async def _until_idle(self, stop: asyncio.Event) -> None:
        """Retiring: stop once the session has delivered everything and it is stored."""
        while True:
            await asyncio.sleep(0.2)
            quiet = time.monotonic() - self._last_message > self.cfg.retire_idle_s
            if quiet and not (self.pending or self._writing or self.parked):
                stop.set()
                return

    async def _end_session(self) -> None:
        """Clean start with no expiry: the broker drops the session and its share of the
        group, so a worker that is gone for good holds back no messages."""
        client = mqtt.consumer(
            self.cfg.broker,
            client_id=self.cfg.client_id,
            login=self._login(),
            session_expiry_s=0,
            clean_start=True,
        )
        async with client:
            pass
        self.retired = True
        log.info("worker %d: session drained and ended", self.cfg.index)

    async def _read(self, client: aiomqtt.Client, gen: int) -> None:
        check = self.verifier.check
        async for batch in mqtt.batches(client, self.cfg.batch_max):
            for msg in batch:
                while len(self.pending) >= 2 * self.cfg.batch_max:
                    self._room.clear()
                    await self._room.wait()
                payload = msg.payload if isinstance(msg.payload, bytes) else b""
                topic = msg.topic.value
                self._route(check(topic, payload), topic, payload, msg, gen)
            self._last_message = time.monotonic()
        raise aiomqtt.MqttError("message stream ended")

    def _route(self, v: Verdict, topic: str, payload: bytes, msg, gen: int, again=False) -> None:
        if v.status != "rejected":  # authentic: the database decides accepted or duplicate
            try:
                item = rows.item(v, payload, time.time())
            except Exception:  # a bug must not make a message a poison pill: keep it bare
                log.exception("worker %d: rows of %s cti %x failed", self.cfg.index, topic, v.cti)
                item = rows.message(v, payload, time.time())
            self.pending.append(_Held(item, msg, gen, v.floor))
            self._wake.set()
        elif (
            not again
            and v.reason.startswith(_PARKABLE)
            and len(self.parked) < self.cfg.park_max
            and self.cfg.park_s > 0
        ):
            deadline = time.monotonic() + self.cfg.park_s
            self.parked.append(_Parked(deadline, topic, payload, msg, gen))
            self._poke_keys.set()
        else:
            self.stats.reject(v.reason)
            self._ack(msg, gen)

    def _ack(self, msg, gen: int) -> None:
        """PUBACK on the connection the message came by; after a reconnect the broker
        sends it again and that copy is acknowledged instead."""
        if gen == self.generation and self.client is not None:
            mqtt.ack(self.client, msg)

    # -- committing ---------------------------------------------------------------------
    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                batch = self.pending[: self.cfg.batch_max]
                del self.pending[: self.cfg.batch_max]
                self._room.set()
                self._writing = True
                try:
                    await self._commit(batch, self.intake.take())
                finally:
                    self._writing = False

    async def _commit(self, batch: list[_Held], rotations: list) -> None:
        firsts: dict[tuple[bytes, bytes], _Held] = {}
        for h in batch:
            firsts.setdefault(h.item.key, h)
        items = [h.item for h in firsts.values()]
        delay = 0.5
        while True:
            try:
                new = await self._db(self.store.write, items, rotations)
                break
            except StoreUnavailable as exc:
                self._db_failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                log.exception(
                    "worker %d: a batch failed; storing its items one by one", self.cfg.index
                )
                new = await self._one_by_one(items, rotations)
                break
        if not self.stats.db_up:
            log.info("worker %d: database back; acknowledging again", self.cfg.index)
        self.stats.db_up = True
        self.stats.batches += 1
        stored = dict(zip([it.key for it in items], new, strict=True))
        now = time.time()
        lag = 0.0
        for h in batch:
            it = h.item
            if firsts[it.key] is h and stored[it.key]:
                self.stats.accepted += 1
                if it.t > 0:
                    lag = max(lag, now - it.t)
            elif stored[it.key] is None:
                self.stats.unstorable += 1
            else:
                self.stats.duplicate += 1
            if h.floor >= 0 and h.floor > self._dirty_floors.get(it.kid, -1):
                self._dirty_floors[it.kid] = h.floor
            self._ack(h.msg, h.gen)
        self.stats.lag_s = lag

    async def _one_by_one(self, items: list[rows.Item], rotations: list) -> list:
        """Find what a failed batch cannot store: each item alone, then bare (the raw
        message without derived rows); None for an item even that fails (counted, logged
        and acknowledged: holding it would block its session forever)."""
        out: list = []
        for i, it in enumerate(items):
            extra = rotations if i == 0 else []
            for attempt in (it, it.bare()):
                try:
                    out.append((await self._retrying(self.store.write, [attempt], extra))[0])
                    break
                except StoreUnavailable:
                    raise
                except Exception:
                    log.exception(
                        "worker %d: message %s/%s cti %s not storable%s",
                        self.cfg.index,
                        it.pole_id,
                        it.kind,
                        it.cti.hex(),
                        "" if attempt is it else " even bare",
                    )
            else:
                out.append(None)
        return out

    async def _retrying(self, fn, *args):
        delay = 0.5
        while True:
            try:
                return await self._db(fn, *args)
            except StoreUnavailable as exc:
                self._db_failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _drain(self, grace: float) -> None:
        deadline = time.monotonic() + grace
        while (self.pending or self._writing) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.pending or self._writing:
            log.warning(
                "worker %d stopping with %d messages uncommitted: the broker sends them again",
                self.cfg.index,
                len(self.pending),
            )

    # -- shared state -------------------------------------------------------------------
    async def _keys_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke_keys.wait(), self.cfg.key_poll_s)
            self._poke_keys.clear()
            try:
                recs = await self._db(self.keys.refresh, self.store)
            except StoreUnavailable as exc:
                self._db_failed(exc)
                recs = []
            if recs:
                self.keys.apply(recs)
                self.verifier.set_keys(self.keys.keys)
                log.info(
                    "worker %d: %d key changes (revision %d)",
                    self.cfg.index,
                    len(recs),
                    self.keys.rev,
                )
            self.stats.keys_rev = self.keys.rev
            if self.parked:
                self._retry_parked()
            await asyncio.sleep(0.2)  # at most five polls a second, however hard poked

    def _retry_parked(self) -> None:
        now = time.monotonic()
        parked, self.parked = self.parked, []
        for p in parked:
            if p.gen != self.generation:
                continue  # that connection is gone: the broker sends the message again
            v = self.verifier.check(p.topic, p.payload)
            if v.status == "rejected" and v.reason.startswith(_PARKABLE) and now < p.deadline:
                self.parked.append(p)
            else:
                self._route(v, p.topic, p.payload, p.msg, p.gen, again=True)

    async def _floors_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.floor_flush_s)
            with contextlib.suppress(StoreUnavailable):
                await self._db(self._flush_floors_now)

    def _flush_floors_now(self) -> None:
        dirty, self._dirty_floors = self._dirty_floors, {}
        try:
            self.store.save_floors(dirty)
        except StoreUnavailable:
            for k, f in dirty.items():
                self._dirty_floors[k] = max(f, self._dirty_floors.get(k, -1))
            raise

    def _snapshot(self) -> dict:
        return self.stats.snapshot(held=len(self.pending), parked=len(self.parked))

    async def _report_loop(self, stop: asyncio.Event) -> None:
        parent = os.getppid()
        while True:
            self.report(self._snapshot())
            if os.getppid() != parent:  # the supervisor died: stop cleanly, do not linger
                log.error("worker %d: supervisor gone; stopping", self.cfg.index)
                stop.set()
            await asyncio.sleep(self.cfg.report_s)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def worker_main(cfg: WorkerConfig) -> None:
    """A worker process's entry point (the supervisor starts it): runs until SIGTERM or
    SIGINT, then commits and acknowledges what it holds and leaves its session."""
    logging.basicConfig(
        level=os.environ.get("CITY_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s worker-{cfg.index} %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiomqtt").setLevel(logging.WARNING)
    reporter = Reporter(cfg.report_path) if cfg.report_path else None
    mqtt.use_lean_properties()

    async def main() -> Worker:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        w = Worker(cfg, reporter.send if reporter else None)
        await w.run(stop)
        return w

    worker = asyncio.run(main())
    if cfg.retire and not worker.retired:
        raise SystemExit(1)  # the supervisor reports it: run the retirement again
