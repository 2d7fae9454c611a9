"""Under attack, end to end: a real Mosquitto with the city's generated accounts, two
honest poles publishing, and a compromised pole account (its key on the trust list, its
broker password known to the attacker) publishing the whole hostile corpus, trying the
honest poles' topics and exceeding the broker's packet limit. Every hostile message is
refused with a reason of its class, the verifier never stops, and the honest poles'
messages after the attack verify."""

from __future__ import annotations

import asyncio
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.cose import Signer
from edge.transport.mqtt import MAX_PACKET_SIZE
from host_sim.broker import Mosquitto
from host_sim.pole import SimPole
from provisioning.broker_auth import BrokerAuth
from provisioning.receiver import BrokerLogin, run_receiver
from provisioning.trustlist import KeyRecord
from provisioning.verifier import Verifier
from tests.hostile import corpus, good_data
from tests.polekit import Fixed

pytestmark = pytest.mark.broker

EVIL = "nl-evil-0001"
HONEST = ("nl-good-0001", "nl-good-0002")


def _attacker(port: int, password: str, items: list[tuple[str, bytes]]) -> dict:
    """Publish ``items`` (topic, payload) at QoS 1 as the compromised pole; returns what
    the broker said (PUBACK reason codes per topic, disconnects)."""
    done = threading.Event()
    acks: list[int] = []
    disconnects: list[int] = []
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=EVIL, protocol=mqtt.MQTTv5)
    c.username_pw_set(EVIL, password)
    c.on_publish = lambda _c, _u, _mid, rc, _p: acks.append(rc.value)
    c.on_disconnect = lambda _c, _u, _f, rc, _p: disconnects.append(rc.value)
    c.on_connect = lambda *_a: done.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert done.wait(10), "the attacker could not connect"
    for topic, payload in items:
        info = c.publish(topic, payload, qos=1, properties=Properties(PacketTypes.PUBLISH))
        info.wait_for_publish(10)
    c.loop_stop()
    c.disconnect()
    return {"acks": acks, "disconnects": disconnects}


def test_a_compromised_pole_cannot_break_the_chain(tmp_path):
    auth = BrokerAuth(tmp_path / "auth")
    passwords = {pid: auth.add(pid) for pid in (*HONEST, EVIL)}
    reader = auth.add("city-verifier", reader=True)
    broker = Mosquitto(workdir=tmp_path / "mosq", auth=auth).start()
    evil = Signer(b"\x66" * 32, EVIL)
    poles = []
    for pid in HONEST:
        pw_file = tmp_path / f"{pid}.password"
        pw_file.write_text(passwords[pid])
        pw_file.chmod(0o600)
        mqtt_cfg = {"username": pid, "password_file": str(pw_file)}
        poles.append(
            SimPole(
                pid,
                tmp_path / pid,
                broker.url,
                Fixed(),
                window_s=1,
                config_overrides={"mqtt": mqtt_cfg},
            )
        )
    keys = {evil.kid: KeyRecord(EVIL, evil.public_key)}
    for sp in poles:
        keys[sp.identity.kid] = KeyRecord(sp.pole_id, sp.identity.public_key)
    verifier = Verifier(keys, max_skew_s=300)
    verdict_of: dict[bytes, object] = {}
    check = verifier.check

    def capture(topic: str, payload: bytes):
        v = check(topic, payload)
        verdict_of[payload] = v
        return v

    verifier.check = capture  # type: ignore[method-assign]
    seen: list = []
    now = int(time.time())
    items = corpus(evil, HONEST[0], now=now, victim_kid=poles[0].identity.kid)
    forged = good_data(evil, 2, now)  # offered on the honest poles' topics
    attack_over: list[float] = []

    async def go() -> None:
        stop_recv, stop_poles, ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
        login = BrokerLogin("city-verifier", reader)
        recv = asyncio.create_task(
            run_receiver(
                broker.url,
                verifier,
                lambda t, v: seen.append((t, v)),
                stop_recv,
                ready=ready,
                login=login,
            )
        )
        await asyncio.wait_for(ready.wait(), 10)
        runs = [asyncio.create_task(sp.run(stop_poles)) for sp in poles]
        await asyncio.sleep(2)
        plan = [(f"poles/{EVIL}/{kind}", msg) for _cls, kind, msg, _ok in items]
        plan.append((f"poles/{EVIL}/data", good_data(evil, 1, now)))  # its one honest message
        # The attacker also tries the honest poles' topics: the ACL drops these.
        plan += [(f"poles/{pid}/data", forged) for pid in HONEST]
        plan.append((f"poles/{EVIL}/data", b"\x00" * (MAX_PACKET_SIZE + 10)))  # over the limit
        said = await asyncio.to_thread(_attacker, broker.port, passwords[EVIL], plan)
        attack_over.append(time.time())
        seen.append(("attacker", said))
        await asyncio.sleep(3)  # the honest poles go on
        stop_poles.set()
        await asyncio.gather(*runs)
        await asyncio.sleep(0.5)
        stop_recv.set()
        await recv

    try:
        asyncio.run(go())
    finally:
        broker.close()
    # Every hostile message reached the verifier and was refused for its class.
    wrong = []
    for cls, _kind, msg, ok in items:
        v = verdict_of.get(msg)
        if v is None:
            wrong.append((cls, "never reached the verifier"))
        elif v.status != "rejected" or not v.reason.startswith(ok):
            wrong.append((cls, v.status, v.reason))
    assert not wrong, wrong
    # The attacker's one well-formed message is accepted: its key works, it is only
    # confined. Nothing of it reached an honest pole's topic.
    evil_accepted = [v for t, v in seen if t != "attacker" and v.accepted and v.pole_id == EVIL]
    assert len(evil_accepted) == 1
    assert forged not in verdict_of  # sent only on the honest poles' topics: dropped
    # Nothing bigger than the broker's limit was delivered.
    assert all(len(p) <= MAX_PACKET_SIZE for p in verdict_of)
    # The honest poles' messages after the attack verify.
    for pid in HONEST:
        later = [
            v
            for t, v in seen
            if t != "attacker"
            and v.accepted
            and v.pole_id == pid
            and v.kind == "data"
            and v.records[0].time >= int(attack_over[0])
        ]
        assert len(later) >= 2, (pid, len(later))
