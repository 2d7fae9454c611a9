"""Observations in SQL: the one SensorThings entity set too large to filter in memory.

Observations are the rows of ``observations`` (window statistics) and ``counts``
(protected counts per bin), read as one union. ``$filter`` and ``$orderby``, parsed by
city/web/odata.py, are compiled here into SQL made only of fixed fragments of this
module; every value is a bound parameter (``:p0`` on SQLite, ``%(p0)s`` on PostgreSQL).
What cannot be compiled (a property the tables do not hold, a function with no SQL
counterpart here) is a ``QueryError``, a 400 that says so, never a slower fallback.

An Observation's id is the signed message it came in and its series,
``<kid>~<cti>~<sensor>~<field>`` (hex; ``~`` is in no pole id, sensor or field name).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from typing import Any

from city.web import db, odata
from city.web.fleet import fingerprint
from city.web.odata import Interval, Options, QueryError

SEP = "~"
E = dict  # an entity: its properties, and hidden "_" keys for navigation


class NotFound(LookupError):
    """No such entity or path: 404 with this sentence."""


def iso(t: float | None) -> str | None:
    """POSIX seconds as ISO 8601 UTC (``Z``), milliseconds when they are not zero."""
    if t is None or not math.isfinite(t):
        return None
    d = dt.datetime.fromtimestamp(t, dt.UTC)
    text = d.isoformat(timespec="milliseconds" if d.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def utc_datetime(t: float | None) -> dt.datetime | None:
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC)


@dataclasses.dataclass
class ObsSource:
    """Observations restricted to a pole, a series, or one observation."""

    pole: str | None = None
    sensor: str | None = None
    field: str | None = None
    kinds: tuple[str, ...] = ("data", "counts")
    obs_id: tuple[bytes, bytes, str, str] | None = None


# -- Observations in SQL -----------------------------------------------------------------------
_BRANCH = {
    ("sqlite", "data"): (
        "SELECT 'data' AS k, t, COALESCE(window_s, 0) AS span, pole_id, sensor, field, "
        "mean AS result, min AS vmin, max AS vmax, count AS n, NULL AS supp, kid, cti "
        "FROM observations"
    ),
    ("sqlite", "counts"): (
        "SELECT 'counts' AS k, t, COALESCE(bin_s, 0) AS span, pole_id, sensor, field, "
        "count AS result, NULL AS vmin, NULL AS vmax, NULL AS n, suppressed AS supp, kid, cti "
        "FROM counts"
    ),
    ("postgres", "data"): (
        "SELECT 'data'::text AS k, t, COALESCE(window_s, 0)::bigint AS span, pole_id, sensor, "
        "field, mean::float8 AS result, min::float8 AS vmin, max::float8 AS vmax, "
        "count::bigint AS n, NULL::boolean AS supp, kid, cti FROM observations"
    ),
    ("postgres", "counts"): (
        "SELECT 'counts'::text AS k, t, COALESCE(bin_s, 0)::bigint AS span, pole_id, sensor, "
        "field, count::float8 AS result, NULL::float8 AS vmin, NULL::float8 AS vmax, "
        "NULL::bigint AS n, suppressed AS supp, kid, cti FROM counts"
    ),
}
_COLUMNS = (
    "o.k, o.t, o.span, o.pole_id, o.sensor, o.field, o.result, o.vmin, o.vmax, o.n, o.supp, "
    "o.kid, o.cti"
)
_TIEBREAK = ("o.pole_id", "o.sensor", "o.field", "o.kid", "o.cti")
_SQL_OPS = {"eq": "=", "ne": "<>", "gt": ">", "ge": ">=", "lt": "<", "le": "<="}


class _Sql:
    """One compiled query: text of fixed fragments, values as bound parameters."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.params: dict[str, Any] = {}

    def param(self, value: Any) -> str:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return f":{name}" if self.dialect == "sqlite" else f"%({name})s"

    def time(self, value: dt.datetime) -> str:
        return self.param(db.tparam(self.dialect, value.timestamp()))

    def start(self) -> str:
        if self.dialect == "sqlite":
            return "(o.t - o.span)"
        return "(o.t - make_interval(secs => o.span))"


