"""Daily range partitions on PostgreSQL: created ahead by the service, dropped after the
retention.

Why days: a partition is the unit of retention (``DROP TABLE`` frees a day at once,
without a vacuum) and of pruning (a query for the last hour reads today's partition and
maybe yesterday's). Each partitioned table has a DEFAULT partition for rows whose day has
no partition yet (a pole with a wrong clock, a death sealed days ago, a service that was
down over midnight); a partition created later takes its rows out of the default
before it is attached, so creating one never fails because of them.

Names carry the day: ``<table>_pYYYYMMDD``. Only names of that shape are ever dropped.
"""

from __future__ import annotations

import datetime as dt
import re

import psycopg
from psycopg import sql

TABLES = ("messages", "observations", "counts", "health", "alarms")
MAINTENANCE_LOCK = 0x6C70_6D61  # pg_advisory_xact_lock key: one maintainer at a time
_DAY = re.compile(r"_p(\d{8})$")


def day_of(t: float) -> dt.date:
    return dt.datetime.fromtimestamp(t, dt.UTC).date()


def name(table: str, day: dt.date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def ensure(conn: psycopg.Connection, table: str, day: dt.date) -> bool:
    """Create ``table``'s partition for ``day`` unless it exists; True if created."""
    part = name(table, day)
    if conn.execute("SELECT to_regclass(%s)", (part,)).fetchone()[0] is not None:
        return False
    lo = dt.datetime.combine(day, dt.time(), dt.UTC)
    hi = lo + dt.timedelta(days=1)
    ident, parent = sql.Identifier(part), sql.Identifier(table)
    default = sql.Identifier(f"{table}_default")
    conn.execute(
        sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
            ident, parent
        )
    )
    conn.execute(
        sql.SQL(
            "WITH moved AS (DELETE FROM {} WHERE t >= %s AND t < %s RETURNING *) "
            "INSERT INTO {} SELECT * FROM moved"
        ).format(default, ident),
        (lo, hi),
    )
    conn.execute(  # DDL takes no parameters: the bounds are literals we made
        sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
            parent, ident, sql.Literal(lo.isoformat()), sql.Literal(hi.isoformat())
        )
    )
    return True


def existing(conn: psycopg.Connection, table: str) -> dict[dt.date, str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s)",
        (table,),
    ).fetchall()
    out = {}
    for (rel,) in rows:
        m = _DAY.search(rel)
        if m and rel == name(table, dt.datetime.strptime(m.group(1), "%Y%m%d").date()):
            out[dt.datetime.strptime(m.group(1), "%Y%m%d").date()] = rel
    return out


def maintain(
    conn: psycopg.Connection,
    now: float,
    ahead_days: int,
    retention_days: int,
    raw_retention_days: int | None = None,
) -> list[str]:
    """In one transaction: partitions from yesterday to ``ahead_days`` ahead; with a
    retention, partitions wholly older than it dropped and old default rows deleted.
    ``raw_retention_days`` (default: the retention) applies to ``messages``: the raw
    signed bytes are most of the volume, the readings derived from them are small."""
    done = []
    today = day_of(now)
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MAINTENANCE_LOCK,))
        for table in TABLES:
            for i in range(-1, ahead_days + 1):
                day = today + dt.timedelta(days=i)
                if ensure(conn, table, day):
                    done.append(f"created {name(table, day)}")
            keep = retention_days
            if table == "messages" and raw_retention_days is not None:
                keep = raw_retention_days
            if keep > 0:
                oldest = today - dt.timedelta(days=keep)
                for day, rel in sorted(existing(conn, table).items()):
                    if day < oldest:
                        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(rel)))
                        done.append(f"dropped {rel}")
                cutoff = dt.datetime.combine(oldest, dt.time(), dt.UTC)
                # Undated messages (no iat) are kept by when they arrived.
                where = (
                    "(t < %s AND t > 'epoch') OR (t = 'epoch' AND received_at < %s)"
                    if table == "messages"
                    else "t < %s"
                )
                params = (cutoff, cutoff) if table == "messages" else (cutoff,)
                n = conn.execute(
                    sql.SQL("DELETE FROM {} WHERE " + where).format(
                        sql.Identifier(f"{table}_default")
                    ),
                    params,
                ).rowcount
                if n:
                    done.append(f"deleted {n} old rows from {table}_default")
    return done
