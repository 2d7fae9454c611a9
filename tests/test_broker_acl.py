"""Issue 13, item 3: the broker confines every account. Against a real Mosquitto started
with the files BrokerAuth writes: a pole writes only below its own id and reads nothing,
a reader reads and never publishes, no account takes over another's client id or fires
its will, a packet over the limit is refused by the broker, and the writer refuses names
that could mean something in a topic, a passwd line or a path."""

from __future__ import annotations

import os
import queue
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.names import InvalidName
from host_sim.broker import Mosquitto
from provisioning.broker_auth import (
    MAX_PACKET_SIZE,
    BrokerAuth,
    BrokerAuthError,
    StaleCredential,
    password_hash,
    write_secret,
)

pytestmark = pytest.mark.broker

POLE_A, POLE_B = "nl-acl-0001", "nl-acl-0002"
NOT_AUTHORIZED = 135
WAIT = 5.0


class Client:
    """A paho MQTT 5 client whose events land in queues the test can wait on."""

    def __init__(self, broker: Mosquitto, user: str, password: str, client_id: str, **will):
        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.c.username_pw_set(user, password)
        self.messages: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.pubacks: dict[int, int] = {}
        self.disconnects: queue.Queue = queue.Queue()
        self.connack = threading.Event()
        self.connack_props: Properties | None = None
        self.connack_rc = None
        self._puback = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        self.c.on_subscribe = lambda c, u, mid, rcs, p: self.subacks.put([r.value for r in rcs])
        self.c.on_publish = self._on_publish
        self.c.on_disconnect = lambda c, u, f, rc, p: self.disconnects.put(rc.value)
        if will:
            props = Properties(PacketTypes.WILLMESSAGE)
            props.WillDelayInterval = 0
            self.c.will_set(will["topic"], b"dead", qos=1, properties=props)
        self.c.connect("127.0.0.1", broker.port, keepalive=30)
        self.c.loop_start()
        assert self.connack.wait(WAIT), "no CONNACK"

    def _on_connect(self, c, u, flags, rc, props) -> None:
        self.connack_rc = rc.value
        self.connack_props = props
        self.connack.set()

    def _on_publish(self, c, u, mid, rc, props) -> None:
        with self._puback:
            self.pubacks[mid] = rc.value
            self._puback.notify_all()

    def publish(self, topic: str, payload: bytes) -> int:
        """QoS 1; returns the PUBACK reason code (0 delivered, 135 not authorised)."""
        info = self.c.publish(topic, payload, qos=1)
        with self._puback:
            assert self._puback.wait_for(lambda: info.mid in self.pubacks, WAIT), topic
            return self.pubacks[info.mid]

    def subscribe(self, topic: str) -> list[int]:
        self.c.subscribe(topic, qos=1)
        return self.subacks.get(timeout=WAIT)

    def until(self, topic: str) -> list[tuple[str, bytes]]:
        """Every message up to and including the first on ``topic`` (a marker)."""
        got = []
        while True:
            t, p = self.messages.get(timeout=WAIT)
            got.append((t, p))
            if t == topic:
                return got

    def drain(self, seconds: float = 0.5) -> list[tuple[str, bytes]]:
        got = []
        try:
            while True:
                got.append(self.messages.get(timeout=seconds))
        except queue.Empty:
            return got

    @property
    def connected(self) -> bool:
        return self.c.is_connected()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self) -> None:
        """Vanish without DISCONNECT (as a pole losing power): the broker sends the will."""
        self.c.socket().close()
        self.c.loop_stop()


@pytest.fixture(scope="module")
def city_broker(tmp_path_factory):
    """One confined broker for the module: two poles and two readers (verifier workers)."""
    work: Path = tmp_path_factory.mktemp("acl")
    auth = BrokerAuth(work / "auth")
    creds = {POLE_A: auth.add(POLE_A), POLE_B: auth.add(POLE_B)}
    creds |= auth.add_readers("city-verifier", 2)
    broker = Mosquitto(workdir=work / "mosq", auth=auth, log_all=True).start()
    yield broker, auth, creds
    broker.close()


