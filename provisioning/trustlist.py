"""The city's trust list: which public key speaks for which pole, and whether it still may.

SQLite by default (one file, transactional, easy to back up). Exported as a
documented JSON file (docs/trust-list.md) so any third-party verifier can check
our messages without our code.

Three tables, three roles that never share a key: ``keys`` (poles: they sign what they
publish), ``technicians`` (they sign offline registrations) and ``operators`` (the
city: installed on every pole at provisioning, they authorise changes to a finished
pole). A public key enrolled in one role is refused in another.

A pole key added by a rotation records the key it was rotated from (``rotated_from``):
whoever stole a key can announce a rotation with it before the theft is noticed, so
revoking a stolen key (``revoke(..., compromised=True)``) also revokes every key rotated
from it, transitively, and a key announced under a revoked key is recorded revoked.
Names (pole ids, technicians, operators) follow the one rule of ``edge.names``.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

import cbor2

from edge.cose import kid_for
from edge.names import InvalidName, check_id, check_pole_id
from edge.state import atomic_write, create_empty

FORMAT = "lightpole-trust-list"
VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    kid TEXT PRIMARY KEY,
    pole_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    added REAL NOT NULL,
    revoked REAL,
    note TEXT NOT NULL DEFAULT '',
    rotated_from TEXT
)
"""
_ROTATED_INDEX = "CREATE INDEX IF NOT EXISTS keys_rotated_from ON keys (rotated_from)"
_DB_MODE = 0o644  # public keys only; SQLite gives its -wal and -shm files the same mode


_TECH_SCHEMA = """
CREATE TABLE IF NOT EXISTS technicians (
    kid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    added REAL NOT NULL
)
"""


_OPERATOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS operators (
    kid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    added REAL NOT NULL,
    revoked REAL
)
"""


class TrustError(ValueError):
    """A trust-list operation cannot be done; the message says why and what to do."""


class KeyRecord:
    """One pole key. ``rotated_from``: the kid (hex) of the key whose rotation
    announcement added it, or None."""

    def __init__(
        self,
        pole_id: str,
        public_key: bytes,
        status: str = "active",
        rotated_from: str | None = None,
    ) -> None:
        if len(public_key) != 32:
            raise TrustError(
                f"pole {pole_id}: an Ed25519 public key is 32 bytes, got {len(public_key)}"
            )
        self.pole_id = pole_id
        self.public_key = public_key
        self.kid = kid_for(public_key)
        self.status = status
        self.rotated_from = rotated_from

    @property
    def active(self) -> bool:
        return self.status == "active"

    def cose_key(self) -> bytes:
        """The key as a COSE_Key (RFC 9053): {1: OKP, -1: Ed25519, -2: x, 2: kid}."""
        return cbor2.dumps({1: 1, 3: -8, -1: 6, -2: self.public_key, 2: self.kid})

    def to_json(self) -> dict:
        return {
            "pole_id": self.pole_id,
            "kid": self.kid.hex(),
            "public_key": self.public_key.hex(),
            "alg": "EdDSA",
            "crv": "Ed25519",
            "status": self.status,
            "cose_key": self.cose_key().hex(),
        }


def _cose_key(public_key: bytes) -> str:
    return cbor2.dumps({1: 1, 3: -8, -1: 6, -2: public_key, 2: kid_for(public_key)}).hex()


class TrustList:
    """SQLite-backed trust list; ``with TrustList(path) as tl:`` closes it afterwards."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        create_empty(path, _DB_MODE)  # exact mode whatever the umask
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(_SCHEMA)
        self.db.execute(_TECH_SCHEMA)
        self.db.execute(_OPERATOR_SCHEMA)
        self.db.commit()
        self._migrate()

    def _migrate(self) -> None:
        """Bring a trust list made by an earlier version up to date, in place: the
        ``rotated_from`` column, filled for keys whose note says which key they were
        rotated from (what the verifier wrote before the column existed)."""
        if "rotated_from" not in self._columns():
            with self.db:
                self.db.execute("BEGIN IMMEDIATE")  # one process migrates, others wait
                if "rotated_from" not in self._columns():
                    self.db.execute("ALTER TABLE keys ADD COLUMN rotated_from TEXT")
                    self._backfill_rotated_from()
        self.db.execute(_ROTATED_INDEX)
        self.db.commit()

    def _columns(self) -> set[str]:
        return {row[1] for row in self.db.execute("PRAGMA table_info(keys)")}

    def _backfill_rotated_from(self) -> None:
        rows = self.db.execute(
            "SELECT kid, pole_id, note FROM keys WHERE note LIKE 'rotated from %'"
        ).fetchall()
        for kid, pole_id, note in rows:
            old = note[len("rotated from ") :].strip()
            parent = self.db.execute("SELECT pole_id FROM keys WHERE kid = ?", (old,)).fetchone()
            if old != kid and parent is not None and parent[0] == pole_id:
                self.db.execute("UPDATE keys SET rotated_from = ? WHERE kid = ?", (old, kid))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> TrustList:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _role_of(self, public_key: bytes) -> str | None:
        """'pole', 'technician' or 'operator' if this key is enrolled in any role."""
        kid = kid_for(public_key).hex()
        for table, role in (
            ("keys", "pole"),
            ("technicians", "technician"),
            ("operators", "operator"),
        ):
            if self.db.execute(f"SELECT 1 FROM {table} WHERE kid = ?", (kid,)).fetchone():
                return role
        return None

    def _refuse_other_role(self, public_key: bytes, role: str, who: str) -> None:
        other = self._role_of(public_key)
        if other is not None and other != role:
            raise TrustError(
                f"{who}: this public key is enrolled as a {other} key; one key, one role: "
                f"make a separate key for the {role}"
            )

    def add(
        self,
        pole_id: str,
        public_key: bytes,
        note: str = "",
        rotated_from: str | None = None,
    ) -> KeyRecord:
        """Register a pole's key. Idempotent for the same key; refuses a revoked one.

        ``rotated_from``: the kid (hex) of the key whose rotation announcement adds this
        one. A key announced under a revoked key is never active: it is recorded (so a
        later look at the list shows what the announcement tried) and returned revoked;
        such a key, already listed as revoked, is returned as it is rather than refused.
        """
        try:
            check_pole_id(pole_id)
        except InvalidName as exc:
            raise TrustError(str(exc)) from None
        rec = KeyRecord(pole_id, public_key, rotated_from=rotated_from)
        self._refuse_other_role(public_key, "pole", f"pole {pole_id}")
        status = "active"
        if rotated_from is not None:
            parent = self.db.execute(
                "SELECT pole_id, status FROM keys WHERE kid = ?", (rotated_from,)
            ).fetchone()
            if parent is not None and parent[0] != pole_id:
                raise TrustError(f"key {rotated_from} belongs to pole {parent[0]}, not {pole_id}")
            if parent is not None and parent[1] == "revoked":
                status = "revoked"
        row = self.db.execute(
            "SELECT pole_id, status FROM keys WHERE kid = ?", (rec.kid.hex(),)
        ).fetchone()
        if row:
            if row[0] != pole_id:
                raise TrustError(f"key {rec.kid.hex()} is already registered for pole {row[0]}")
            if row[1] == "revoked":
                if rotated_from is not None:
                    rec.status = "revoked"
                    return rec
                raise TrustError(
                    f"key {rec.kid.hex()} of pole {pole_id} was revoked; generate a new key"
                )
            return rec
        now = time.time()
        with self.db:
            self.db.execute(
                "INSERT INTO keys (kid, pole_id, public_key, status, added, revoked, note, "
                "rotated_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.kid.hex(),
                    pole_id,
                    public_key.hex(),
                    status,
                    now,
                    now if status == "revoked" else None,
                    note,
                    rotated_from,
                ),
            )
        rec.status = status
        return rec

    def revoke(
        self, pole_id: str | None = None, kid: str | None = None, compromised: bool = False
    ) -> int:
        """Revoke one key (by kid) or every active key of a pole; returns how many.

        ``compromised``: the key was (or may have been) stolen. Whoever holds it may
        already have announced a rotation to a key of their own, so every key rotated
        from it is revoked too, transitively (see ``rotated_from_keys``)."""
        if not (pole_id or kid):
            raise TrustError("name a pole id or a kid to revoke")
        with self.db:
            if kid:
                kids = [kid]
            else:
                rows = self.db.execute("SELECT kid FROM keys WHERE pole_id=?", (pole_id,))
                kids = [r[0] for r in rows]
            if compromised:
                kids += self.rotated_from_keys(kids)
            now = time.time()
            n = 0
            for k in kids:
                n += self.db.execute(
                    "UPDATE keys SET status='revoked', revoked=? WHERE kid=? AND status='active'",
                    (now, k),
                ).rowcount
        return n

    def rotated_from_keys(self, kids: Iterable[str]) -> list[str]:
        """The kids (hex) of every key rotated from one of ``kids``, transitively, in the
        order of the rotations (``kids`` themselves not included)."""
        seen = set(kids)
        out: list[str] = []
        frontier = list(seen)
        while frontier:
            marks = ",".join("?" * len(frontier[:500]))
            rows = self.db.execute(
                f"SELECT kid FROM keys WHERE rotated_from IN ({marks}) ORDER BY added",
                frontier[:500],
            ).fetchall()
            frontier = frontier[500:]
            for (k,) in rows:
                if k not in seen:
                    seen.add(k)
                    out.append(k)
                    frontier.append(k)
        return out

    def active_keys(self, pole_id: str) -> list[KeyRecord]:
        return [r for r in self.records() if r.pole_id == pole_id and r.active]

    # -- technicians: whose signed offline registrations the city accepts ---------------
    def add_technician(self, name: str, public_key: bytes) -> str:
        """Enrol a technician's key; returns its kid (hex). Idempotent for the same name
        and key; a key enrolled under another name, or revoked, is refused."""
        try:
            check_id(name, "technician")
        except InvalidName as exc:
            raise TrustError(str(exc)) from None
        if len(public_key) != 32:
            raise TrustError(f"technician {name}: an Ed25519 public key is 32 bytes")
        self._refuse_other_role(public_key, "technician", f"technician {name}")
        kid = kid_for(public_key).hex()
        row = self.db.execute(
            "SELECT name, status FROM technicians WHERE kid = ?", (kid,)
        ).fetchone()
        if row:
            if row[1] == "revoked":
                raise TrustError(
                    f"technician key {kid} was revoked; the technician makes a new key with "
                    "'pole-admin technician create' and the city enrols that one"
                )
            if row[0] != name:
                raise TrustError(f"technician key {kid} is already enrolled as {row[0]}")
            return kid
        with self.db:
            self.db.execute(
                "INSERT INTO technicians (kid, name, public_key, status, added) "
                "VALUES (?, ?, ?, 'active', ?)",
                (kid, name, public_key.hex(), time.time()),
            )
        return kid

    def revoke_technician(self, name: str | None = None, kid: str | None = None) -> int:
        """Revoke every active key of technician ``name``, or the key ``kid`` (hex: also
        for a name enrolled before names followed the rule); returns how many."""
        if not (name or kid):
            raise TrustError("name a technician or a kid to revoke")
        where, arg = ("kid", kid) if kid else ("name", name)
        with self.db:
            cur = self.db.execute(
                f"UPDATE technicians SET status='revoked' WHERE {where}=? AND status='active'",
                (arg,),
            )
        return cur.rowcount

    def technicians(self) -> list[tuple[str, str, str]]:
        """(name, kid hex, status) of every enrolled technician key."""
        return self.db.execute(
            "SELECT name, kid, status FROM technicians ORDER BY name, added"
        ).fetchall()

    def technician(self, kid: bytes) -> tuple[str, bytes, str] | None:
        """(name, public key, status) of a technician key, or None if unknown."""
        row = self.db.execute(
            "SELECT name, public_key, status FROM technicians WHERE kid=?", (kid.hex(),)
        ).fetchone()
        return (row[0], bytes.fromhex(row[1]), row[2]) if row else None

    # -- operators: the city's keys, installed on poles, that authorise changes to them ----
    def add_operator(self, name: str, public_key: bytes) -> str:
        """Enrol a city operator key; returns its kid (hex). Idempotent for the same name
        and key; a withdrawn key is never enrolled again (make a new one)."""
        try:
            check_id(name, "operator")
        except InvalidName as exc:
            raise TrustError(str(exc)) from None
        if len(public_key) != 32:
            raise TrustError(f"operator {name}: an Ed25519 public key is 32 bytes")
        self._refuse_other_role(public_key, "operator", f"operator {name}")
        kid = kid_for(public_key).hex()
        row = self.db.execute("SELECT name, status FROM operators WHERE kid = ?", (kid,)).fetchone()
        if row:
            if row[1] == "revoked":
                raise TrustError(
                    f"operator key {kid} was revoked; make a new key with 'pole-admin operator "
                    "create' and enrol that one"
                )
            if row[0] != name:
                raise TrustError(f"operator key {kid} is already enrolled as {row[0]}")
            return kid
        with self.db:
            self.db.execute(
                "INSERT INTO operators (kid, name, public_key, status, added) "
                "VALUES (?, ?, ?, 'active', ?)",
                (kid, name, public_key.hex(), time.time()),
            )
        return kid

    def revoke_operator(self, name: str) -> int:
        """Withdraw every active key of operator ``name``; returns how many. Poles keep
        accepting it until their operator keys are updated (see docs/security-console.md)."""
        with self.db:
            cur = self.db.execute(
                "UPDATE operators SET status='revoked', revoked=? WHERE name=? AND status='active'",
                (time.time(), name),
            )
        return cur.rowcount

    def operators(self) -> list[tuple[str, str, str]]:
        """(name, kid hex, status) of every enrolled operator key."""
        return self.db.execute(
            "SELECT name, kid, status FROM operators ORDER BY name, added"
        ).fetchall()

    def active_operators(self) -> list[dict]:
        """[{name, public_key (hex)}] of the active operator keys: what poles install."""
        rows = self.db.execute(
            "SELECT name, public_key FROM operators WHERE status='active' ORDER BY name, added"
        ).fetchall()
        return [{"name": r[0], "public_key": r[1]} for r in rows]

    def records(self) -> list[KeyRecord]:
        rows = self.db.execute(
            "SELECT pole_id, public_key, status, rotated_from FROM keys ORDER BY pole_id, added"
        ).fetchall()
        return [KeyRecord(r[0], bytes.fromhex(r[1]), r[2], r[3]) for r in rows]

    def export(self) -> dict:
        rows = self.db.execute(
            "SELECT name, public_key, status FROM operators ORDER BY name, added"
        ).fetchall()
        operators = [
            {
                "name": name,
                "kid": kid_for(bytes.fromhex(pk)).hex(),
                "public_key": pk,
                "alg": "EdDSA",
                "crv": "Ed25519",
                "status": status,
                "cose_key": _cose_key(bytes.fromhex(pk)),
            }
            for name, pk, status in rows
        ]
        return {
            "format": FORMAT,
            "version": VERSION,
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "keys": [r.to_json() for r in self.records()],
            "operators": operators,
        }

    def export_file(self, out: Path) -> int:
        """Write the JSON export (mode 0644 whatever the umask); returns how many pole keys."""
        doc = self.export()
        atomic_write(out, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o644)
        return len(doc["keys"])