def obs_id(kid: bytes, cti: bytes, sensor: str, field: str) -> str:
    return SEP.join((bytes(kid).hex(), bytes(cti).hex(), sensor, field))


def parse_obs_id(key: str) -> tuple[bytes, bytes, str, str]:
    parts = key.split(SEP)
    if len(parts) != 4:
        raise NotFound("no Observation with that id")
    try:
        kid, cti = bytes.fromhex(parts[0]), bytes.fromhex(parts[1])
    except ValueError:
        raise NotFound("no Observation with that id") from None
    return kid, cti, parts[2], parts[3]


_PARAMETER_COLUMNS = {
    "min": "o.vmin",
    "max": "o.vmax",
    "count": "o.n",
    "window_s": "o.span",
    "bin_s": "o.span",
    "suppressed": "o.supp",
}


def _column(q: _Sql, path: tuple[str, ...]) -> tuple[str, str]:
    """(SQL, type) of a property path of an Observation."""
    p = "/".join(path)
    if p == "result":
        return "o.result", "num"
    if p == "resultTime":
        return "o.t", "time"
    if p == "phenomenonTime":
        return "", "interval"
    if p == "@iot.id":
        return "", "obs_id"
    if len(path) == 2 and path[0] == "parameters" and path[1] in _PARAMETER_COLUMNS:
        col = _PARAMETER_COLUMNS[path[1]]
        return col, "bool" if path[1] == "suppressed" else "num"
    if p in ("Datastream/@iot.id",):
        return "", "ds_id"
    if p in ("Datastream/Sensor/@iot.id",):
        return "", "sensor_id"
    if p in ("Datastream/Thing/@iot.id", "Datastream/Thing/name", "FeatureOfInterest/@iot.id"):
        return "o.pole_id", "str"
    if p in ("Datastream/ObservedProperty/@iot.id", "Datastream/ObservedProperty/name"):
        return "o.field", "str"
    raise QueryError(
        f"Observations cannot be filtered or ordered by {odata._short(p)} here; use result, "
        "phenomenonTime, resultTime, parameters/min|max|count, @iot.id, Datastream/@iot.id, "
        "Datastream/Thing/@iot.id or Datastream/ObservedProperty/name"
    )


def _compile(q: _Sql, node: odata.Node) -> tuple[str, str]:
    """(SQL, type) of a filter expression: bool, num, str, time, dur, null, or a special
    kind (interval, ids) that only a comparison can take."""
    tag = node[0]
    if tag == "lit":
        v = node[1]
        if v is None:
            return "NULL", "null"
        if isinstance(v, bool):
            return q.param(v if q.dialect == "postgres" else int(v)), "bool"
        if isinstance(v, (int, float)):
            return q.param(v), "num"
        if isinstance(v, str):
            return q.param(v), "str"
        if isinstance(v, dt.datetime):
            return q.time(v), "time"
        if isinstance(v, dt.timedelta):
            return q.param(v.total_seconds()), "dur"
        raise QueryError("geometry literals cannot be used on Observations")
    if tag == "path":
        return _column(q, node[1])
    if tag == "not":
        return f"(NOT {_bool(q, node[1])})", "bool"
    if tag == "neg":
        sql, typ = _compile(q, node[1])
        if typ != "num":
            raise QueryError("'-' applies to numbers")
        return f"(-{sql})", "num"
    if tag == "call":
        return _function(q, node[1], node[2])
    op = node[1]
    if op in ("and", "or"):
        return f"({_bool(q, node[2])} {op.upper()} {_bool(q, node[3])})", "bool"
    if op in odata.COMPARE:
        return _comparison(q, op, node[2], node[3]), "bool"
    return _arith(q, op, node[2], node[3])


def _bool(q: _Sql, node: odata.Node) -> str:
    sql, typ = _compile(q, node)
    if typ != "bool":
        raise QueryError("'and', 'or' and 'not' need true or false on both sides")
    if q.dialect == "sqlite" or sql.startswith("("):
        return sql
    return f"({sql})"


