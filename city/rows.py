"""What one verified message becomes in the store: the same rows for every back end.

A message row (the raw signed bytes, keyed by kid and cti) and, by kind, the rows a
city queries: ``observations`` from data packs (one row per series per window),
``counts`` from count packs (one per series per bin), ``health`` and ``alarms`` from
health packs, and the pole's own row from its birth (location, software, sensors).
Rows are written together with their message and only when the message is new, so a
redelivered message adds nothing.

Values come from a signed pack, but a pole (or a thief with its key) signs whatever it
likes: every value is made storable here, once, for both back ends (text without NUL
and of bounded length, integers within 64 bits, times within what a database can
hold), so a valid signature can never make a batch fail and stall a worker.
"""

from __future__ import annotations

import json
import math

from provisioning.verifier import Verdict

RELATIVE = 2**28  # SenML: smaller times are relative to "now" (RFC 8428 §4.5.3)
T_MAX = 1e11  # seconds: about the year 5100; both databases hold it
I_MAX = 2**63 - 1
TEXT_MAX = 1000
_STATS = ("mean", "min", "max", "count")  # the order of an observation's columns


class Item:
    """One authentic message and its rows, ready for ``Store.write``.

    Child rows leave out kid and cti: the store adds the message's own. Times are POSIX
    seconds; ``t`` is the signed iat (0 when the pole had no valid clock), the message
    table's partition key: the same bytes always give the same ``t``."""

    __slots__ = (
        "kid",
        "cti",
        "t",
        "pole_id",
        "kind",
        "received",
        "raw",
        "observations",
        "counts",
        "health",
        "alarms",
        "birth",
    )

    def __init__(
        self, kid: bytes, cti: bytes, t: float, pole_id: str, kind: str, received: float, raw: bytes
    ) -> None:
        self.kid = kid
        self.cti = cti
        self.t = t
        self.pole_id = pole_id
        self.kind = kind
        self.received = received
        self.raw = raw
        # (t, pole_id, sensor, field, unit, mean, min, max, count, window_s)
        self.observations: list[tuple] = []
        # (t, pole_id, sensor, field, count, suppressed, bin_s)
        self.counts: list[tuple] = []
        # (t, pole_id, uptime_s, clock_valid, sensors_up JSON, counters JSON)
        self.health: tuple | None = None
        # (t, pole_id, alarm, detail)
        self.alarms: list[tuple] = []
        # (t, pole_id, lat, lon, software, sensors, window_s, bdseq)
        self.birth: tuple | None = None

    @property
    def key(self) -> tuple[bytes, bytes]:
        return self.kid, self.cti

    def bare(self) -> Item:
        """The message alone, without derived rows: what is stored if its rows cannot be."""
        return Item(self.kid, self.cti, self.t, self.pole_id, self.kind, self.received, self.raw)


def message(v: Verdict, raw: bytes, received: float) -> Item:
    """The message alone. Its ``t`` depends only on the signed bytes: the same message
    gets the same partition key whoever builds it, rows or no rows."""
    t = when(v.iat, 0.0) if v.iat is not None else 0.0
    return Item(v.kid, v.cti.to_bytes(8, "big"), t, v.pole_id, v.kind, received, raw)


def item(v: Verdict, raw: bytes, received: float) -> Item:
    """The rows of an authentic message (status accepted or duplicate)."""
    it = message(v, raw, received)
    build = _BUILD.get(v.kind)
    if build is not None:
        build(it, v.records, len(v.pole_id) + 1)
    return it


def when(t: object, received: float) -> float:
    """A record's time as storable POSIX seconds: relative SenML times count from
    ``received``; anything else out of range or not finite becomes 0 (undated)."""
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        return 0.0
    t = float(t)
    if not math.isfinite(t):
        return 0.0
    if abs(t) < RELATIVE:
        t += received
    return t if 0.0 <= t <= T_MAX else 0.0


def num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def integer(v: object) -> int | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        v = int(v)
    return max(-I_MAX, min(I_MAX, v))


def text(v: object) -> str | None:
    if not isinstance(v, str):
        return None
    return v[:TEXT_MAX].replace("\x00", "\ufffd")


_PLANS: dict[tuple[str, ...], tuple] = {}  # a pack's relative names -> where rows come from