@pytest.fixture
def city(city_broker):
    """The broker and ``connect(user, client_id=None, topic=WILL)``; clients closed after."""
    broker, auth, creds = city_broker
    clients: list[Client] = []

    def connect(user: str, client_id: str | None = None, **will) -> Client:
        c = Client(broker, user, creds[user], client_id or user, **will)
        clients.append(c)
        return c

    yield broker, auth, creds, connect
    for c in clients:
        c.close()


def test_a_pole_writes_only_below_its_own_id(city):
    _broker, _auth, _creds, connect = city
    reader = connect("city-verifier-1")
    assert reader.subscribe("#") == [1]
    pole = connect(POLE_A)
    own = f"poles/{POLE_A}/data"
    for topic in (
        f"poles/{POLE_B}/data",  # another pole
        f"poles/{POLE_A}x/data",  # a pole whose id starts with ours
        "poles/city-verifier-1/data",  # a reader's name as a pole id
        "poles",
        "other/topic",
        "$SYS/broker/uptime",
    ):
        assert pole.publish(topic, b"forged") == NOT_AUTHORIZED, topic
    assert pole.publish(own, b"mine") == 0
    # Mosquitto handles one connection's packets in order: when the own message arrives,
    # any of the forged ones would have arrived before it.
    assert reader.until(own) == [(own, b"mine")]


def test_a_pole_reads_nothing_not_even_its_own_topics(city):
    _broker, _auth, _creds, connect = city
    reader = connect("city-verifier-2")
    reader.subscribe(f"poles/{POLE_B}/#")
    pole = connect(POLE_A)
    for topic in ("#", "poles/#", f"poles/{POLE_B}/#", f"poles/{POLE_A}/#", "$share/g/poles/#"):
        # Mosquitto 2.0 grants the SUBACK and filters every delivery by the read ACL.
        assert pole.subscribe(topic)[0] in (1, NOT_AUTHORIZED)
    other = connect(POLE_B)
    assert other.publish(f"poles/{POLE_B}/data", b"b's data") == 0
    assert reader.until(f"poles/{POLE_B}/data")
    assert pole.drain(1.0) == []


def test_a_reader_reads_every_pole_and_publishes_nothing(city):
    _broker, _auth, _creds, connect = city
    watcher = connect("city-verifier-2")
    watcher.subscribe("#")
    reader = connect("city-verifier-1")
    for topic in (f"poles/{POLE_A}/data", "poles/city-verifier-1/data", "other", "poles"):
        assert reader.publish(topic, b"forged") == NOT_AUTHORIZED, topic
    # Shared subscriptions need no ACL rule of their own: Mosquitto checks each delivery
    # against the message's real topic, so the reader's 'topic read poles/#' covers them.
    assert reader.subscribe("$share/verifiers/poles/+/+") == [1]
    pole = connect(POLE_A)
    assert pole.publish(f"poles/{POLE_A}/data", b"reading") == 0
    assert reader.until(f"poles/{POLE_A}/data") == [(f"poles/{POLE_A}/data", b"reading")]
    assert watcher.until(f"poles/{POLE_A}/data") == [(f"poles/{POLE_A}/data", b"reading")]


def test_no_account_takes_over_another_client_id_or_fires_its_will(city):
    _broker, _auth, _creds, connect = city
    reader = connect("city-verifier-1")
    reader.subscribe("poles/#")
    victim = connect(POLE_B, topic=f"poles/{POLE_B}/death")
    # Another pole and a reader connect with the victim's client id: the broker renames
    # them to their user names, so the victim's session is untouched.
    thief = connect(POLE_A, client_id=POLE_B)
    spy = connect("city-verifier-2", client_id=POLE_B)
    assert thief.connack_rc == 0 and spy.connack_rc == 0
    assert thief.publish(f"poles/{POLE_B}/data", b"as b") == NOT_AUTHORIZED  # still pole A
    assert thief.publish(f"poles/{POLE_A}/data", b"as a") == 0
    thief.drop()
    spy.drop()
    assert victim.connected and victim.disconnects.empty()
    assert victim.publish(f"poles/{POLE_B}/data", b"still here") == 0
    got = reader.until(f"poles/{POLE_B}/data")
    assert (f"poles/{POLE_B}/death", b"dead") not in got
    assert got[-1] == (f"poles/{POLE_B}/data", b"still here")
    # The victim's own will still works when the victim itself vanishes.
    victim.drop()
    assert reader.until(f"poles/{POLE_B}/death")[-1] == (f"poles/{POLE_B}/death", b"dead")