def _arith(q: _Sql, op: str, a: odata.Node, b: odata.Node) -> tuple[str, str]:
    sa, ta = _compile(q, a)
    sb, tb = _compile(q, b)
    if ta == "time" and tb == "dur" and op in ("add", "sub"):
        sign = "+" if op == "add" else "-"
        if q.dialect == "sqlite":
            return f"({sa} {sign} {sb})", "time"
        return f"({sa} {sign} make_interval(secs => {sb}))", "time"
    if ta != "num" or tb != "num":
        raise QueryError(f"'{op}' applies to numbers (or a time and a duration)")
    if op == "mod":
        raise QueryError("'mod' is not supported on Observations")
    if op == "div":
        return f"(CAST({sa} AS DOUBLE PRECISION) / NULLIF({sb}, 0))".replace(
            "DOUBLE PRECISION", "REAL" if q.dialect == "sqlite" else "DOUBLE PRECISION"
        ), "num"
    return f"({sa} {dict(add='+', sub='-', mul='*')[op]} {sb})", "num"


def _comparison(q: _Sql, op: str, a: odata.Node, b: odata.Node) -> str:
    sa, ta = _compile(q, a)
    sb, tb = _compile(q, b)
    if ta in ("obs_id", "ds_id", "sensor_id") or tb in ("obs_id", "ds_id", "sensor_id"):
        return _id_comparison(q, op, a, b, ta if ta.endswith("_id") else tb)
    if ta == "interval" or tb == "interval":
        if ta == "interval" and tb == "interval":
            raise QueryError("compare phenomenonTime with a time")
        other, other_t = (sb, tb) if ta == "interval" else (sa, ta)
        if other_t != "time":
            raise QueryError("phenomenonTime compares with a time")
        if tb == "interval":
            op = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge"}.get(op, op)
        if op in ("gt", "ge"):
            return f"({q.start()} {_SQL_OPS[op]} {other})"
        if op in ("lt", "le"):
            return f"(o.t {_SQL_OPS[op]} {other})"
        same = f"({q.start()} = {other} AND o.t = {other})"
        return same if op == "eq" else f"(NOT {same})"
    if ta == "null" or tb == "null":
        col = sb if ta == "null" else sa
        if op == "eq":
            return "(1 = 1)" if ta == tb else f"({col} IS NULL)"
        if op == "ne":
            return "(1 = 0)" if ta == tb else f"({col} IS NOT NULL)"
        return "(1 = 0)"
    if ta != tb:
        raise QueryError(f"cannot compare {_kind(ta)} with {_kind(tb)}")
    if ta == "bool" and op not in ("eq", "ne"):
        raise QueryError("true and false compare with eq and ne only")
    return f"({sa} {_SQL_OPS[op]} {sb})"


def _kind(t: str) -> str:
    return {"num": "a number", "str": "text", "time": "a time", "bool": "true/false"}.get(t, t)


def _id_comparison(q: _Sql, op: str, a: odata.Node, b: odata.Node, typ: str) -> str:
    lit = b if a[0] == "path" else a
    if op not in ("eq", "ne") or lit[0] != "lit" or not isinstance(lit[1], str):
        raise QueryError("an id compares with eq or ne and a quoted id")
    parts = lit[1].split(SEP)
    if typ == "obs_id":
        try:
            kid, cti, sensor, field = parse_obs_id(lit[1])
        except NotFound:
            return "(1 = 0)" if op == "eq" else "(1 = 1)"
        cols = {"o.kid": kid, "o.cti": cti, "o.sensor": sensor, "o.field": field}
    elif typ == "ds_id" and len(parts) == 3:
        cols = dict(zip(("o.pole_id", "o.sensor", "o.field"), parts, strict=True))
    elif typ == "sensor_id" and len(parts) == 2:
        cols = dict(zip(("o.pole_id", "o.sensor"), parts, strict=True))
    else:
        return "(1 = 0)" if op == "eq" else "(1 = 1)"
    same = " AND ".join(f"{c} = {q.param(v)}" for c, v in cols.items())
    return f"({same})" if op == "eq" else f"(NOT ({same}))"