def _plan(names: tuple[str, ...]) -> tuple:
    """(index of the time to use, of ``window``, and per series (sensor, field, indexes
    of mean, min, max, count; -1 when absent)). Packs of one sensor set share their names
    whatever the pole, so a worker learns a handful of plans and reads each window of
    each pole through one (a bounded cache)."""
    series: dict[str, list[int]] = {}
    window = first = -1
    for i, rel in enumerate(names):
        head, _, stat = rel.rpartition("/")
        if stat in _STATS and head.count("/") == 1:
            series.setdefault(head, [-1, -1, -1, -1])[_STATS.index(stat)] = i
        elif rel == "window":
            window = i
        else:
            continue
        first = i if first < 0 else first
    rows = tuple((*head.split("/"), *idx) for head, idx in series.items())
    return first, window, rows


def _data(it: Item, records: list, base: int) -> None:
    names = tuple([r[0][base:] for r in records])
    plan = _PLANS.get(names)
    if plan is None:
        plan = _plan(names)
        if len(_PLANS) < 1000:
            _PLANS[names] = plan
    first, window_i, series = plan
    if not series:
        return
    t = when(records[first][3], it.received)
    window = integer(records[window_i][2]) if window_i >= 0 else None
    pole = it.pole_id
    add = it.observations.append
    for sensor, field, i_mean, i_min, i_max, i_count in series:
        add(
            (
                t,
                pole,
                sensor,
                field,
                text(records[i_mean][1]) if i_mean >= 0 else None,
                _f(records[i_mean][2]) if i_mean >= 0 else None,
                _f(records[i_min][2]) if i_min >= 0 else None,
                _f(records[i_max][2]) if i_max >= 0 else None,
                (integer(records[i_count][2]) or 0) if i_count >= 0 else 0,
                window,
            )
        )


def _f(v: object) -> float | None:
    return v if type(v) is float else num(v)


def _counts(it: Item, records: list, base: int) -> None:
    series: dict[str, list] = {}
    bin_s = None
    t = None
    for name, _unit, value, time, _sum in records:
        rel = name[base:]
        head, _, what = rel.rpartition("/")
        if what in ("count", "suppressed") and head.count("/") == 1:
            s = series.setdefault(head, [0, False])
            if what == "count":
                s[0] = integer(value) or 0
            else:
                s[1] = value is True
            t = time if t is None else t
        elif rel == "bin":
            bin_s = integer(value)
            t = time
    t = when(t, it.received)
    for head, (count, suppressed) in series.items():
        sensor, field = head.split("/")
        it.counts.append((t, it.pole_id, sensor, field, count, suppressed, bin_s))


def _health(it: Item, records: list, base: int) -> None:
    uptime = valid = t = None
    up: dict[str, bool] = {}
    counters: dict[str, int | None] = {}
    alarms: dict[str, str | None] = {}
    for name, _unit, value, time, _sum in records:
        rel = name[base:]
        t = time if t is None else t
        parts = rel.split("/")
        if rel == "time/uptime":
            uptime = num(value)
        elif rel == "time/valid":
            valid = value is True
        elif parts[0] == "sensor" and len(parts) == 3 and parts[2] == "up":
            up[parts[1]] = value is True
        elif parts[0] == "counter" and len(parts) == 2:
            counters[parts[1]] = integer(value)
        elif parts[0] == "alarm" and len(parts) == 2:
            alarms.setdefault(parts[1], None)
        elif parts[0] == "alarm" and len(parts) == 3 and parts[2] == "detail":
            alarms[parts[1]] = text(value)
    t = when(t, it.received)
    it.health = (t, it.pole_id, uptime, valid, json.dumps(up), json.dumps(counters))
    it.alarms = [(t, it.pole_id, a, d) for a, d in alarms.items()]


def _birth(it: Item, records: list, base: int) -> None:
    f: dict[str, object] = {}
    t = None
    for name, _unit, value, time, _sum in records:
        f[name[base:]] = value
        t = time if t is None else t
    lat, lon = num(f.get("location/lat")), num(f.get("location/lon"))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        lat = lon = None
    it.birth = (
        when(t, it.received),
        it.pole_id,
        lat,
        lon,
        text(f.get("software")),
        text(f.get("sensors")),
        integer(f.get("window")),
        integer(f.get("bdSeq")),
    )


_BUILD = {"data": _data, "counts": _counts, "health": _health, "birth": _birth}