def load_keys(source: Path) -> dict[bytes, KeyRecord]:
    """kid -> KeyRecord from an exported JSON trust list or a trust-list SQLite file."""
    if source.suffix == ".json":
        try:
            doc = json.loads(source.read_text())
        except json.JSONDecodeError as exc:
            raise TrustError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise TrustError(f"{source}: not a {FORMAT} file")
        try:
            recs = [
                KeyRecord(check_pole_id(k["pole_id"]), bytes.fromhex(k["public_key"]), k["status"])
                for k in doc["keys"]
            ]
            if any(r.status not in ("active", "revoked") for r in recs):
                raise ValueError
        except TrustError:
            raise
        except InvalidName as exc:
            raise TrustError(f"{source}: {exc}") from None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TrustError(f"{source}: not a valid exported trust list (keys)") from None
    else:
        with TrustList(source) as tl:
            recs = tl.records()
    return {r.kid: r for r in recs}


def load_operators(source: Path) -> list[dict]:
    """[{name, public_key (hex)}] of the active operator keys, from the trust list
    (SQLite) or its JSON export (checked: names, 32-byte keys; a malformed file is an
    error, not an empty list)."""
    if source.suffix != ".json":
        if not source.exists():
            raise TrustError(f"{source}: no such trust list")
        with TrustList(source) as tl:
            return tl.active_operators()
    try:
        doc = json.loads(source.read_text())
        if doc.get("format") != FORMAT:
            raise TrustError(f"{source}: not a {FORMAT} file")
        out = []
        for op in doc.get("operators", []):
            name = check_id(op["name"], "operator")
            pk = bytes.fromhex(op["public_key"])
            if len(pk) != 32 or op["status"] not in ("active", "revoked"):
                raise ValueError
            if op["status"] == "active":
                out.append({"name": name, "public_key": pk.hex()})
        return out
    except TrustError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        raise TrustError(f"{source}: not a valid exported trust list (operators)") from None
