"""The store in one SQLite file: the embedded default, for a laptop, a demo or a test.

Several worker processes may share the file: SQLite serialises writers (WAL mode, a busy
timeout), which is all the coordination the store's rules need: (kid, cti) is the
primary key, so ``INSERT OR IGNORE`` decides acceptance as PostgreSQL's ``ON CONFLICT
DO NOTHING`` does, and key revisions are handed out inside the write lock, hence in
commit order. No partitions: the retention deletes rows. Distances for the queries come
from ``city_distance_m``, registered on every connection (haversine on the WGS84 mean
radius: within a few metres of PostGIS's geography at 500 m).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from city import migrations
from city.rows import Item
from city.store import StoreUnavailable
from provisioning.trustlist import KeyRecord

EARTH_RADIUS_M = 6_371_008.8
_TABLES = ("messages", "observations", "counts", "health", "alarms", "poles", "keys")


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float | None:
    if None in (lat1, lon1, lat2, lon2):
        return None
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


class SqliteStore:
    dialect = "sqlite"

    def __init__(self, path: str | Path, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # acknowledged means on disk
            db.create_function("city_distance_m", 4, distance_m, deterministic=True)
            self._db = db
        return self._db

    def _tx(self):
        return _Tx(self.db)

    def migrate(self) -> list[str]:
        done = []
        with self._tx() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
            applied = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
            for m in migrations.pending("sqlite", applied):
                for stmt in migrations.statements(m.sql):
                    db.execute(stmt)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (m.version, m.name, time.time()),
                )
                done.append(m.name)
        return done

    def write(self, items: Sequence[Item], rotations: Sequence[KeyRecord] = ()) -> list[bool]:
        out = []
        with self._tx() as db:
            for rec in rotations:
                self._add_rotation(db, rec)
            for it in items:
                cur = db.execute(
                    "INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (it.kid, it.cti, it.t, it.pole_id, it.kind, it.received, it.raw),
                )
                new = cur.rowcount == 1
                out.append(new)
                if new:
                    self._children(db, it)
        return out

    @staticmethod
    def _children(db: sqlite3.Connection, it: Item) -> None:
        tail = (it.kid, it.cti)
        if it.observations:
            db.executemany(
                "INSERT INTO observations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [r + tail for r in it.observations],
            )
        if it.counts:
            db.executemany(
                "INSERT INTO counts VALUES (?,?,?,?,?,?,?,?,?)", [r + tail for r in it.counts]
            )
        if it.health:
            db.execute("INSERT INTO health VALUES (?,?,?,?,?,?,?,?)", it.health + tail)
        if it.alarms:
            db.executemany("INSERT INTO alarms VALUES (?,?,?,?,?,?)", [r + tail for r in it.alarms])
        if it.birth:
            t, pole, lat, lon, software, sensors, window_s, bdseq = it.birth
            db.execute(
                "INSERT INTO poles VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (pole_id) DO UPDATE SET "
                "lat=excluded.lat, lon=excluded.lon, birth_at=excluded.birth_at, "
                "software=excluded.software, sensors=excluded.sensors, "
                "window_s=excluded.window_s, bdseq=excluded.bdseq, updated_at=excluded.updated_at "
                "WHERE poles.birth_at IS NULL OR poles.birth_at <= excluded.birth_at",
                (pole, lat, lon, t, software, sensors, window_s, bdseq, time.time()),
            )

    @staticmethod
    def _next_rev(db: sqlite3.Connection) -> int:
        return db.execute("SELECT COALESCE(MAX(rev), 0) + 1 FROM keys").fetchone()[0]

    def _add_rotation(self, db: sqlite3.Connection, rec: KeyRecord) -> None:
        parent = bytes.fromhex(rec.rotated_from) if rec.rotated_from else None
        revoked = (
            parent is not None
            and db.execute(
                "SELECT 1 FROM keys WHERE kid = ? AND status = 'revoked'", (parent,)
            ).fetchone()
        )
        db.execute(
            "INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec.kid,
                rec.pole_id,
                rec.public_key,
                "revoked" if revoked else rec.status,
                parent,
                time.time(),
                time.time() if revoked else None,
                self._next_rev(db),
            ),
        )

    def keys_since(self, rev: int) -> tuple[list[KeyRecord], int]:
        rows = self._read(
            "SELECT pole_id, public_key, status, rotated_from, rev FROM keys WHERE rev > ? "
            "ORDER BY rev",
            (rev,),
        )
        recs = [KeyRecord(r[0], bytes(r[1]), r[2], r[3].hex() if r[3] else None) for r in rows]
        return recs, max([rev] + [r[4] for r in rows])

    def apply_trust(self, add: Sequence[KeyRecord], revoke: Sequence[bytes]) -> int:
        n = 0
        now = time.time()
        with self._tx() as db:
            for rec in add:
                parent = bytes.fromhex(rec.rotated_from) if rec.rotated_from else None
                cur = db.execute(
                    "INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        rec.kid,
                        rec.pole_id,
                        rec.public_key,
                        rec.status,
                        parent,
                        now,
                        now if rec.status == "revoked" else None,
                        self._next_rev(db),
                    ),
                )
                n += cur.rowcount
                db.execute(
                    "INSERT OR IGNORE INTO poles (pole_id, updated_at) VALUES (?, ?)",
                    (rec.pole_id, now),
                )
            for kid in revoke:
                n += db.execute(
                    "UPDATE keys SET status = 'revoked', revoked_at = ?, rev = ? "
                    "WHERE kid = ? AND status = 'active'",
                    (now, self._next_rev(db), kid),
                ).rowcount
        return n

    def floors(self) -> dict[bytes, int]:
        rows = self._read("SELECT kid, floor FROM replay_floors", ())
        return {bytes(k): int.from_bytes(f, "big") for k, f in rows}

    def save_floors(self, floors: dict[bytes, int]) -> None:
        if not floors:
            return
        with self._tx() as db:
            db.executemany(
                "INSERT INTO replay_floors VALUES (?, ?) ON CONFLICT (kid) DO UPDATE "
                "SET floor = MAX(floor, excluded.floor)",
                [(k, f.to_bytes(8, "big")) for k, f in floors.items()],
            )

    def maintain(
        self, now: float, ahead_days: int, retention_days: int, raw_retention_days=None
    ) -> list[str]:
        """No partitions here: the retention deletes rows older than it (undated
        messages by when they were received)."""
        raw = retention_days if raw_retention_days is None else raw_retention_days
        done = []
        with self._tx() as db:
            if raw > 0:
                cutoff = now - raw * 86400
                n = db.execute(
                    "DELETE FROM messages WHERE (t > 0 AND t < ?) OR (t = 0 AND received_at < ?)",
                    (cutoff, cutoff),
                ).rowcount
                done.append(f"messages: {n} rows older than {raw} days deleted")
            if retention_days > 0:
                cutoff = now - retention_days * 86400
                for table in ("observations", "counts", "health", "alarms"):
                    n = db.execute(f"DELETE FROM {table} WHERE t < ?", (cutoff,)).rowcount
                    done.append(f"{table}: {n} rows deleted")
        return done

    def query(self, sql: str, params: dict) -> list[tuple]:
        return self._read(sql, params)

    def export(self, since: float, until: float) -> Iterator[tuple[str, str, bytes]]:
        cur = self.db.execute(
            "SELECT pole_id, kind, raw FROM messages WHERE received_at >= ? AND received_at < ? "
            "ORDER BY received_at",
            (since, until),
        )
        for pole, kind, raw in cur:
            yield pole, kind, bytes(raw)

    def size(self) -> dict[str, int]:
        try:
            rows = self._read(
                "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name", ()
            )  # needs SQLITE_ENABLE_DBSTAT_VTAB; most builds have it
        except sqlite3.Error:
            return {"total": self.path.stat().st_size}
        sizes = dict(rows)
        out = {t: 0 for t in _TABLES}
        for name, n in sizes.items():
            owner = next((t for t in _TABLES if name == t or name.startswith(t + "_")), None)
            if owner:
                out[owner] += n
        out["total"] = sum(sizes.values())
        return out

    def ping(self) -> None:
        self._read("SELECT 1", ())

    def _read(self, sql: str, params) -> list[tuple]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if _transient(exc):
                raise StoreUnavailable(f"{self.path}: {exc}") from None
            raise

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _transient(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc)
    return "locked" in msg or "busy" in msg or "unable to open" in msg or "disk I/O" in msg


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error); a locked or unreachable database
    becomes StoreUnavailable."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _transient(exc):
                raise StoreUnavailable(str(exc)) from None
            raise
        return self.db

    def _rollback(self) -> None:
        if self.db.in_transaction:
            self.db.execute("ROLLBACK")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.OperationalError as e:
                self._rollback()
                if _transient(e):
                    raise StoreUnavailable(str(e)) from None
                raise
        self._rollback()
        if isinstance(exc, sqlite3.OperationalError) and _transient(exc):
            raise StoreUnavailable(str(exc)) from None