def test_a_pole_cannot_leave_a_will_on_another_poles_topic(city):
    _broker, _auth, _creds, connect = city
    reader = connect("city-verifier-1")
    reader.subscribe("poles/#")
    pole = connect(POLE_A, topic=f"poles/{POLE_B}/death")
    if pole.connack_rc == 0:
        pole.drop()
    marker = connect(POLE_B)
    assert marker.publish(f"poles/{POLE_B}/data", b"marker") == 0
    assert reader.until(f"poles/{POLE_B}/data") == [(f"poles/{POLE_B}/data", b"marker")]


def test_one_account_is_one_connection(city):
    """Why every verifier worker needs a reader account of its own: with client ids bound
    to user names, a second connection of the same account takes the first one over."""
    broker, _auth, _creds, connect = city
    first = connect("city-verifier-1")
    connect("city-verifier-1", client_id="worker-2")
    # 142 (Session taken over) where the broker says so; Mosquitto 2.0.11 just closes.
    assert first.disconnects.get(timeout=WAIT) in (142, 128)
    assert "Client city-verifier-1 already connected, closing old connection" in (
        broker.log.read_text()
    )


def test_a_packet_over_the_limit_is_refused_by_the_broker(city):
    _broker, _auth, _creds, connect = city
    reader = connect("city-verifier-1")
    reader.subscribe("poles/#")
    pole = connect(POLE_A)
    props = pole.connack_props
    assert props is not None and props.MaximumPacketSize == MAX_PACKET_SIZE
    topic = f"poles/{POLE_A}/data"
    honest = os.urandom(MAX_PACKET_SIZE - 1024)  # far above a signed full data message
    assert pole.publish(topic, honest) == 0
    assert reader.until(topic) == [(topic, honest)]
    pole.c.publish(topic, b"x" * MAX_PACKET_SIZE, qos=1)  # with its headers: over the limit
    assert pole.disconnects.get(timeout=WAIT) == 149  # Packet too large
    after = connect(POLE_B)
    assert after.publish(f"poles/{POLE_B}/data", b"marker") == 0
    assert reader.until(f"poles/{POLE_B}/data") == [(f"poles/{POLE_B}/data", b"marker")]


def test_accounts_added_and_removed_take_effect_on_reload(tmp_path):
    auth = BrokerAuth(tmp_path / "auth")
    reader_pw = auth.add("city-verifier", reader=True)
    with Mosquitto(workdir=tmp_path / "mosq", auth=auth) as broker:
        pw = auth.add("nl-acl-0009")
        broker.reload()
        reader = Client(broker, "city-verifier", reader_pw, "city-verifier")
        reader.subscribe("poles/#")
        pole = Client(broker, "nl-acl-0009", pw, "nl-acl-0009")
        assert pole.publish("poles/nl-acl-0009/data", b"hello") == 0
        assert reader.until("poles/nl-acl-0009/data")
        pole.close()
        auth.remove("nl-acl-0009")
        broker.reload()
        gone = Client(broker, "nl-acl-0009", pw, "nl-acl-0009")
        assert gone.connack_rc != 0  # not authorised
        gone.c.loop_stop()
        reader.close()


# -- the one writer ------------------------------------------------------------------------
BAD_NAMES = ["a/b", "+", "#", "nl:1", "..", "a b", "nl-1\n", "\tx", "x" * 64, "", "-x", 5, None]


