"""The questions a city asks its store, in both dialects, side by side.

Each function takes a store and returns plain named tuples with UTC datetimes, whichever
back end answers. The SQL is here, not in the stores, so that the two dialects of one
question can be read (and kept in step) together.

- ``latest_readings``: each pole's newest window of each series.
- ``open_alarms``: the alarms raised in each pole's latest health message (a health
  message lists every alarm that is raised now; one without an alarm clears it).
- ``hourly_means``: count-weighted hourly means of a field (PM2.5 by default) for the
  poles within a radius of a point: PostGIS ``ST_DWithin`` on ``geography`` (metres on
  the spheroid) or, on SQLite, a haversine function. A window belongs to the hour in
  which it starts, and to the query if it starts in [start, end).
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from city.store import Store


class Reading(NamedTuple):
    pole_id: str
    sensor: str
    field: str
    unit: str | None
    t: dt.datetime  # the window's end
    mean: float | None
    min: float | None
    max: float | None
    count: int


class Alarm(NamedTuple):
    pole_id: str
    alarm: str
    detail: str | None
    t: dt.datetime  # the health message that reports it


class HourlyMean(NamedTuple):
    pole_id: str
    hour: dt.datetime
    mean: float
    samples: int
    min: float | None
    max: float | None
    distance_m: float


_LATEST = {
    "postgres": """
        SELECT DISTINCT ON (pole_id, sensor, field)
               pole_id, sensor, field, unit, t, mean, min, max, count
        FROM observations
        WHERE t >= %(since)s AND (%(pole)s::text IS NULL OR pole_id = %(pole)s)
        ORDER BY pole_id, sensor, field, t DESC""",
    "sqlite": """
        SELECT o.pole_id, o.sensor, o.field, o.unit, o.t, o.mean, o.min, o.max, o.count
        FROM observations o
        JOIN (SELECT pole_id, sensor, field, MAX(t) AS t FROM observations
              WHERE t >= :since AND (:pole IS NULL OR pole_id = :pole)
              GROUP BY pole_id, sensor, field) m
          ON m.pole_id = o.pole_id AND m.sensor = o.sensor AND m.field = o.field AND m.t = o.t
        GROUP BY o.pole_id, o.sensor, o.field
        ORDER BY o.pole_id, o.sensor, o.field""",
}

_ALARMS = {
    "postgres": """
        WITH latest AS (
            SELECT DISTINCT ON (pole_id) pole_id, t, kid, cti
            FROM health WHERE t >= %(since)s ORDER BY pole_id, t DESC, cti DESC)
        SELECT a.pole_id, a.alarm, a.detail, a.t
        FROM latest l JOIN alarms a
          ON a.pole_id = l.pole_id AND a.t = l.t AND a.kid = l.kid AND a.cti = l.cti
        ORDER BY a.pole_id, a.alarm""",
    "sqlite": """
        WITH ranked AS (
            SELECT pole_id, t, kid, cti, ROW_NUMBER() OVER (
                PARTITION BY pole_id ORDER BY t DESC, cti DESC) AS n
            FROM health WHERE t >= :since)
        SELECT a.pole_id, a.alarm, a.detail, a.t
        FROM ranked l JOIN alarms a
          ON a.pole_id = l.pole_id AND a.t = l.t AND a.kid = l.kid AND a.cti = l.cti
        WHERE l.n = 1
        ORDER BY a.pole_id, a.alarm""",
}

_HOURLY = {
    "postgres": """
        WITH near AS (
            SELECT pole_id, ST_Distance(location, here) AS d
            FROM poles, (SELECT ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4326)::geography
                         AS here) AS p
            WHERE ST_DWithin(location, here, %(radius)s))
        SELECT o.pole_id,
               date_trunc('hour', o.t - make_interval(secs => COALESCE(o.window_s, 0)))
                   AS hour,
               SUM(o.mean * o.count) / SUM(o.count) AS mean, SUM(o.count) AS samples,
               MIN(o.min), MAX(o.max), MIN(near.d)
        FROM observations o JOIN near ON near.pole_id = o.pole_id
        WHERE o.field = %(field)s AND o.count > 0 AND o.mean IS NOT NULL
          AND o.t >= %(start)s AND o.t < %(end)s + interval '1 day'
          AND o.t - make_interval(secs => COALESCE(o.window_s, 0)) >= %(start)s
          AND o.t - make_interval(secs => COALESCE(o.window_s, 0)) < %(end)s
        GROUP BY o.pole_id, hour ORDER BY o.pole_id, hour""",
    "sqlite": """
        WITH near AS (
            SELECT pole_id, city_distance_m(lat, lon, :lat, :lon) AS d FROM poles
            WHERE lat IS NOT NULL AND city_distance_m(lat, lon, :lat, :lon) <= :radius)
        SELECT o.pole_id,
               CAST((o.t - COALESCE(o.window_s, 0)) / 3600 AS INTEGER) * 3600 AS hour,
               SUM(o.mean * o.count) / SUM(o.count) AS mean, SUM(o.count) AS samples,
               MIN(o.min), MAX(o.max), MIN(near.d)
        FROM observations o JOIN near ON near.pole_id = o.pole_id
        WHERE o.field = :field AND o.count > 0 AND o.mean IS NOT NULL
          AND o.t >= :start AND o.t < :end + 86400
          AND o.t - COALESCE(o.window_s, 0) >= :start
          AND o.t - COALESCE(o.window_s, 0) < :end
        GROUP BY o.pole_id, hour ORDER BY o.pole_id, hour""",
}


def _time(store: Store, t: dt.datetime | float):
    """A parameter time in the back end's own type."""
    if isinstance(t, (int, float)):
        t = dt.datetime.fromtimestamp(t, dt.UTC)
    return t.timestamp() if store.dialect == "sqlite" else t


def _utc(v) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC)
    return dt.datetime.fromtimestamp(float(v), dt.UTC)


def latest_readings(
    store: Store, since: dt.datetime | float, pole_id: str | None = None
) -> list[Reading]:
    """Each pole's (or one pole's) newest window of each series, among windows that
    ended at or after ``since`` (which bounds the partitions read)."""
    rows = store.query(_LATEST[store.dialect], {"since": _time(store, since), "pole": pole_id})
    return [Reading(r[0], r[1], r[2], r[3], _utc(r[4]), *r[5:8], int(r[8])) for r in rows]


def open_alarms(store: Store, since: dt.datetime | float) -> list[Alarm]:
    """Alarms in each pole's latest health message sent at or after ``since`` (a pole
    silent since then is not reported: look at its health, not at its alarms)."""
    rows = store.query(_ALARMS[store.dialect], {"since": _time(store, since)})
    return [Alarm(r[0], r[1], r[2], _utc(r[3])) for r in rows]


def hourly_means(
    store: Store,
    lat: float,
    lon: float,
    start: dt.datetime | float,
    end: dt.datetime | float,
    radius_m: float = 500.0,
    field: str = "pm2_5",
) -> list[HourlyMean]:
    """Per pole within ``radius_m`` of (lat, lon) and per hour, over the windows that
    start in [start, end): the mean of ``field`` weighted by each window's samples."""
    params = {
        "lat": float(lat),
        "lon": float(lon),
        "radius": float(radius_m),
        "field": field,
        "start": _time(store, start),
        "end": _time(store, end),
    }
    rows = store.query(_HOURLY[store.dialect], params)
    return [
        HourlyMean(r[0], _utc(r[1]), float(r[2]), int(r[3]), r[4], r[5], float(r[6])) for r in rows
    ]
