"""The spool: every signed message is stored here before it is sent, and leaves only
after the broker's PUBACK.

SQLite in WAL mode with ``synchronous=FULL``: a committed message survives a power
cut. Bounded by bytes and by age; when full, the oldest messages are dropped first
(the newest data is the most useful to the city, and a bound protects the flash)
and every drop is counted for the health stream. A file that SQLite finds corrupt
is moved aside (``spool.sqlite.corrupt-<time>``) and a fresh spool started.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from edge.clock import VALID_AFTER

log = logging.getLogger(__name__)

# A transport-neutral queue: the kind (edge/messages.py), the signed message and whether
# it is retained. Where it goes (an MQTT topic, a file) is the transport's decision.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: drain cursors rely on it
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
)
"""


def _migrate(db: sqlite3.Connection) -> None:
    """A spool written by 0.1 (with an MQTT topic per row) becomes transport-neutral in
    place: its messages are kept, with their ids, and still sent after the upgrade."""
    columns = [r[1] for r in db.execute("PRAGMA table_info(spool)")]
    if "topic" in columns:
        with db:
            db.execute("BEGIN")
            db.execute("ALTER TABLE spool DROP COLUMN topic")


class Spool:
    """Durable FIFO of signed messages."""

    def __init__(
        self,
        path: Path,
        max_bytes: int = 64 * 1024 * 1024,
        max_age_s: float = 14 * 86400,
        clock=time.time,
        synchronous: str = "FULL",
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("spool synchronous must be FULL or NORMAL")
        self.synchronous = synchronous
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.clock = clock
        self.dropped = 0
        self.write_errors = 0
        self.recovered_corrupt = 0
        self._bytes = 0
        self._acked: set[int] = set()
        self.volatile: str | None = None  # why the spool lives in RAM, if it does
        self.db = self._open()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={self.synchronous}")
        db.execute(_SCHEMA)
        _migrate(db)
        return db

    def _open(self) -> sqlite3.Connection:
        """Open the spool; a corrupt file is moved aside, an unusable medium (read-only,
        full, missing) leaves the pole running on a RAM-only spool with ``volatile`` set."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = self._connect()
            ok = db.execute("PRAGMA quick_check").fetchone()[0]
            if ok != "ok":
                raise sqlite3.DatabaseError(ok)
        except (sqlite3.OperationalError, OSError) as exc:
            db = self._volatile(exc)
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error(
                "spool %s is corrupt (%s); moved to %s, starting empty", self.path, exc, aside
            )
            try:
                for suffix in ("", "-wal", "-shm"):
                    p = Path(str(self.path) + suffix)
                    if p.exists():
                        p.rename(Path(str(aside) + suffix))
                self.recovered_corrupt += 1
                db = self._connect()
            except (sqlite3.Error, OSError) as exc2:
                db = self._volatile(exc2)
        self.db = db
        self._bytes = self._sum_bytes()
        return db

    def _volatile(self, exc: Exception) -> sqlite3.Connection:
        self.volatile = str(exc) or type(exc).__name__
        log.error(
            "cannot use the spool at %s (%s): messages are kept in RAM only until the "
            "medium is fixed (check free space and whether it is mounted read-only)",
            self.path,
            exc,
        )
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.execute(_SCHEMA)
        return db

    def _sum_bytes(self) -> int:
        return self.db.execute("SELECT COALESCE(SUM(LENGTH(payload)), 0) FROM spool").fetchone()[0]

    def put(self, kind: str, payload: bytes, retain: bool = False) -> int:
        """Store one message durably; returns its id. Raises ``sqlite3.Error`` on a full or
        read-only disk: the caller keeps the message in RAM and raises a health alarm."""
        try:
            cur = self.db.execute(
                "INSERT INTO spool (kind, payload, retain, created) VALUES (?, ?, ?, ?)",
                (kind, payload, int(retain), self.clock()),
            )
        except sqlite3.Error:
            self.write_errors += 1
            raise
        self._bytes += len(payload)
        if self._bytes > self.max_bytes:
            self._trim()
        return cur.lastrowid

    def _trim(self) -> None:
        """Drop the oldest messages until under the byte bound, and any past the age bound."""
        now = self.clock()
        n = 0
        if now >= VALID_AFTER:  # age means nothing while the clock is not set
            # Rows written before the clock was set carry no usable age: bytes bound only.
            n = self.db.execute(
                "DELETE FROM spool WHERE created < ? AND created >= ?",
                (now - self.max_age_s, VALID_AFTER),
            ).rowcount
        if n:
            self._bytes = self._sum_bytes()
        while self._bytes > self.max_bytes:
            row = self.db.execute(
                "SELECT id, LENGTH(payload) FROM spool ORDER BY id LIMIT 1"
            ).fetchone()
            if row is None:
                break
            self.db.execute("DELETE FROM spool WHERE id = ?", (row[0],))
            n += 1
            self._bytes -= row[1]
        if n:
            self.dropped += n
            log.warning("spool over its bound: dropped %d oldest messages", n)

    def pending(
        self,
        limit: int = 100,
        after_id: int = 0,
        upto_id: int | None = None,
        kind: str | None = None,
    ) -> list[tuple[int, str, bytes, bool]]:
        """Oldest unsent messages with after_id < id <= upto_id.

        Rows are (id, kind, payload, retain).
        """
        rows = self.db.execute(
            "SELECT id, kind, payload, retain FROM spool WHERE id > ? AND id <= ? "
            "AND (? IS NULL OR kind = ?) ORDER BY id LIMIT ?",
            (after_id, upto_id if upto_id is not None else 2**62, kind, kind, limit),
        ).fetchall()
        acked = self._acked
        return [(r[0], r[1], r[2], bool(r[3])) for r in rows if r[0] not in acked]

    def ack(self, *msg_ids: int) -> None:
        """The broker acknowledged these: forget them, in one transaction (one fsync).

        If the medium refuses the delete (full or read-only), the ids are remembered in
        RAM so they are not sent again in this run; the delete is retried with the next
        ack. After a restart they would be sent once more, which receivers recognise as
        duplicates.
        """
        self._acked.update(msg_ids)
        ids = list(self._acked)
        try:
            with self.db:
                self.db.execute("BEGIN")
                freed = 0
                for i in range(0, len(ids), 500):
                    chunk = ids[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    rows = self.db.execute(
                        f"DELETE FROM spool WHERE id IN ({marks}) RETURNING LENGTH(payload)",
                        chunk,
                    ).fetchall()
                    freed += sum(r[0] for r in rows)
        except sqlite3.Error:
            self.write_errors += 1
            return
        self._acked.clear()
        self._bytes -= freed

    def last_id(self) -> int:
        """The newest id handed out so far (0 for an empty spool)."""
        row = self.db.execute("SELECT COALESCE(MAX(id), 0) FROM spool").fetchone()
        return row[0]

    def depth(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM spool").fetchone()[0]

    @property
    def bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        self.db.close()
