"""The store on PostgreSQL with PostGIS: the city's database.

A batch is one transaction: COPY into temporary staging tables (the fastest way rows
enter PostgreSQL), then one statement whose ``INSERT INTO messages ... ON CONFLICT DO
NOTHING RETURNING`` names the new messages and whose other parts insert the derived rows
of exactly those, so the unique key decides acceptance for every worker at once and a
duplicate adds nothing. Staging rows are sorted by (kid, cti) so that two workers
inserting the same messages take their row locks in the same order (no deadlock).

Keys change under one advisory lock and take their revision from a sequence inside it,
so revisions are handed out in commit order and ``keys_since`` never skips a change.

Connection trouble (refused, dropped, a statement timeout, a shutdown, a serialization
failure) becomes ``StoreUnavailable`` and the connection is reopened on the next call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import psycopg

from city import migrations, partitions
from city.rows import Item
from city.store import StoreUnavailable
from provisioning.trustlist import KeyRecord

KEYS_LOCK = 0x6C70_6B65  # pg_advisory_xact_lock key for every change to ``keys``
MIGRATION_LOCK = 0x6C70_6D69

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS s_messages (kid bytea, cti bytea, t float8, pole_id text,
    kind text, received float8, raw bytea) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS s_observations (kid bytea, cti bytea, t float8, pole_id text,
    sensor text, field text, unit text, mean float8, min float8, max float8, count int8,
    window_s int8) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS s_counts (kid bytea, cti bytea, t float8, pole_id text,
    sensor text, field text, count int8, suppressed bool, bin_s int8) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS s_health (kid bytea, cti bytea, t float8, pole_id text,
    uptime_s float8, clock_valid bool, sensors_up text, counters text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS s_alarms (kid bytea, cti bytea, t float8, pole_id text,
    alarm text, detail text) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS s_births (kid bytea, cti bytea, t float8, pole_id text,
    lat float8, lon float8, software text, sensors text, window_s int8, bdseq int8)
    ON COMMIT DELETE ROWS;
"""

_MERGE = """
WITH new AS (
    INSERT INTO messages (kid, cti, t, pole_id, kind, received_at, raw)
    SELECT kid, cti, to_timestamp(t), pole_id, kind, to_timestamp(received), raw
    FROM s_messages ORDER BY kid, cti
    ON CONFLICT DO NOTHING
    RETURNING kid, cti
), o AS (
    INSERT INTO observations
    SELECT to_timestamp(s.t), s.pole_id, s.sensor, s.field, s.unit, s.mean, s.min, s.max,
           s.count, s.window_s, s.kid, s.cti
    FROM s_observations s JOIN new USING (kid, cti)
), c AS (
    INSERT INTO counts
    SELECT to_timestamp(s.t), s.pole_id, s.sensor, s.field, s.count, s.suppressed, s.bin_s,
           s.kid, s.cti
    FROM s_counts s JOIN new USING (kid, cti)
), h AS (
    INSERT INTO health
    SELECT to_timestamp(s.t), s.pole_id, s.uptime_s, s.clock_valid, s.sensors_up::jsonb,
           s.counters::jsonb, s.kid, s.cti
    FROM s_health s JOIN new USING (kid, cti)
), a AS (
    INSERT INTO alarms
    SELECT to_timestamp(s.t), s.pole_id, s.alarm, s.detail, s.kid, s.cti
    FROM s_alarms s JOIN new USING (kid, cti)
), b AS (
    INSERT INTO poles AS p (pole_id, location, birth_at, software, sensors, window_s, bdseq)
    SELECT DISTINCT ON (s.pole_id) s.pole_id,
           CASE WHEN s.lat IS NULL THEN NULL
                ELSE ST_SetSRID(ST_MakePoint(s.lon, s.lat), 4326)::geography END,
           to_timestamp(s.t), s.software, s.sensors, s.window_s, s.bdseq
    FROM s_births s JOIN new USING (kid, cti)
    ORDER BY s.pole_id, s.t DESC
    ON CONFLICT (pole_id) DO UPDATE SET location = excluded.location,
        birth_at = excluded.birth_at, software = excluded.software,
        sensors = excluded.sensors, window_s = excluded.window_s, bdseq = excluded.bdseq,
        updated_at = now()
    WHERE p.birth_at IS NULL OR p.birth_at <= excluded.birth_at
)
SELECT kid, cti FROM new
"""

