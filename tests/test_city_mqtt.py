"""The MQTT side of an ingest worker: acknowledged only after commit, redelivered to the
session otherwise; and paho's properties decoded the same by the lean class."""

from __future__ import annotations

import asyncio
import os
import time

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import MQTTException, Properties

from city.ingest import Worker, WorkerConfig
from city.mqtt import LeanProperties
from city.store import StoreUnavailable, open_store
from provisioning.trustlist import KeyRecord
from tests.city_fixtures import NOW, data, signer

CHECKED = {
    PacketTypes.PUBLISH: [
        ("PayloadFormatIndicator", 1),
        ("MessageExpiryInterval", 60),
        ("ContentType", 'application/cose; cose-type="cose-sign1"'),
        ("ResponseTopic", "a/b"),
        ("CorrelationData", b"\x00\x01"),
        ("TopicAlias", 3),
        ("UserProperty", ("replay", "1")),
        ("UserProperty", ("k", "v")),
        ("SubscriptionIdentifier", 7),
    ],
    PacketTypes.CONNACK: [
        ("SessionExpiryInterval", 86400),
        ("ReceiveMaximum", 1000),
        ("MaximumPacketSize", 32768),
        ("AssignedClientIdentifier", "x"),
        ("ReasonString", "ok"),
        ("SharedSubscriptionAvailable", 1),
    ],
}


@pytest.mark.parametrize("packet", sorted(CHECKED))
def test_lean_properties_decode_exactly_as_paho(packet):
    ref = Properties(packet)
    for name, value in CHECKED[packet]:
        setattr(ref, name, value)
    raw = ref.pack()
    a, b = Properties(packet), LeanProperties(packet)
    assert a.unpack(raw)[1] == b.unpack(raw)[1]
    assert a.json() == b.json() and str(a) == str(b)
    assert b.unpack(raw)[0].json() == a.json()  # unpacked twice: cleared in between


def test_lean_properties_refuse_what_paho_refuses():
    for name, value in [("ReceiveMaximum", 0), ("PayloadFormatIndicator", 2), ("Nope", 1)]:
        for cls in (Properties, LeanProperties):
            with pytest.raises(MQTTException):
                setattr(cls(PacketTypes.CONNECT), name, value)
    with pytest.raises(MQTTException):  # a property of another packet type
        LeanProperties(PacketTypes.PUBLISH).SessionExpiryInterval = 5


class Switch:
    """A real store whose writes fail while ``down`` (a database that went away)."""

    def __init__(self, store) -> None:
        self.store = store
        self.down = False
        self.attempts = 0

    def __getattr__(self, name):
        return getattr(self.store, name)

    def write(self, items, rotations=()):
        if self.down:
            self.attempts += 1
            raise StoreUnavailable("switched off by the test")
        return self.store.write(items, rotations)


@pytest.mark.broker
def test_nothing_is_acknowledged_before_it_is_stored(mosquitto, tmp_path):
    """Database down: the worker holds its messages unacknowledged and says so; stopped
    then, it loses nothing: the same session gets them again and stores them once. A
    database that comes back: the held messages are stored and acknowledged."""
    prefix = "t" + os.urandom(4).hex()
    s = signer("nl-ams-0001")
    url = f"sqlite:///{tmp_path / 'city.sqlite'}"
    base = open_store(url)
    base.migrate()
    base.apply_trust([KeyRecord(s.pole_id, s.public_key)], [])
    cfg = WorkerConfig(
        index=1, broker=mosquitto.url, db=url, client_id=f"{prefix}-1", group=prefix,
        prefix=prefix, stop_grace_s=0.5,
    )  # fmt: skip

    async def publish(seqs):
        async with aiomqtt.Client("127.0.0.1", mosquitto.port) as c:
            for i in seqs:
                await c.publish(
                    f"{prefix}/{s.pole_id}/data", data(s, i, NOW + 60 * i, [1.0]), qos=1
                )

    async def run(store, until, then=None) -> Worker:
        stop = asyncio.Event()
        w = Worker(cfg, store=store)
        task = asyncio.create_task(w.run(stop))
        deadline = time.monotonic() + 20
        while not until(w):
            assert time.monotonic() < deadline, (w.stats.snapshot(), w.pending)
            await asyncio.sleep(0.05)
            if then:
                then(w)
        stop.set()
        await task
        return w

    async def go():
        # A first connection makes the session; then the database goes down.
        down = Switch(open_store(url))
        await run(down, lambda w: w.client is not None)
        down.down = True
        await publish(range(1, 6))
        w = await run(down, lambda w: down.attempts >= 2)  # it holds them and retries
        assert not w.stats.db_up and w.stats.accepted == 0
        assert base.query("SELECT count(*) FROM messages", {}) == [(0,)]
        # The same session, a working database: all five come again, stored once.
        w = await run(Switch(open_store(url)), lambda w: w.stats.accepted == 5)
        assert base.query("SELECT count(*) FROM messages", {}) == [(5,)]
        # Down, then back while the worker runs: held, then stored and acknowledged.
        flaky = Switch(open_store(url))
        flaky.down = True
        await publish(range(6, 9))

        def revive(w):
            if flaky.attempts >= 2:
                flaky.down = False

        w = await run(flaky, lambda w: w.stats.accepted == 3, then=revive)
        assert w.stats.db_up
        # Nothing is left in the session: a new run receives nothing at all.
        connected: list[float] = []

        def quiet_for_a_second(w) -> bool:
            if w.client is not None and not connected:
                connected.append(time.monotonic())
            return bool(connected) and time.monotonic() - connected[0] > 1.0

        w = await run(Switch(open_store(url)), quiet_for_a_second)
        assert w.stats.accepted + w.stats.duplicate == 0
        assert base.query("SELECT count(*) FROM messages", {}) == [(8,)]

    try:
        asyncio.run(go())
    finally:
        base.close()
