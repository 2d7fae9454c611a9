"""Transport security through a real Mosquitto with TLS, per-pole passwords and ACLs:
a pole cannot publish on another pole's topic, and nobody connects without credentials."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess

import aiomqtt
import pytest

from host_sim.broker import Mosquitto
from host_sim.pole import SimPole
from provisioning.broker_auth import BrokerAuth, password_hash
from provisioning.receiver import BrokerLogin, run_receiver
from provisioning.trustlist import TrustList, load_keys
from provisioning.verifier import Verifier
from tests.certs import make_tls_files
from tests.polekit import Fixed

pytestmark = pytest.mark.broker


def test_password_hash_is_mosquittos_own(tmp_path):
    f = tmp_path / "pw"
    f.touch()
    subprocess.run(["mosquitto_passwd", "-b", str(f), "u1", "s3cret"], check=True)
    line = f.read_text().strip()
    salt = base64.b64decode(line.split("$")[3])
    assert line == "u1:" + password_hash("s3cret", salt)


@pytest.fixture
def secure_broker(tmp_path):
    tls = make_tls_files(tmp_path / "tls")
    auth = BrokerAuth(tmp_path / "auth")
    creds = {
        "nl-sec-0001": auth.add("nl-sec-0001"),
        "nl-sec-0002": auth.add("nl-sec-0002"),
        "city-verifier": auth.add("city-verifier", reader=True),
    }
    broker = Mosquitto(workdir=tmp_path / "mosq")
    port = broker.port
    broker.conf.write_text(
        broker.base_config() + f"listener {port} 127.0.0.1\n"
        f"cafile {tls['ca']}\ncertfile {tls['cert']}\nkeyfile {tls['key']}\n"
        "tls_version tlsv1.2\n" + auth.mosquitto_config() + "persistence false\n"
        f"log_dest file {broker.log}\n"
    )
    broker.start()
    yield broker, tls, creds, auth, tmp_path
    broker.close()


def _client(port: int, ca, user=None, password=None, ident=None) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        port,
        username=user,
        password=password,
        identifier=ident,
        protocol=aiomqtt.ProtocolVersion.V5,
        timeout=5,
        tls_context=ssl.create_default_context(cafile=str(ca)),
    )


def test_pole_cannot_publish_on_another_poles_topic(secure_broker):
    broker, tls, creds, _auth, _ = secure_broker

    async def go() -> list[str]:
        got: list[str] = []
        async with _client(
            broker.port, tls["ca"], "city-verifier", creds["city-verifier"]
        ) as reader:
            await reader.subscribe("poles/#", qos=1)
            async with _client(
                broker.port, tls["ca"], "nl-sec-0001", creds["nl-sec-0001"], "nl-sec-0001"
            ) as pole:
                await pole.publish("poles/nl-sec-0002/data", b"forged", qos=1)
                await pole.publish("poles/nl-sec-0001/data", b"own", qos=1)
                # A pole cannot read others' data either.
                await pole.subscribe("poles/#", qos=1)

            async def collect() -> None:
                async for m in reader.messages:
                    got.append(f"{m.topic}={m.payload.decode()}")

            try:
                await asyncio.wait_for(collect(), 2)
            except TimeoutError:
                pass
        return got

    got = asyncio.run(go())
    assert got == ["poles/nl-sec-0001/data=own"]


def test_no_credentials_no_connection(secure_broker):
    broker, tls, creds, _auth, _ = secure_broker

    async def connect(user, password, use_tls=True) -> None:
        kw = {"tls_context": ssl.create_default_context(cafile=str(tls["ca"]))} if use_tls else {}
        async with aiomqtt.Client(
            "127.0.0.1",
            broker.port,
            username=user,
            password=password,
            protocol=aiomqtt.ProtocolVersion.V5,
            timeout=5,
            **kw,
        ):
            pass

    for user, pw in [(None, None), ("nl-sec-0001", "wrong"), ("intruder", "x")]:
        with pytest.raises(aiomqtt.MqttError):
            asyncio.run(connect(user, pw))
    with pytest.raises(aiomqtt.MqttError):  # plain TCP to the TLS listener
        asyncio.run(connect("nl-sec-0001", creds["nl-sec-0001"], use_tls=False))
    asyncio.run(connect("nl-sec-0001", creds["nl-sec-0001"]))  # and the right way works


def test_simulated_pole_over_tls_with_its_own_credentials(secure_broker):
    broker, tls, creds, _auth, work = secure_broker
    pw_file = work / "nl-sec-0001" / "mqtt_password"
    pw_file.parent.mkdir(parents=True, exist_ok=True)
    pw_file.write_text(creds["nl-sec-0001"])
    pw_file.chmod(0o600)  # a broker password readable by others is refused at start
    url = f"mqtts://127.0.0.1:{broker.port}"
    sp = SimPole("nl-sec-0001", work / "nl-sec-0001", url, Fixed(), window_s=1)
    sp.config.mqtt.username = "nl-sec-0001"
    sp.config.mqtt.password_file = str(pw_file)
    sp.config.mqtt.ca_file = str(tls["ca"])
    trust = TrustList(work / "trust.sqlite")
    trust.add("nl-sec-0001", sp.identity.public_key)
    trust.export_file(work / "trust.json")
    trust.close()
    verifier = Verifier(load_keys(work / "trust.json"))
    seen = []

    async def go() -> None:
        stop, pole_stop, ready = asyncio.Event(), asyncio.Event(), asyncio.Event()
        login = BrokerLogin("city-verifier", creds["city-verifier"], str(tls["ca"]))
        recv = asyncio.create_task(
            run_receiver(url, verifier, lambda t, v: seen.append(v), stop, ready=ready, login=login)
        )
        await asyncio.wait_for(ready.wait(), 10)
        pole = asyncio.create_task(sp.run(pole_stop))
        await asyncio.sleep(4)
        pole_stop.set()
        await pole
        await asyncio.sleep(0.5)
        stop.set()
        await recv

    asyncio.run(go())
    kinds = {v.kind for v in seen if v.accepted}
    assert {"birth", "data"} <= kinds, [(v.status, v.reason) for v in seen]
    assert not [v for v in seen if v.status == "rejected"]