def _snapshot(auth: BrokerAuth) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(auth.dir.iterdir())}


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_bad_user_names_are_refused_and_the_files_stay_unchanged(tmp_path, name):
    auth = BrokerAuth(tmp_path / "auth")
    auth.add(POLE_A)
    auth.add("city-verifier", reader=True)
    before = _snapshot(auth)
    good_hash = password_hash("a password of the pole")
    for attempt in (
        lambda: auth.add(name),
        lambda: auth.add(name, reader=True),
        lambda: auth.set_hash(name, good_hash),
        lambda: auth.set_hash(name, good_hash, recorded=2_000_000_000),
        lambda: auth.remove(name),
    ):
        with pytest.raises(InvalidName) as err:
            attempt()
        msg = str(err.value)
        assert "is not valid: use 1 to 63 letters, digits and '-'" in msg
        assert "\n" not in msg and "\t" not in msg
    assert _snapshot(auth) == before
    assert not auth.has_user(name)  # type: ignore[arg-type]


def test_reader_names_for_workers_follow_the_rule(tmp_path):
    auth = BrokerAuth(tmp_path / "auth")
    with pytest.raises(InvalidName):
        auth.add_readers("city/ingest", 2)
    with pytest.raises(InvalidName):
        auth.add_readers("x" * 62, 10)  # x...-10 is 65 characters
    assert set(auth.add_readers("city-ingest", 3)) == {f"city-ingest-{i}" for i in (1, 2, 3)}
    assert auth.readers() == ["city-ingest-1", "city-ingest-2", "city-ingest-3"]


def test_bad_hashes_and_prefixes_are_refused(tmp_path):
    auth = BrokerAuth(tmp_path / "auth")
    auth.add(POLE_A)
    before = _snapshot(auth)
    good = password_hash("pw")
    for bad in (
        "",
        "plain",
        good + "\n",
        good + "\nnl-evil:" + good,
        good.replace("$7$101$", "$7$999999$"),  # too many iterations: every login slow
        good.replace("$7$", "$6$"),
        good[:-3] + ":==",
        b"$7$",
        None,
    ):
        with pytest.raises(BrokerAuthError, match="not a Mosquitto"):
            auth.set_hash(POLE_A, bad)  # type: ignore[arg-type]
    assert _snapshot(auth) == before
    for prefix in ("poles/#", "+", "poles/", "a b", "poles\n"):
        with pytest.raises(InvalidName):
            BrokerAuth(tmp_path / "auth", topic_prefix=prefix)


def test_roles_never_change_by_accident(tmp_path):
    """Provisioning a pole named like a reader, or a registration for it, must not reset
    the reader's password; a reader is not made out of a pole either."""
    auth = BrokerAuth(tmp_path / "auth")
    pw = auth.add("city-verifier", reader=True)
    auth.add(POLE_A)
    before = _snapshot(auth)
    with pytest.raises(BrokerAuthError, match="is a reader account"):
        auth.add("city-verifier")
    with pytest.raises(BrokerAuthError, match="is a reader account"):
        auth.set_hash("city-verifier", password_hash("mine now"), recorded=4_000_000_000)
    with pytest.raises(BrokerAuthError, match="is a pole's account"):
        auth.add(POLE_A, reader=True)
    assert _snapshot(auth) == before and auth.check("city-verifier", pw)


def test_an_older_password_never_replaces_a_newer_one(tmp_path):
    auth = BrokerAuth(tmp_path / "auth")
    pw = auth.add(POLE_A)
    set_at = auth.password_set_at(POLE_A)
    assert set_at is not None
    old = password_hash("from an old registration")
    with pytest.raises(StaleCredential, match="older registration never replaces it"):
        auth.set_hash(POLE_A, old, recorded=int(set_at) - 60)
    assert auth.check(POLE_A, pw)
    newer = password_hash("from a newer registration")
    assert auth.set_hash(POLE_A, newer, recorded=int(set_at) + 60)
    assert auth.check(POLE_A, "from a newer registration")
    assert not auth.set_hash(POLE_A, newer, recorded=int(set_at) + 60)  # again: no change
    # A removal counts as a reset: an older registration does not bring the user back.
    auth.remove(POLE_A)
    with pytest.raises(StaleCredential, match="was removed"):
        auth.set_hash(POLE_A, newer, recorded=int(set_at) + 60)
    assert not auth.has_user(POLE_A)


