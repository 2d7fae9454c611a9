"""The city's store: one interface, two back ends.

PostgreSQL with PostGIS for a city (``postgresql://...``, city/store_pg.py); one SQLite
file for a laptop or a demo (``sqlite:///path``, city/store_sqlite.py), with no set-up.
Workers, the service and the queries talk only to this interface, and the same tests
run on both.

What the interface promises, whatever the back end:

- ``write`` stores a batch in one transaction and says, per item, whether it was new.
  The database decides: (kid, cti) is unique, inserts skip what is already there, so
  any worker may see any message and a replay is a replay whichever worker sees it.
  Derived rows are written only with a new message. Rotated keys in the same call
  are committed with the batch, so a rotation is never acknowledged unrecorded.
- Keys carry a revision that grows in commit order: ``keys_since(rev)`` is how every
  worker sees a revocation, a rotation or a new pole within one poll.
- ``StoreUnavailable`` means "not now" (the database is down, slow or locked): the
  caller keeps its batch, does not acknowledge it, and tries again. Anything else is a
  bug or bad data, never a reason to lose a batch silently.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from city.rows import Item
from provisioning.trustlist import KeyRecord


class StoreUnavailable(Exception):
    """The database cannot take this now (down, unreachable, locked, timed out)."""


class Store(Protocol):
    dialect: str  # "postgres" or "sqlite": which SQL city/queries.py uses

    def migrate(self) -> list[str]:
        """Apply the pending migrations (city/migrations/); returns their file names."""
        ...

    def write(self, items: Sequence[Item], rotations: Sequence[KeyRecord] = ()) -> list[bool]:
        """Store a batch in one transaction; per item, True if it was new. Items must
        have distinct (kid, cti). ``rotations``: keys announced by rotation messages of
        the batch, recorded revoked when the key they rotate from is revoked."""
        ...

    def keys_since(self, rev: int) -> tuple[list[KeyRecord], int]:
        """Keys added or changed after revision ``rev``, and the newest revision."""
        ...

    def apply_trust(self, add: Sequence[KeyRecord], revoke: Sequence[bytes]) -> int:
        """Add keys (from the trust list) and revoke kids; a revoked key is never made
        active again. Returns how many keys changed."""
        ...

    def floors(self) -> dict[bytes, int]:
        """Every key's stored replay floor."""
        ...

    def save_floors(self, floors: dict[bytes, int]) -> None:
        """Raise stored floors to these (never lowers one)."""
        ...

    def maintain(
        self, now: float, ahead_days: int, retention_days: int, raw_retention_days=None
    ) -> list[str]:
        """Create time partitions ahead and drop what is older than the retention
        (0: keep everything; ``raw_retention_days``, if given, for the raw messages);
        returns what it did, for the log."""
        ...

    def query(self, sql: str, params: dict) -> list[tuple]:
        """Rows of a read-only query in this back end's dialect (city/queries.py)."""
        ...

    def export(self, since: float, until: float) -> Iterator[tuple[str, str, bytes]]:
        """(pole_id, kind, raw signed bytes) of messages received in [since, until)."""
        ...

    def size(self) -> dict[str, int]:
        """Bytes used per table (tables, indexes and partitions together)."""
        ...

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers."""
        ...

    def close(self) -> None: ...


def open_store(url: str, *, connect_timeout: float = 5.0) -> Store:
    """The store behind ``url``: ``postgresql://...`` (or ``postgres://``) or
    ``sqlite:///path/to/file.sqlite``. Connecting waits for nothing: the first call that
    needs the database connects, so a service can start while its database is down."""
    if url.startswith(("postgresql://", "postgres://")):
        from city.store_pg import PgStore

        return PgStore(url, connect_timeout=connect_timeout)
    if url.startswith("sqlite:///"):
        from city.store_sqlite import SqliteStore

        return SqliteStore(url[len("sqlite:///") :], busy_timeout=connect_timeout)
    raise ValueError(
        f"not a database URL: {url.split('://')[0]}://...; use postgresql://USER@HOST/DB "
        "or sqlite:///path/to/city.sqlite"
    )


def cti_int(cti: bytes) -> int:
    return int.from_bytes(cti, "big")
