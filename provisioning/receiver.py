"""The verifier as an MQTT service: subscribe, verify, store once, report.

Subscribes to ``<prefix>/+/+`` (or a shared subscription, ``$share/<group>/...``,
so several instances can split the load). Accepted messages go to the optional
SQLite store, where (kid, cti) is unique: a duplicate is stored once even across
verifier restarts, a replacement controller's messages (a new key) never collide with
the old one's, and the raw signed bytes are kept so anyone can re-verify them later.
The store also keeps each key's replay state, and ``TrustWatch`` reloads the trust
list when it changes, so revocations take effect without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge.config import parse_broker_url
from edge.state import create_empty
from edge.transport.mqtt import MAX_PACKET_SIZE
from provisioning.verifier import Verdict, Verifier

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    kid BLOB NOT NULL,          -- the signing key: a replacement controller has its own
    cti BLOB NOT NULL,          -- 8 bytes big-endian: ordered like the counter
    pole_id TEXT NOT NULL, kind TEXT NOT NULL, iat INTEGER,
    records TEXT NOT NULL,
    raw BLOB,                   -- the signed message as received: anyone can re-verify it
    received REAL NOT NULL,
    PRIMARY KEY (kid, cti)
);
CREATE INDEX IF NOT EXISTS messages_by_kid ON messages (kid);
CREATE TABLE IF NOT EXISTS replay_floor (kid BLOB PRIMARY KEY, floor BLOB NOT NULL);
"""


class Store:
    """Verified messages, once each per (key, cti), with the raw signed bytes; and each
    key's replay state, so that a restarted verifier still rejects an old message."""

    def __init__(self, path: Path) -> None:
        create_empty(path, 0o644)  # exact mode whatever the umask
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        columns = [r[1] for r in self.db.execute("PRAGMA table_info(messages)")]
        if columns and "kid" not in columns:  # a store of version 0.1, keyed (pole, cti)
            self.db.execute("ALTER TABLE messages RENAME TO messages_v1")
            log.warning("%s: kept the 0.1 table as messages_v1; new messages go to messages", path)
        self.db.executescript(_SCHEMA)
        self.db.commit()

    def add(self, v: Verdict, raw: bytes | None = None) -> bool:
        """True if stored now, False if it was already there."""
        cti = _cti(v.cti)
        cur = self.db.execute(
            "INSERT OR IGNORE INTO messages (kid, cti, pole_id, kind, iat, records, raw, "
            "received) VALUES (?,?,?,?,?,?,?,?)",
            (
                v.kid,
                cti,
                v.pole_id,
                v.kind,
                v.iat,
                json.dumps([r.as_dict() for r in v.records], default=lambda b: b.hex()),
                raw,
                time.time(),
            ),
        )
        if cur.rowcount == 1 and v.floor >= 0:
            self.db.execute(
                "INSERT INTO replay_floor (kid, floor) VALUES (?, ?) "
                "ON CONFLICT (kid) DO UPDATE SET floor = MAX(floor, excluded.floor)",
                (v.kid, _cti(v.floor)),
            )
        self.db.commit()
        return cur.rowcount == 1

    def history(self, kid: bytes, window: int) -> tuple[list[int], int]:
        """The replay state of ``kid`` for Verifier(history=...): its last ``window``
        accepted ctis in arrival order and its floor."""
        rows = self.db.execute(
            "SELECT cti FROM messages WHERE kid = ? ORDER BY rowid DESC LIMIT ?", (kid, window)
        ).fetchall()
        row = self.db.execute("SELECT floor FROM replay_floor WHERE kid = ?", (kid,)).fetchone()
        floor = int.from_bytes(row[0], "big") if row else -1
        return [int.from_bytes(r[0], "big") for r in reversed(rows)], floor

    def count(self, kind: str | None = None) -> int:
        if kind:
            return self.db.execute(
                "SELECT COUNT(*) FROM messages WHERE kind=?", (kind,)
            ).fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]

    def close(self) -> None:
        self.db.close()


def _cti(cti: int) -> bytes:
    return cti.to_bytes(8, "big")