def _function(q: _Sql, fn: str, args: tuple) -> tuple[str, str]:
    if fn == "now":
        return q.time(dt.datetime.now(dt.UTC)), "time"
    if fn in ("year", "month", "day", "hour", "minute", "second"):
        sql, typ = _compile(q, args[0])
        if typ == "interval":
            sql, typ = q.start(), "time"
        if typ != "time":
            raise QueryError(f"{fn}() takes a time")
        if q.dialect == "sqlite":
            fmt = {"year": "%Y", "month": "%m", "day": "%d", "hour": "%H", "minute": "%M"}
            fmt["second"] = "%S"
            return f"CAST(strftime('{fmt[fn]}', {sql}, 'unixepoch') AS INTEGER)", "num"
        return f"CAST(extract({fn} FROM {sql} AT TIME ZONE 'UTC') AS INTEGER)", "num"
    if fn == "round":
        sql, typ = _compile(q, args[0])
        if typ != "num":
            raise QueryError("round() takes a number")
        return f"round({sql})", "num"
    raise QueryError(f"{fn}() is not supported on Observations")


def _order(q: _Sql, orderby: list[tuple[tuple[str, ...], bool]]) -> str:
    parts = []
    for path, desc in orderby:
        col, typ = _column(q, path)
        direction = " DESC" if desc else ""
        if typ == "interval":
            parts.append(q.start() + direction)
        elif typ == "obs_id":
            parts += [f"o.kid{direction}", f"o.cti{direction}"]
        elif typ in ("ds_id", "sensor_id"):
            parts += [f"o.pole_id{direction}", f"o.sensor{direction}"]
        else:
            parts.append(col + direction)
    if not parts:
        parts.append("o.t DESC")
    return ", ".join(parts + list(_TIEBREAK))


def observations_sql(
    dialect: str, src: ObsSource, o: Options, *, count: bool = False
) -> tuple[str, dict]:
    """The query for a page of Observations (or their number) from ``src`` under ``o``."""
    q = _Sql(dialect)
    kinds = src.kinds
    if src.obs_id is not None:
        kinds = ("data", "counts")
    union = " UNION ALL ".join(_BRANCH[(dialect, k)] for k in kinds)
    where = []
    if src.pole is not None:
        where.append(f"o.pole_id = {q.param(src.pole)}")
    if src.sensor is not None:
        where.append(f"o.sensor = {q.param(src.sensor)}")
    if src.field is not None:
        where.append(f"o.field = {q.param(src.field)}")
    if src.obs_id is not None:
        kid, cti, sensor, field = src.obs_id
        where += [
            f"o.kid = {q.param(kid)}",
            f"o.cti = {q.param(cti)}",
            f"o.sensor = {q.param(sensor)}",
            f"o.field = {q.param(field)}",
        ]
    if o.filter is not None:
        where.append(_bool(q, o.filter))
    text = f"FROM ({union}) o" + (f" WHERE {' AND '.join(where)}" if where else "")
    if count:
        return f"SELECT COUNT(*) {text}", q.params
    order = _order(q, o.orderby)
    limit, offset = q.param(o.top + 1), q.param(o.skip)
    return f"SELECT {_COLUMNS} {text} ORDER BY {order} LIMIT {limit} OFFSET {offset}", q.params


def observation_entity(row: tuple) -> E:
    k, t, span, pole, sensor, field, result, vmin, vmax, n, supp, kid, cti = row
    t = db.epoch(t) or 0.0
    span = int(span or 0)
    kid, cti = bytes(kid), bytes(cti)
    verification = {
        "status": "verified",
        "key": fingerprint(kid),
        "kid": kid.hex(),
        "cti": cti.hex(),
    }
    if k == "counts":
        value: object = None if result is None else int(result)
        params = {"suppressed": bool(supp), "bin_s": span, "verification": verification}
    else:
        value = result
        params = {
            "min": vmin,
            "max": vmax,
            "count": None if n is None else int(n),
            "window_s": span,
            "verification": verification,
        }
    start = utc_datetime(t - span)
    end = utc_datetime(t)
    return {
        "@iot.id": obs_id(kid, cti, sensor, field),
        "phenomenonTime": Interval(start, end) if span else end,  # type: ignore[arg-type]
        "resultTime": end,
        "result": value,
        "parameters": params,
        "_pole": pole,
        "_sensor": sensor,
        "_field": field,
        "_kind": k,
    }
