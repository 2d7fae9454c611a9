"""Read access to the city's store for the web service, and the few questions it asks
that city/queries.py does not, in both dialects side by side.

A request handler never blocks the event loop on the database: every query runs in a
small pool of threads, each with its own connection (a psycopg connection is not for
two threads at once; SQLite readers run beside the ingest's writer in WAL mode). Every
value reaches the database as a bound parameter; the only SQL text built at run time
is made of fixed fragments chosen by the code (city/web/sta.py's filter compiler).

Times: the store keeps POSIX seconds on SQLite and ``timestamptz`` on PostgreSQL;
``epoch`` turns either into float seconds, ``tparam`` the other way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from city.store import Store, open_store

T = TypeVar("T")
_NAMED = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


def dialect_of(url: str) -> str:
    """ "postgres" or "sqlite" from a store URL, without connecting."""
    return "postgres" if url.startswith(("postgresql://", "postgres://")) else "sqlite"


def epoch(v: object) -> float | None:
    """A stored time as POSIX seconds (None stays None)."""
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        return v.timestamp()
    return float(v)  # type: ignore[arg-type]


def tparam(dialect: str, t: float) -> float | dt.datetime:
    """POSIX seconds as the back end's own parameter type."""
    if dialect == "sqlite":
        return float(t)
    return dt.datetime.fromtimestamp(t, dt.UTC)


def sql_for(dialect: str, text: str) -> str:
    """``:name`` placeholders as the back end wants them (``%(name)s`` for psycopg);
    PostgreSQL casts (``::text``) are left alone."""
    if dialect == "sqlite":
        return text
    return _NAMED.sub(lambda m: f"%({m.group(1)})s", text.replace("%", "%%"))


def poles_param(dialect: str, poles: Sequence[str]) -> object:
    """A list of pole ids as one parameter: an array (PostgreSQL) or JSON (SQLite's
    json_each)."""
    return list(poles) if dialect == "postgres" else json.dumps(list(poles))


class Reader:
    """A few store connections, one per worker thread, for read-only queries.

    Args:
        url: the store (``postgresql://...`` or ``sqlite:///...``).
        threads: how many queries may run at once.
    """

    def __init__(self, url: str, *, threads: int = 4) -> None:
        self.url = url
        self.dialect = dialect_of(url)
        self._local = threading.local()
        self._stores: list[Store] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="city-web-db")

    def store(self) -> Store:
        """This thread's own store connection (opened on first use)."""
        s = getattr(self._local, "store", None)
        if s is None:
            s = open_store(self.url)
            self._local.store = s
            with self._lock:
                self._stores.append(s)
        return s

    def query(self, text: str, params: dict[str, Any]) -> list[tuple]:
        """Rows of a query written with ``:name`` placeholders, in this thread."""
        return self.store().query(sql_for(self.dialect, text), params)

    def pick(self, by_dialect: dict[str, str], params: dict[str, Any]) -> list[tuple]:
        """Rows of the query written for this back end (``{"sqlite": ..., "postgres": ...}``)."""
        return self.query(by_dialect[self.dialect], params)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a database thread."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for s in self._stores:
                s.close()
            self._stores.clear()


# -- what the fleet's live state reads (city/web/fleet.py) ---------------------------------
POLES = {
    "sqlite": """
        SELECT pole_id, lat, lon, birth_at, software, sensors, window_s FROM poles
        WHERE :all_poles OR pole_id IN (SELECT value FROM json_each(:poles))""",
    "postgres": """
        SELECT pole_id, ST_Y(location::geometry), ST_X(location::geometry), birth_at,
               software, sensors, window_s
        FROM poles WHERE :all_poles OR pole_id = ANY(:poles)""",
}

KEYS = """
    SELECT kid, pole_id, public_key, status, added_at, revoked_at, rev FROM keys
    WHERE rev > :rev ORDER BY rev"""

# Which poles sent what since the last look, by the city's clock (messages_by_received).
CHANGES = """
    SELECT pole_id, kind, MAX(received_at) FROM messages WHERE received_at > :since
    GROUP BY pole_id, kind"""

# Each pole's latest birth, death and manifest (messages_meta): sessions by arrival,
# the manifest by its signed time.
META = {
    "sqlite": """
        SELECT pole_id, kind, t, received_at, kid, cti, raw FROM (
            SELECT pole_id, kind, t, received_at, kid, cti,
                   CASE WHEN kind = 'manifest' THEN raw END AS raw,
                   ROW_NUMBER() OVER (PARTITION BY pole_id, kind ORDER BY
                       CASE WHEN kind = 'manifest' THEN t ELSE received_at END DESC,
                       received_at DESC) AS n
            FROM messages
            WHERE kind IN ('birth', 'death', 'manifest', 'rotate')
              AND kind IN ('birth', 'death', 'manifest')
              AND (:all_poles OR pole_id IN (SELECT value FROM json_each(:poles))))
        WHERE n = 1""",
    "postgres": """
        SELECT DISTINCT ON (pole_id, kind) pole_id, kind, t, received_at, kid, cti,
               CASE WHEN kind = 'manifest' THEN raw END
        FROM messages
        WHERE kind IN ('birth', 'death', 'manifest', 'rotate')
          AND kind IN ('birth', 'death', 'manifest')
          AND (:all_poles OR pole_id = ANY(:poles))
        ORDER BY pole_id, kind,
                 CASE WHEN kind = 'manifest' THEN t ELSE received_at END DESC,
                 received_at DESC""",
}