def test_files_have_exact_modes_and_links_are_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("do not touch\n")
    os.chmod(victim, 0o644)
    d = tmp_path / "auth"
    d.mkdir()
    # A planted passwd link is neither read nor written through: the change is refused.
    (d / "passwd").symlink_to(victim)
    with pytest.raises(BrokerAuthError, match="a symbolic link is refused"):
        BrokerAuth(d).add(POLE_A)
    (d / "passwd").unlink()
    # Links where only writing happens are replaced by the file, never followed.
    (d / "acl").symlink_to(victim)
    secret = tmp_path / "out" / "pw"
    secret.parent.mkdir()
    secret.symlink_to(victim)
    old = os.umask(0)
    try:
        auth = BrokerAuth(d)
        auth.add(POLE_A)
        write_secret(secret, "s3cret\n")
        fresh = BrokerAuth(tmp_path / "new" / "auth")
        fresh.add(POLE_A)
    finally:
        os.umask(old)
    assert victim.read_text() == "do not touch\n" and victim.stat().st_mode & 0o777 == 0o644
    for p in (d / "passwd", d / "acl", d / "accounts.json", secret):
        assert not p.is_symlink() and p.stat().st_mode & 0o777 == 0o600, p
    assert auth.has_user(POLE_A) and secret.read_text() == "s3cret\n"
    assert fresh.dir.stat().st_mode & 0o777 == 0o700
    assert fresh.passwd.stat().st_mode & 0o777 == 0o600


def test_config_lines_confine_and_no_pattern_reaches_readers(tmp_path):
    auth = BrokerAuth(tmp_path / "auth")
    auth.add(POLE_A)
    auth.add("city-verifier", reader=True)
    lines = auth.mosquitto_config().splitlines()
    assert lines == [
        "allow_anonymous false",
        f"password_file {auth.passwd}",
        f"acl_file {auth.acl}",
        "use_username_as_clientid true",
        f"max_packet_size {MAX_PACKET_SIZE}",
    ]
    acl = auth.acl.read_text()
    assert "pattern" not in acl.replace("# No pattern lines", "")
    assert f"user {POLE_A}\ntopic write poles/{POLE_A}/#\n" in acl
    assert "user city-verifier\ntopic read poles/#\n" in acl


def test_files_from_before_are_taken_over_without_the_pattern(tmp_path):
    """A directory written by the earlier BrokerAuth (a 'readers' list and a pattern ACL
    that let readers publish on poles/<reader>/...) is rewritten in the new form."""
    d = tmp_path / "auth"
    d.mkdir()
    pole_pw = "pole password"
    (d / "passwd").write_text(
        f"{POLE_A}:{password_hash(pole_pw)}\ncity-verifier:{password_hash('r')}\n"
    )
    (d / "readers").write_text("city-verifier\n")
    (d / "acl").write_text("user city-verifier\ntopic read poles/#\npattern write poles/%u/#\n")
    auth = BrokerAuth(d)
    assert auth.readers() == ["city-verifier"] and auth.check(POLE_A, pole_pw)
    auth.add(POLE_B)
    acl = auth.acl.read_text()
    assert "%u" not in acl and "user city-verifier\ntopic read poles/#\n" in acl
    assert f"user {POLE_A}\ntopic write poles/{POLE_A}/#\n" in acl
    assert not (d / "readers").exists() and auth.readers() == ["city-verifier"]
    assert auth.check(POLE_A, pole_pw)
    # A password set before the sidecar existed counts as set when passwd last changed.
    with pytest.raises(StaleCredential):
        auth.set_hash(POLE_A, password_hash("old"), recorded=1_600_000_000)


def test_a_damaged_passwd_is_reported_not_rewritten(tmp_path):
    d = tmp_path / "auth"
    d.mkdir()
    damaged = f"{POLE_A}:{password_hash('x')}\nnl/evil:{password_hash('y')}\n"
    (d / "passwd").write_text(damaged)
    with pytest.raises(BrokerAuthError, match="line 2: the user name breaks the name rule"):
        BrokerAuth(d).add(POLE_B)
    assert (d / "passwd").read_text() == damaged