class TrustWatch:
    """Reloads the trust list into a running verifier when it changes (checked every
    ``interval`` seconds, and at once on ``poke()``, e.g. from SIGHUP): a revocation or a
    new pole counts from the next message, without a restart."""

    def __init__(self, source: Path, verifier: Verifier, interval: float = 1.0) -> None:
        self.source = source
        self.verifier = verifier
        self.interval = interval
        self._stamp = self._stat()
        self._poke = asyncio.Event()
        self.reloads = 0

    def _stat(self) -> tuple:
        out = []
        for p in (self.source, Path(str(self.source) + "-wal")):
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except FileNotFoundError:
                out.append(None)
        return tuple(out)

    def poke(self) -> None:
        self._poke.set()

    def reload(self) -> bool:
        from provisioning.trustlist import TrustError, load_keys

        try:
            keys = load_keys(self.source)
        except (OSError, sqlite3.Error, TrustError, ValueError, KeyError) as exc:
            log.error(
                "trust list %s not reloaded (%s); keeping the keys loaded before", self.source, exc
            )
            return False
        self.verifier.set_keys(keys)
        self.reloads += 1
        log.info("trust list %s reloaded: %d keys", self.source, len(keys))
        return True

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._poke.wait()
            poked = self._poke.is_set()
            self._poke.clear()
            stamp = self._stat()
            if poked or stamp != self._stamp:
                self._stamp = stamp
                self.reload()


def broker_address(url: str) -> tuple[str, int, bool]:
    """(host, port, tls) of a broker URL, by the pole's own strict rule (ValueError)."""
    tls, host, port = parse_broker_url(url)
    return host, port, tls


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
    props = Properties(PacketTypes.CONNECT)
    props.MaximumPacketSize = MAX_PACKET_SIZE  # nothing bigger is one of ours
    if client_id:
        # A broker that binds client ids to user names (ours: use_username_as_clientid)
        # keys the session on the user: each worker needs its own reader account.
        props.SessionExpiryInterval = 86400
        kwargs.update(identifier=client_id, clean_start=False)
    kwargs["properties"] = props
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
                    if v.status == "accepted" and store is not None and not store.add(v, payload):
                        v.status = "duplicate"
                    on_verdict(str(msg.topic), v)
                stopper.cancel()
        except aiomqtt.MqttError as exc:
            log.warning("verifier lost the broker %s:%s (%s); retrying", host, port, exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)


FILE_MAX = 64 * 1024  # a signed message is a few kB; anything bigger is not one of ours


def verify_files(
    directory: Path,
    verifier: Verifier,
    on_verdict: Callable[[str, Verdict], None],
    store: Store | None = None,
) -> int:
    """Verify a file drop (edge/transport/filedrop.py): every
    ``<dir>/<pole>/<kind>/<cti>.cose``, each pole's files in cti order. Only regular
    files of bounded size are read, never through a symlink; a folder or file whose
    name breaks the rules is reported as rejected and skipped. Returns how many files."""
    from edge import messages, names

    n = 0
    for pole_dir in sorted(p for p in directory.iterdir()):
        files = []
        for kind_dir in sorted(pole_dir.iterdir()) if pole_dir.is_dir() else ():
            files += [(f.name, kind_dir.name, f) for f in kind_dir.iterdir()]
        for _name, kind, path in sorted(files):
            n += 1
            topic = f"{verifier.topic_prefix}/{pole_dir.name}/{kind}"
            if not (names.is_id(pole_dir.name) and kind in messages.BY_NAME):
                verifier.counts["rejected:file"] += 1
                on_verdict(
                    f"{verifier.topic_prefix}/?/?",
                    Verdict("rejected", "file: not <pole>/<kind>/<cti>.cose"),
                )
                continue
            try:
                data = _read_regular(path, FILE_MAX)
            except OSError as exc:
                verifier.counts["rejected:file"] += 1
                on_verdict(topic, Verdict("rejected", f"file: {exc.strerror or exc}"))
                continue
            v = verifier.check(topic, data)
            if v.status == "accepted" and store is not None and not store.add(v, data):
                v.status = "duplicate"
            on_verdict(topic, v)
    return n


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file (not a symlink, FIFO or device) of at most ``limit``
    bytes; OSError otherwise. Opened non-blocking so a FIFO cannot hang the reader."""
    import errno
    import os
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"over {limit} bytes")
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"over {limit} bytes")
        return data
    finally:
        os.close(fd)