# Binary COPY: values go over as PostgreSQL's own binary forms, packed by psycopg's C
# code, with no text to format and parse (about half the client's CPU of text COPY).
_COPY = {
    "s_messages": ["bytea", "bytea", "float8", "text", "text", "float8", "bytea"],
    "s_observations": [
        "bytea",
        "bytea",
        "float8",
        "text",
        "text",
        "text",
        "text",
        "float8",
        "float8",
        "float8",
        "int8",
        "int8",
    ],
    "s_counts": ["bytea", "bytea", "float8", "text", "text", "text", "int8", "bool", "int8"],
    "s_health": ["bytea", "bytea", "float8", "text", "float8", "bool", "text", "text"],
    "s_alarms": ["bytea", "bytea", "float8", "text", "text", "text"],
    "s_births": [
        "bytea",
        "bytea",
        "float8",
        "text",
        "float8",
        "float8",
        "text",
        "text",
        "int8",
        "int8",
    ],
}


class PgStore:
    dialect = "postgres"

    def __init__(
        self, url: str, connect_timeout: float = 5.0, statement_timeout_s: float = 60.0
    ) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        self.statement_timeout_s = statement_timeout_s
        self._conn: psycopg.Connection | None = None

    # -- connection ---------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(1, int(self.connect_timeout)),
                # A database host that vanished is noticed in about 20 s, not hours.
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=3,
                keepalives_count=3,
                options=f"-c statement_timeout={int(self.statement_timeout_s * 1000)}",
            )
        except psycopg.Error as exc:
            raise StoreUnavailable(_brief(exc)) from None
        try:
            conn.execute(_STAGING)  # temporary tables live as long as the connection
        except psycopg.Error as exc:
            conn.close()
            raise StoreUnavailable(_brief(exc)) from None
        self._conn = conn
        return conn

    def _run(self, fn):
        """``fn(conn)`` with connection trouble turned into StoreUnavailable."""
        conn = self._connect()
        try:
            return fn(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._drop()
            raise StoreUnavailable(_brief(exc)) from None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None

    # -- schema -------------------------------------------------------------------------
    def migrate(self) -> list[str]:
        def go(conn: psycopg.Connection) -> list[str]:
            done = []
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY,"
                    " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
                )
                applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
                for m in migrations.pending("postgres", applied):
                    conn.execute(m.sql)
                    conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (m.version, m.name),
                    )
                    done.append(m.name)
            return done

        return self._run(go)

    # -- the batch ----------------------------------------------------------------------
    def write(self, items: Sequence[Item], rotations: Sequence[KeyRecord] = ()) -> list[bool]:
        if not items and not rotations:
            return []

        def go(conn: psycopg.Connection) -> set[tuple[bytes, bytes]]:
            with conn.transaction():
                if rotations:
                    self._add_rotations(conn, rotations)
                cur = conn.cursor()
                self._copy(cur, items)
                cur.execute(_MERGE)
                return {(bytes(k), bytes(c)) for k, c in cur.fetchall()}

        new = self._run(go)
        return [it.key in new for it in items]

    @staticmethod
    def _copy(cur: psycopg.Cursor, items: Sequence[Item]) -> None:
        tables = {
            "s_messages": [
                (it.kid, it.cti, it.t, it.pole_id, it.kind, it.received, it.raw) for it in items
            ],
            "s_observations": [(it.kid, it.cti) + r for it in items for r in it.observations],
            "s_counts": [(it.kid, it.cti) + r for it in items for r in it.counts],
            "s_alarms": [(it.kid, it.cti) + r for it in items for r in it.alarms],
            "s_health": [(it.kid, it.cti) + it.health for it in items if it.health],
            "s_births": [(it.kid, it.cti) + it.birth for it in items if it.birth],
        }
        for table, rows in tables.items():
            if not rows:
                continue
            with cur.copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as cp:
                cp.set_types(_COPY[table])
                for r in rows:
                    cp.write_row(r)

    @staticmethod
    def _add_rotations(conn: psycopg.Connection, rotations: Sequence[KeyRecord]) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (KEYS_LOCK,))
        for rec in rotations:
            parent = bytes.fromhex(rec.rotated_from) if rec.rotated_from else None
            conn.execute(
                "INSERT INTO keys (kid, pole_id, public_key, status, rotated_from, revoked_at, rev)"
                " SELECT %(kid)s, %(pole)s, %(pk)s, s, %(parent)s,"
                "  CASE WHEN s = 'revoked' THEN now() END, nextval('keys_rev')"
                " FROM (SELECT CASE WHEN EXISTS (SELECT 1 FROM keys WHERE kid = %(parent)s"
                "   AND status = 'revoked') THEN 'revoked' ELSE %(status)s END AS s) AS st"
                " ON CONFLICT (kid) DO NOTHING",
                {
                    "kid": rec.kid,
                    "pole": rec.pole_id,
                    "pk": rec.public_key,
                    "parent": parent,
                    "status": rec.status,
                },
            )

    # -- keys and floors ----------------------------------------------------------------
    def keys_since(self, rev: int) -> tuple[list[KeyRecord], int]:
        rows = self._run(
            lambda c: c.execute(
                "SELECT pole_id, public_key, status, rotated_from, rev FROM keys "
                "WHERE rev > %s ORDER BY rev",
                (rev,),
            ).fetchall()
        )
        recs = [
            KeyRecord(r[0], bytes(r[1]), r[2], bytes(r[3]).hex() if r[3] else None) for r in rows
        ]
        return recs, max([rev] + [r[4] for r in rows])

    def apply_trust(self, add: Sequence[KeyRecord], revoke: Sequence[bytes]) -> int:
        def go(conn: psycopg.Connection) -> int:
            n = 0
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (KEYS_LOCK,))
                for rec in add:
                    parent = bytes.fromhex(rec.rotated_from) if rec.rotated_from else None
                    n += conn.execute(
                        "INSERT INTO keys (kid, pole_id, public_key, status, rotated_from, "
                        "revoked_at, rev) VALUES (%s, %s, %s, %s, %s, "
                        "CASE WHEN %s = 'revoked' THEN now() END, nextval('keys_rev')) "
                        "ON CONFLICT (kid) DO NOTHING",
                        (rec.kid, rec.pole_id, rec.public_key, rec.status, parent, rec.status),
                    ).rowcount
                    conn.execute(
                        "INSERT INTO poles (pole_id) VALUES (%s) ON CONFLICT DO NOTHING",
                        (rec.pole_id,),
                    )
                if revoke:
                    n += conn.execute(
                        "UPDATE keys SET status = 'revoked', revoked_at = now(), "
                        "rev = nextval('keys_rev') WHERE kid = ANY(%s) AND status = 'active'",
                        (list(revoke),),
                    ).rowcount
            return n

        return self._run(go)

    def floors(self) -> dict[bytes, int]:
        rows = self._run(lambda c: c.execute("SELECT kid, floor FROM replay_floors").fetchall())
        return {bytes(k): int.from_bytes(f, "big") for k, f in rows}

    def save_floors(self, floors: dict[bytes, int]) -> None:
        if not floors:
            return

        def go(conn: psycopg.Connection) -> None:
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO replay_floors VALUES (%s, %s) ON CONFLICT (kid) DO UPDATE "
                    "SET floor = GREATEST(replay_floors.floor, excluded.floor)",
                    sorted((k, f.to_bytes(8, "big")) for k, f in floors.items()),
                )

        self._run(go)

    # -- time and space -----------------------------------------------------------------
    def maintain(
        self, now: float, ahead_days: int, retention_days: int, raw_retention_days=None
    ) -> list[str]:
        return self._run(
            lambda c: partitions.maintain(c, now, ahead_days, retention_days, raw_retention_days)
        )

    def query(self, sql: str, params: dict) -> list[tuple]:
        return self._run(lambda c: c.execute(sql, params).fetchall())

    def export(self, since: float, until: float) -> Iterator[tuple[str, str, bytes]]:
        """Streamed through a server-side cursor: a day of a city does not fit in memory."""
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor(name="city_export") as cur:
                cur.itersize = 2000
                cur.execute(
                    "SELECT pole_id, kind, raw FROM messages WHERE received_at >= %s "
                    "AND received_at < %s ORDER BY received_at",
                    (_ts(since), _ts(until)),
                )
                for pole, kind, raw in cur:
                    yield pole, kind, bytes(raw)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self._drop()
            raise StoreUnavailable(_brief(exc)) from None

    def size(self) -> dict[str, int]:
        def go(conn: psycopg.Connection) -> dict[str, int]:
            out = {}
            for table in (
                "messages",
                "observations",
                "counts",
                "health",
                "alarms",
                "poles",
                "keys",
            ):
                out[table] = conn.execute(  # a plain table is a tree of one... or of none
                    "SELECT GREATEST(pg_total_relation_size(%s), (SELECT COALESCE("
                    "SUM(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s)))::bigint",
                    (table, table),
                ).fetchone()[0]
            out["total"] = sum(out.values())
            return out

        return self._run(go)

    def ping(self) -> None:
        self._run(lambda c: c.execute("SELECT 1").fetchone())

    def close(self) -> None:
        self._drop()


def _ts(t: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(t, dt.UTC)


def _brief(exc: Exception) -> str:
    """One line about a database error (never the data of a query)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
