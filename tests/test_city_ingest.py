"""Three ingest workers on one shared subscription, a real Mosquitto with per-account
ACLs, a real PostgreSQL with PostGIS, simulated poles running the real edge code.

One test, in phases, because starting the parts is the expensive bit: the fleet's
traffic is stored once and queryable; a replay is refused whichever worker receives
it; a revocation reaches every worker within 5 s without a restart; a rotation seen by
one worker is honoured by all, even by a worker that reads the new key's first message
before the rotation is committed; SIGTERM stops the service cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import aiomqtt
import pytest

from city import queries
from city.store import open_store
from edge.cose import Signer, cti_bytes
from edge.rotation import rotate
from edge.state import create_identity, load_identity
from host_sim.broker import Mosquitto
from host_sim.pole import SimPole
from provisioning.broker_auth import BrokerAuth, write_secret
from provisioning.trustlist import TrustList
from tests.city_fixtures import (  # noqa: F401  (fixtures)
    Ingest,
    data,
    offset,
    pg_cluster,
    signer,
    store_url,
)
from tests.polekit import Fixed

pytestmark = [pytest.mark.broker, pytest.mark.slow]

HERE = (52.3702, 4.8952)
SIM = [f"nl-sim-{i:04d}" for i in range(1, 5)]
HAND = ["nl-hand-0001", "nl-hand-0002"]  # poles whose messages the test signs itself
NEW = "nl-new-0001"  # has a broker account, registered in the trust list while running


class City:
    """The broker with accounts, the trust list, the database, the poles' state."""

    def __init__(self, work: Path, db_url: str) -> None:
        self.work = work
        self.db_url = db_url
        self.auth = BrokerAuth(work / "broker")
        self.pw = work / "passwords"
        for user, password in self.auth.add_readers("city-ingest", 3).items():
            write_secret(self.pw / user, password)
        self.trust = work / "trust.sqlite"
        self.signers: dict[str, Signer] = {}
        with TrustList(self.trust) as tl:
            for pid in SIM + HAND + [NEW]:
                write_secret(self.pw / pid, self.auth.add(pid))
                ident = create_identity(work / "state" / pid, pid)
                if pid != NEW:
                    tl.add(pid, ident.public_key)
                self.signers[pid] = Signer(ident.seed, pid)
        self.broker = Mosquitto(
            workdir=work / "mosquitto",
            auth=self.auth,
            extra_config="max_inflight_messages 1000\n",
        ).start()

    def pole(self, i: int) -> SimPole:
        pid = SIM[i]
        lat, lon = offset(*HERE, 200 * i)  # 0, 200, 400, 600 m north
        return SimPole(
            pid,
            self.work / "state" / pid,
            self.broker.url,
            Fixed(),
            window_s=1,
            health_s=2,
            config_overrides={
                "mqtt": {"username": pid, "password_file": str(self.pw / pid)},
                "location": {"lat": lat, "lon": lon},
            },
        )

    async def publish(self, pid: str, kind: str, payloads: list[bytes]) -> None:
        password = (self.pw / pid).read_text().strip()
        async with aiomqtt.Client(
            "127.0.0.1",
            self.broker.port,
            username=pid,
            password=password,
            identifier=pid,
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as c:
            for p in payloads:
                await c.publish(f"poles/{pid}/{kind}", p, qos=1)


async def until(check, timeout: float, what: str, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(step)


def ph(store, name: str) -> str:
    return f"%({name})s" if store.dialect == "postgres" else f":{name}"


def stored(store, pole_id: str, kid: bytes | None = None) -> int:
    sql = f"SELECT count(*) FROM messages WHERE pole_id = {ph(store, 'p')}"
    if kid is not None:
        sql += f" AND kid = {ph(store, 'k')}"
    return store.query(sql, {"p": pole_id, "k": kid})[0][0]


def test_three_workers_share_the_traffic_and_the_state(store_url, tmp_path):  # noqa: F811
    """The same on PostgreSQL and on one SQLite file shared by three processes."""
    city = City(tmp_path, store_url)
    ingest = Ingest(
        "--db", city.db_url, "--broker", city.broker.url, "--workers", "3",
        "--trust", str(city.trust), "--password-dir", str(city.pw),
        "--reader-base", "city-ingest", "--park", "5",
        log=tmp_path / "ingest.log",
    )  # fmt: skip
    store = open_store(city.db_url)
    try:
        ingest.wait_up(3)
        asyncio.run(_phases(city, ingest, store))
        assert ingest.stop() == 0  # SIGTERM: workers commit, acknowledge and leave
        assert "did not stop in time" not in ingest.log.read_text()
    finally:
        ingest.stop()
        store.close()
        city.broker.close()


async def _phases(city: City, ingest: Ingest, store) -> None:
    stops = [asyncio.Event() for _ in SIM]
    poles = [city.pole(i) for i in range(len(SIM))]
    tasks = [asyncio.create_task(p.run(stop)) for p, stop in zip(poles, stops, strict=True)]
    try:
        # 1. The fleet's traffic is stored, spread over the three workers, queryable.
        await until(
            lambda: all(stored(store, pid) >= 6 for pid in SIM), 40, "every pole's messages"
        )
        rates = ingest.per_worker("city_ingest_messages_total", status="accepted")
        assert len(rates) == 3 and all(v > 0 for v in rates.values()), rates
        near = queries.hourly_means(store, *HERE, time.time() - 3600, time.time() + 60)
        assert {h.pole_id for h in near} == set(SIM[:3])  # 0, 200, 400 m; not 600 m
        assert all(abs(h.mean - Fixed.AIR["pm2_5"]) < 0.05 for h in near)
        latest = queries.latest_readings(store, time.time() - 600)
        assert {r.pole_id for r in latest} == set(SIM)

        # 2. A replay is refused whichever worker receives it.
        hand = city.signers[HAND[0]]
        original = data(hand, 1, int(time.time()) // 60 * 60, [8.0])
        await city.publish(HAND[0], "data", [original])
        await until(lambda: stored(store, HAND[0]) == 1, 10, "the original")
        before = ingest.per_worker("city_ingest_messages_total", status="duplicate")
        dup: dict = {}
        for n in range(5):  # until each worker has had some copies, as below
            await city.publish(HAND[0], "data", [original] * 9)
            dup = await until(
                lambda n=n: _delta(
                    ingest.per_worker("city_ingest_messages_total", status="duplicate"),
                    before, 9 * (n + 1),
                ),
                15, "nine duplicates",
            )  # fmt: skip
            if set(dup) == {"1", "2", "3"}:
                break
        assert set(dup) == {"1", "2", "3"}, dup  # every worker got a copy, none stored it
        assert stored(store, HAND[0]) == 1

        # 3. A revocation reaches every worker within 5 s, without a restart.
        victim = SIM[1]
        t0 = time.monotonic()
        with TrustList(city.trust) as tl:
            tl.revoke(pole_id=victim)
            tl.revoke(pole_id=HAND[0])
        await until(lambda: _revoked(store, {victim, HAND[0]}), 5, "the store to learn it")
        target = store.keys_since(0)[1]
        await until(
            lambda: min(ingest.per_worker("city_keys_revision").values()) >= target,
            5, "every worker to apply it",
        )  # fmt: skip
        took = time.monotonic() - t0
        assert took < 5, took
        cutoff = time.time() + 0.5
        rej = ingest.per_worker("city_ingest_rejected_total", reason="kid")
        # The broker decides which worker gets what: send nine at a time until each of
        # the three has had (and refused) some, at most five rounds.
        got: dict = {}
        for n in range(5):
            first = 2 + 9 * n
            fresh = [
                data(hand, i, int(time.time()) // 60 * 60, [8.0]) for i in range(first, first + 9)
            ]
            await city.publish(HAND[0], "data", fresh)
            got = await until(
                lambda n=n: _delta(
                    ingest.per_worker("city_ingest_rejected_total", reason="kid"), rej, 9 * (n + 1)
                ),
                15, "nine rejections",
            )  # fmt: skip
            if set(got) == {"1", "2", "3"}:
                break
        assert set(got) == {"1", "2", "3"}, got  # refused by every worker
        assert stored(store, HAND[0]) == 1
        await asyncio.sleep(2)
        after = "to_timestamp(%(t)s)" if store.dialect == "postgres" else ":t"
        late = store.query(
            f"SELECT count(*) FROM messages WHERE pole_id = {ph(store, 'p')} "
            f"AND received_at > {after}",
            {"p": victim, "t": cutoff},
        )
        assert late == [(0,)]
        stops[1].set()  # the revoked pole is switched off: its refusals end here
        await tasks[1]
        await asyncio.sleep(1)

        # 4. A rotation seen by one worker is honoured by all: the announcement goes to
        # one worker, the new key's next nine messages to all three at once.
        pid = HAND[1]
        state = city.work / "state" / pid
        old = load_identity(state)
        new = rotate(state)
        announcement = (state / "rotation.cose").read_bytes()
        signer = Signer(new.seed, pid)
        end = int(time.time()) // 60 * 60
        after = [
            signer.sign("data", _payload(pid, end), end, cti_bytes(9, i)) for i in range(1, 10)
        ]
        rej = sum(ingest.values("city_ingest_rejected_total").values())
        await city.publish(pid, "rotate", [announcement])
        await city.publish(pid, "data", after)
        await until(lambda: stored(store, pid, new.kid) == 9, 15, "the new key's messages")
        assert stored(store, pid, old.kid) == 1  # the announcement, under the old key
        assert sum(ingest.values("city_ingest_rejected_total").values()) == rej
        # The registration side's trust list learns the rotated key and its origin.
        await until(lambda: _in_file(city.trust, new.kid), 5, "the key in the trust list")

        # 5. A pole registered while the workers run is heard at once: its first
        # messages wait (parked) for the key instead of being refused.
        fresh_pole = city.signers[NEW]
        with TrustList(city.trust) as tl:
            tl.add(NEW, fresh_pole.public_key)
        end = int(time.time()) // 60 * 60
        first = [data(fresh_pole, i, end, [5.0]) for i in range(1, 7)]
        await city.publish(NEW, "data", first)
        await until(lambda: stored(store, NEW) == 6, 10, "the new pole's messages")
        assert sum(ingest.values("city_ingest_rejected_total").values()) == rej
    finally:
        for stop in stops:
            stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    text = ingest.metrics()
    for name in ("city_ingest_lag_seconds", "city_ingest_rate", "city_database_up",
                 'city_alarm{alarm="database_down"} 0.0'):  # fmt: skip
        assert name in text, name


def _delta(now: dict, before: dict, total: int) -> dict | None:
    d = {w: v - before.get(w, 0) for w, v in now.items() if v - before.get(w, 0) > 0}
    return d if sum(d.values()) >= total else None


def _revoked(store, poles: set[str]) -> bool:
    recs = store.keys_since(0)[0]
    return all(r.status == "revoked" for r in recs if r.pole_id in poles)


def _in_file(path: Path, kid: bytes) -> bool:
    with contextlib.closing(TrustList(path)) as tl:
        return any(r.kid == kid and r.rotated_from for r in tl.records())


def _payload(pole_id: str, end: int) -> bytes:
    from edge import senml
    from edge.window import Window
    from tests.city_fixtures import SERIES

    w = Window(end - 60, 60)
    w.add(("sds011", "pm2_5"), 9.0)
    return senml.WindowPackEncoder(pole_id, SERIES).encode(w, w.end)


def test_a_retired_worker_hands_back_its_share(tmp_path):
    """Scaling down: a stopped worker's session keeps taking its share of the group until
    it expires. ``ingest --retire`` drains it into the store and ends it; from then on
    the remaining workers get everything."""
    broker = Mosquitto(workdir=tmp_path / "mosquitto").start()
    url = f"sqlite:///{tmp_path / 'city.sqlite'}"
    trust = tmp_path / "trust.sqlite"
    s = signer("nl-ams-0001")
    with TrustList(trust) as tl:
        tl.add(s.pole_id, s.public_key)
    common = ["--db", url, "--broker", broker.url, "--trust", str(trust), "--group", "g"]
    store = open_store(url)

    def run(*args: str, workers: int) -> Ingest:
        ing = Ingest(*common, *args, log=tmp_path / "ingest.log")
        if "--retire" not in args:
            ing.wait_up(workers)
        return ing

    def count() -> int:
        return store.query("SELECT count(*) FROM messages", {})[0][0]

    async def publish(seqs) -> None:
        async with aiomqtt.Client("127.0.0.1", broker.port) as c:
            for i in seqs:
                await c.publish(
                    f"poles/{s.pole_id}/data", data(s, i, 1_800_000_000 + i, [1.0]), qos=1
                )

    try:
        run("--workers", "2", workers=2).stop()  # two sessions in the group, now offline
        asyncio.run(publish(range(1, 21)))
        one = run("--workers", "1", workers=1)
        asyncio.run(until(lambda: count() >= 8, 20, "worker 1's share"))
        time.sleep(1.5)
        assert 0 < count() < 20  # the rest waits in worker 2's session
        one.stop()
        retire = run("--first-worker", "2", "--workers", "1", "--retire", workers=1)
        assert retire.proc.wait(60) == 0, (tmp_path / "ingest.log").read_text()[-2000:]
        assert count() == 20
        asyncio.run(publish(range(21, 31)))
        one = run("--workers", "1", workers=1)
        asyncio.run(until(lambda: count() == 30, 20, "everything, through worker 1"))
        one.stop()
    finally:
        store.close()
        broker.close()