# Each pole's latest health message and the alarms it names (none: a row with NULL).
HEALTH = {
    "sqlite": """
        SELECT j.value, h.t, a.alarm, a.detail, h.kid
        FROM json_each(:poles) j
        JOIN health h ON h.rowid = (SELECT rowid FROM health WHERE pole_id = j.value
                                    ORDER BY t DESC, cti DESC LIMIT 1)
        LEFT JOIN alarms a
          ON a.pole_id = j.value AND a.t = h.t AND a.kid = h.kid AND a.cti = h.cti""",
    "postgres": """
        SELECT p.pole_id, h.t, a.alarm, a.detail, h.kid
        FROM unnest(:poles::text[]) AS p(pole_id)
        CROSS JOIN LATERAL (SELECT t, kid, cti FROM health WHERE health.pole_id = p.pole_id
                            ORDER BY t DESC, cti DESC LIMIT 1) h
        LEFT JOIN alarms a
          ON a.pole_id = p.pole_id AND a.t = h.t AND a.kid = h.kid AND a.cti = h.cti""",
}

# -- one pole, for the map's panel and the public page -------------------------------------
LAST_T = "SELECT MAX(t) FROM observations WHERE pole_id = :pole"

LATEST = {
    "sqlite": """
        SELECT sensor, field, unit, t, window_s, mean, min, max, count, kid, cti FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor, field
                                         ORDER BY t DESC, cti DESC) AS n
            FROM observations WHERE pole_id = :pole AND t >= :since)
        WHERE n = 1 ORDER BY sensor, field""",
    "postgres": """
        SELECT DISTINCT ON (sensor, field)
               sensor, field, unit, t, window_s, mean, min, max, count, kid, cti
        FROM observations WHERE pole_id = :pole AND t >= :since
        ORDER BY sensor, field, t DESC, cti DESC""",
}

LATEST_COUNTS = {
    "sqlite": """
        SELECT sensor, field, t, bin_s, count, suppressed, kid, cti FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY sensor, field
                                         ORDER BY t DESC, cti DESC) AS n
            FROM counts WHERE pole_id = :pole AND t >= :since)
        WHERE n = 1 ORDER BY sensor, field""",
    "postgres": """
        SELECT DISTINCT ON (sensor, field)
               sensor, field, t, bin_s, count, suppressed, kid, cti
        FROM counts WHERE pole_id = :pole AND t >= :since
        ORDER BY sensor, field, t DESC, cti DESC""",
}

# The last day of a pole's series in at most a few hundred buckets per series.
BUCKETS = {
    "sqlite": """
        SELECT sensor, field, CAST(t / :b AS INTEGER) * :b AS bucket,
               SUM(mean * count) / SUM(count), MIN(min), MAX(max), SUM(count)
        FROM observations
        WHERE pole_id = :pole AND t > :since AND count > 0 AND mean IS NOT NULL
        GROUP BY sensor, field, bucket ORDER BY sensor, field, bucket""",
    "postgres": """
        SELECT sensor, field, floor(extract(epoch FROM t) / :b) * :b AS bucket,
               SUM(mean * count) / SUM(count), MIN(min), MAX(max), SUM(count)
        FROM observations
        WHERE pole_id = :pole AND t > :since AND count > 0 AND mean IS NOT NULL
        GROUP BY sensor, field, bucket ORDER BY sensor, field, bucket""",
}

COUNT_BINS = """
    SELECT sensor, field, t, count, suppressed FROM counts
    WHERE pole_id = :pole AND t > :since ORDER BY sensor, field, t"""

# Count series published today (UTC, by the pole's signed bin time): each spent the
# manifest's epsilon per bin in dp mode.
COUNTS_TODAY = """
    SELECT COUNT(*) FROM counts WHERE pole_id = :pole AND t >= :start AND t < :end"""

# Every pole's newest window of each series (NGSI-LD export), with its key.
LATEST_ALL = {
    "sqlite": """
        SELECT pole_id, sensor, field, unit, t, window_s, mean, min, max, count, kid FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY pole_id, sensor, field
                                         ORDER BY t DESC, cti DESC) AS n
            FROM observations WHERE t >= :since)
        WHERE n = 1 ORDER BY pole_id, sensor, field""",
    "postgres": """
        SELECT DISTINCT ON (pole_id, sensor, field)
               pole_id, sensor, field, unit, t, window_s, mean, min, max, count, kid
        FROM observations WHERE t >= :since
        ORDER BY pole_id, sensor, field, t DESC, cti DESC""",
}

LATEST_COUNTS_ALL = {
    "sqlite": """
        SELECT pole_id, sensor, field, t, bin_s, count, suppressed, kid FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY pole_id, sensor, field
                                         ORDER BY t DESC, cti DESC) AS n
            FROM counts WHERE t >= :since)
        WHERE n = 1 ORDER BY pole_id, sensor, field""",
    "postgres": """
        SELECT DISTINCT ON (pole_id, sensor, field)
               pole_id, sensor, field, t, bin_s, count, suppressed, kid
        FROM counts WHERE t >= :since
        ORDER BY pole_id, sensor, field, t DESC, cti DESC""",
}

LAST_COUNT_T = "SELECT MAX(t) FROM counts WHERE pole_id = :pole"
FIRST_T_SINCE = "SELECT MIN(t) FROM observations WHERE pole_id = :pole AND t > :since"
