"""The verifier as an MQTT service: subscribe, verify, store once, report.

Subscribes to ``<prefix>/+/+`` (or a shared subscription, ``$share/<group>/...``,
so several instances can split the load). Accepted messages go to the optional
SQLite store, where (kid, cti) is unique: a duplicate is stored once even across
verifier restarts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from provisioning.verifier import Verdict, Verifier

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    pole_id TEXT NOT NULL, kind TEXT NOT NULL, cti INTEGER NOT NULL, iat INTEGER,
    records TEXT NOT NULL, received REAL NOT NULL,
    PRIMARY KEY (pole_id, cti)
)
"""


class Store:
    """Verified messages, once each."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(_SCHEMA)
        self.db.commit()

    def add(self, v: Verdict) -> bool:
        """True if stored now, False if it was already there."""
        cur = self.db.execute(
            "INSERT OR IGNORE INTO messages (pole_id, kind, cti, iat, records, received) "
            "VALUES (?,?,?,?,?,?)",
            (
                v.pole_id,
                v.kind,
                v.cti,
                v.iat,
                json.dumps([r.as_dict() for r in v.records], default=lambda b: b.hex()),
                time.time(),
            ),
        )
        self.db.commit()
        return cur.rowcount == 1

    def count(self, kind: str | None = None) -> int:
        if kind:
            return self.db.execute(
                "SELECT COUNT(*) FROM messages WHERE kind=?", (kind,)
            ).fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def close(self) -> None:
        self.db.close()


def broker_address(url: str) -> tuple[str, int, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"broker URL {url!r}: use mqtt://HOST:PORT or mqtts://HOST:PORT")
    tls = parts.scheme == "mqtts"
    return parts.hostname, parts.port or (8883 if tls else 1883), tls


class BrokerLogin:
    """How the verifier logs in: username/password and, for mqtts://, the CA to trust."""

    def __init__(
        self, username: str | None = None, password: str | None = None, ca_file: str | None = None
    ) -> None:
        self.username = username
        self.password = password
        self.ca_file = ca_file


def _client(
    host: str, port: int, tls: bool, client_id: str | None, login: BrokerLogin | None
) -> aiomqtt.Client:
    login = login or BrokerLogin()
    kwargs: dict = {
        "protocol": aiomqtt.ProtocolVersion.V5,
        "timeout": 10,
        "username": login.username,
        "password": login.password,
    }
    if tls:
        kwargs["tls_context"] = ssl.create_default_context(cafile=login.ca_file)
    if client_id:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 86400
        kwargs.update(identifier=client_id, clean_start=False, properties=props)
    return aiomqtt.Client(host, port, **kwargs)


async def run_receiver(
    url: str,
    verifier: Verifier,
    on_verdict: Callable[[str, Verdict], None],
    stop: asyncio.Event,
    store: Store | None = None,
    share_group: str | None = None,
    ready: asyncio.Event | None = None,
    client_id: str | None = None,
    login: BrokerLogin | None = None,
) -> None:
    """Verify everything under the prefix until ``stop``; reconnects on broker loss.

    With a ``client_id`` the subscription is a persistent MQTT session (clean start
    off, one-day expiry): messages published while the verifier is away are kept by
    the broker and delivered when it returns.
    """
    host, port, tls = broker_address(url)
    topic = f"{verifier.topic_prefix}/+/+"
    if share_group:
        topic = f"$share/{share_group}/{topic}"
    backoff = 1.0
    while not stop.is_set():
        try:
            async with _client(host, port, tls, client_id, login) as client:
                await client.subscribe(topic, qos=1)
                if ready:
                    ready.set()
                backoff = 1.0
                stopper = asyncio.create_task(stop.wait())
                msgs = client.messages.__aiter__()
                while not stop.is_set():
                    nxt = asyncio.ensure_future(msgs.__anext__())
                    done, _ = await asyncio.wait(
                        {nxt, stopper}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if nxt not in done:
                        nxt.cancel()
                        break
                    msg = nxt.result()
                    payload = msg.payload if isinstance(msg.payload, bytes) else b""
                    v = verifier.check(str(msg.topic), payload)
                    if v.status == "accepted" and store is not None and not store.add(v):
                        v.status = "duplicate"
                    on_verdict(str(msg.topic), v)
                stopper.cancel()
        except aiomqtt.MqttError as exc:
            log.warning("verifier lost the broker %s:%s (%s); retrying", host, port, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)
