"""The city's trust list: which public key speaks for which pole, and whether it still may.

SQLite by default (one file, transactional, easy to back up). Exported as a
documented JSON file (docs/trust-list.md) so any third-party verifier can check
our messages without our code.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import cbor2

from edge.cose import kid_for

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
    note TEXT NOT NULL DEFAULT ''
)
"""


_TECH_SCHEMA = """
CREATE TABLE IF NOT EXISTS technicians (
    kid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    public_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    added REAL NOT NULL
)
"""


class TrustError(ValueError):
    """A trust-list operation cannot be done; the message says why and what to do."""


class KeyRecord:
    def __init__(self, pole_id: str, public_key: bytes, status: str = "active") -> None:
        if len(public_key) != 32:
            raise TrustError(
                f"pole {pole_id}: an Ed25519 public key is 32 bytes, got {len(public_key)}"
            )
        self.pole_id = pole_id
        self.public_key = public_key
        self.kid = kid_for(public_key)
        self.status = status

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


class TrustList:
    """SQLite-backed trust list."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(_SCHEMA)
        self.db.execute(_TECH_SCHEMA)
        self.db.commit()

    def close(self) -> None:
        self.db.close()

    def add(self, pole_id: str, public_key: bytes, note: str = "") -> KeyRecord:
        """Register a pole's key. Idempotent for the same key; refuses a revoked one."""
        rec = KeyRecord(pole_id, public_key)
        row = self.db.execute(
            "SELECT pole_id, status FROM keys WHERE kid = ?", (rec.kid.hex(),)
        ).fetchone()
        if row:
            if row[0] != pole_id:
                raise TrustError(f"key {rec.kid.hex()} is already registered for pole {row[0]}")
            if row[1] == "revoked":
                raise TrustError(
                    f"key {rec.kid.hex()} of pole {pole_id} was revoked; generate a new key"
                )
            return rec
        with self.db:
            self.db.execute(
                "INSERT INTO keys (kid, pole_id, public_key, status, added, note) "
                "VALUES (?, ?, ?, 'active', ?, ?)",
                (rec.kid.hex(), pole_id, public_key.hex(), time.time(), note),
            )
        return rec

    def revoke(self, pole_id: str | None = None, kid: str | None = None) -> int:
        """Revoke one key (by kid) or every active key of a pole; returns how many."""
        if not (pole_id or kid):
            raise TrustError("name a pole id or a kid to revoke")
        with self.db:
            if kid:
                cur = self.db.execute(
                    "UPDATE keys SET status='revoked', revoked=? WHERE kid=? AND status='active'",
                    (time.time(), kid),
                )
            else:
                cur = self.db.execute(
                    "UPDATE keys SET status='revoked', revoked=? "
                    "WHERE pole_id=? AND status='active'",
                    (time.time(), pole_id),
                )
        return cur.rowcount

    def active_keys(self, pole_id: str) -> list[KeyRecord]:
        return [r for r in self.records() if r.pole_id == pole_id and r.active]

    # -- technicians: whose signed offline registrations the city accepts ---------------
    def add_technician(self, name: str, public_key: bytes) -> str:
        if len(public_key) != 32:
            raise TrustError(f"technician {name}: an Ed25519 public key is 32 bytes")
        kid = kid_for(public_key).hex()
        with self.db:
            self.db.execute(
                "INSERT OR IGNORE INTO technicians (kid, name, public_key, status, added) "
                "VALUES (?, ?, ?, 'active', ?)",
                (kid, name, public_key.hex(), time.time()),
            )
        return kid

    def revoke_technician(self, name: str) -> int:
        with self.db:
            cur = self.db.execute(
                "UPDATE technicians SET status='revoked' WHERE name=? AND status='active'", (name,)
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

    def records(self) -> list[KeyRecord]:
        rows = self.db.execute(
            "SELECT pole_id, public_key, status FROM keys ORDER BY pole_id, added"
        ).fetchall()
        return [KeyRecord(r[0], bytes.fromhex(r[1]), r[2]) for r in rows]

    def export(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "keys": [r.to_json() for r in self.records()],
        }

    def export_file(self, out: Path) -> int:
        doc = self.export()
        out.write_text(json.dumps(doc, indent=2) + "\n")
        return len(doc["keys"])


def load_keys(source: Path) -> dict[bytes, KeyRecord]:
    """kid -> KeyRecord from an exported JSON trust list or a trust-list SQLite file."""
    if source.suffix == ".json":
        try:
            doc = json.loads(source.read_text())
        except json.JSONDecodeError as exc:
            raise TrustError(f"{source}: not valid JSON ({exc})") from None
        if doc.get("format") != FORMAT:
            raise TrustError(f"{source}: not a {FORMAT} file")
        recs = [
            KeyRecord(k["pole_id"], bytes.fromhex(k["public_key"]), k["status"])
            for k in doc["keys"]
        ]
    else:
        tl = TrustList(source)
        try:
            recs = tl.records()
        finally:
            tl.close()
    return {r.kid: r for r in recs}
