"""OGC SensorThings API v1.1, read-only, over the city's store (``/v1.1``).

The entity model, and where each entity comes from:

| entity | one per | from |
|---|---|---|
| Thing | pole | the fleet's state (city/web/fleet.py): keys, births, health |
| Location, HistoricalLocation, FeatureOfInterest | located pole | its latest birth |
| Sensor | sensor of a pole | its signed manifest (model, purpose) |
| ObservedProperty | field (pm2_5, temperature, ...) | the manifests |
| Datastream | published series of a pole | its manifest's "leaves", units from the descriptors |
| Observation | window of a series, or bin of a count | tables ``observations`` and ``counts`` |

Ids are strings: a Thing is its pole id, a Datastream ``<pole>~<sensor>~<field>``, a
Sensor ``<pole>~<sensor>``, an Observation ``<kid>~<cti>~<sensor>~<field>`` (the signed
message it came in, in hex; ``~`` appears in no pole id, sensor or field name). An
Observation's ``result`` is the window's mean (a count's protected count);
``parameters`` hold min, max, the number of samples and the window length (for
counts: whether the bin was suppressed, and its length), and the message's
verification: the key that signed it and its counter.

The small sets are filtered in memory (city/web/odata.py ``evaluate``); Observations
are filtered, ordered and paged in SQL compiled from the parsed ``$filter``
(city/web/observations.py): every value is a bound parameter, every piece of SQL text a
fixed fragment of that module.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode

from city.web import db, odata
from city.web.fleet import Pole, Series, View
from city.web.observations import (
    SEP,
    NotFound,
    ObsSource,
    iso,
    observation_entity,
    observations_sql,
    parse_obs_id,
    utc_datetime,
)
from city.web.odata import Geo, Interval, Options, QueryError

__all__ = ["SEP", "Catalogue", "NotFound", "ObsSource", "Service", "iso", "next_link_factory"]

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
# SenML units (RFC 8428 and the descriptors) as a unitOfMeasurement: name, symbol, UCUM code.
UNITS = {
    "ug/m3": ("microgram per cubic metre", "µg/m³", "ug/m3"),
    "Cel": ("degree Celsius", "°C", "Cel"),
    "%RH": ("percent relative humidity", "%RH", "%"),
    "Pa": ("pascal", "Pa", "Pa"),
    "A": ("ampere", "A", "A"),
    "V": ("volt", "V", "V"),
    "W": ("watt", "W", "W"),
    "Wh": ("watt hour", "Wh", "W.h"),
    "deg": ("degree (plane angle)", "°", "deg"),
    "1/m3": ("per cubic metre", "1/m³", "/m3"),
    "s": ("second", "s", "s"),
    "%": ("percent", "%", "%"),
    "/": ("ratio", "1", "1"),
    "count": ("count", "{count}", "{count}"),
}


def unit_of(unit: str | None) -> dict:
    name, symbol, code = UNITS.get(unit or "", (unit or "unknown", unit or "", unit or ""))
    return {"name": name, "symbol": symbol, "definition": f"ucum:{code}"}


# -- the entity sets ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EntitySet:
    plural: str
    singular: str
    props: tuple[str, ...]
    navs: dict[str, tuple[str, bool]]  # navigation property -> (target set, collection?)


SETS = {
    s.plural: s
    for s in (
        EntitySet(
            "Things",
            "Thing",
            ("@iot.id", "name", "description", "properties"),
            {
                "Locations": ("Locations", True),
                "HistoricalLocations": ("HistoricalLocations", True),
                "Datastreams": ("Datastreams", True),
            },
        ),
        EntitySet(
            "Locations",
            "Location",
            ("@iot.id", "name", "description", "encodingType", "location"),
            {"Things": ("Things", True), "HistoricalLocations": ("HistoricalLocations", True)},
        ),
        EntitySet(
            "HistoricalLocations",
            "HistoricalLocation",
            ("@iot.id", "time"),
            {"Thing": ("Things", False), "Locations": ("Locations", True)},
        ),
        EntitySet(
            "Sensors",
            "Sensor",
            ("@iot.id", "name", "description", "encodingType", "metadata", "properties"),
            {"Datastreams": ("Datastreams", True)},
        ),
        EntitySet(
            "ObservedProperties",
            "ObservedProperty",
            ("@iot.id", "name", "definition", "description", "properties"),
            {"Datastreams": ("Datastreams", True)},
        ),
        EntitySet(
            "Datastreams",
            "Datastream",
            (
                "@iot.id",
                "name",
                "description",
                "unitOfMeasurement",
                "observationType",
                "properties",
            ),
            {
                "Thing": ("Things", False),
                "Sensor": ("Sensors", False),
                "ObservedProperty": ("ObservedProperties", False),
                "Observations": ("Observations", True),
            },
        ),
        EntitySet(
            "Observations",
            "Observation",
            ("@iot.id", "phenomenonTime", "resultTime", "result", "resultQuality", "parameters"),
            {
                "Datastream": ("Datastreams", False),
                "FeatureOfInterest": ("FeaturesOfInterest", False),
            },
        ),
        EntitySet(
            "FeaturesOfInterest",
            "FeatureOfInterest",
            ("@iot.id", "name", "description", "encodingType", "feature", "properties"),
            {"Observations": ("Observations", True)},
        ),
    )
}

E = dict  # an entity: its properties, and hidden "_" keys for navigation


class Catalogue:
    """The small entity sets, built from the fleet's state (rebuilt when it changes).

    Args:
        fleet: the live state.
        owner: who owns and runs the poles (a Thing's properties).
        public_url: base URL of the public pages (``<public_url>/<pole id>``).
    """

    def __init__(self, fleet: View, owner: str, public_url: str) -> None:
        self.version = fleet.version
        self.sets: dict[str, list[E]] = {name: [] for name in SETS if name != "Observations"}
        self.by_id: dict[str, dict[str, E]] = {}
        self.ds_by_pole: dict[str, list[E]] = {}
        self.ds_by_sensor: dict[str, list[E]] = {}
        self.ds_by_property: dict[str, list[E]] = {}
        props: dict[str, E] = {}
        for pole_id in sorted(fleet.poles):
            p = fleet.poles[pole_id]
            self._pole(fleet, p, owner, public_url, props)
        self.sets["ObservedProperties"] = [props[k] for k in sorted(props)]
        for name, items in self.sets.items():
            self.by_id[name] = {e["@iot.id"]: e for e in items}

    def _pole(self, fleet: View, p: Pole, owner: str, public_url: str, props: dict) -> None:
        keys = fleet.keys_of(p.pole_id)
        m = p.manifest
        thing = {
            "@iot.id": p.pole_id,
            "name": p.pole_id,
            "description": f"Light pole {p.pole_id}",
            "properties": {
                "state": p.state,
                "alarms": sorted(p.alarms),
                "owner": owner,
                "software": p.software,
                "publicPage": f"{public_url}/{p.pole_id}",
                "key": keys[0].fingerprint if keys else None,
                "keyStatus": keys[0].status if keys else None,
                "manifestSha256": m.sha256 if m else None,
            },
            "_pole": p.pole_id,
        }
        self.sets["Things"].append(thing)
        if p.lat is not None and p.lon is not None:
            point = {"type": "Point", "coordinates": [p.lon, p.lat]}
            self.sets["Locations"].append(
                {
                    "@iot.id": p.pole_id,
                    "name": f"{p.pole_id} location",
                    "description": f"Where light pole {p.pole_id} stands (from its signed birth)",
                    "encodingType": "application/geo+json",
                    "location": point,
                    "_pole": p.pole_id,
                }
            )
            self.sets["HistoricalLocations"].append(
                {"@iot.id": p.pole_id, "time": utc_datetime(p.birth_at), "_pole": p.pole_id}
            )
            self.sets["FeaturesOfInterest"].append(
                {
                    "@iot.id": p.pole_id,
                    "name": f"Street at {p.pole_id}",
                    "description": f"The street around light pole {p.pole_id}",
                    "encodingType": "application/geo+json",
                    "feature": point,
                    "properties": {},
                    "_pole": p.pole_id,
                }
            )
        purposes = {n: pur for n, _m, pur, _f in m.sensors()} if m else {}
        sensors_done: set[str] = set()
        for s in p.series:
            if s.sensor not in sensors_done:
                sensors_done.add(s.sensor)
                sid = SEP.join((p.pole_id, s.sensor))
                self.sets["Sensors"].append(
                    {
                        "@iot.id": sid,
                        "name": f"{s.sensor} on {p.pole_id}",
                        "description": purposes.get(s.sensor) or _title(s.model),
                        "encodingType": "text/plain",
                        "metadata": f"{s.model}: {_title(s.model)}",
                        "properties": {"model": s.model, "pole": p.pole_id},
                        "_pole": p.pole_id,
                        "_sensor": s.sensor,
                    }
                )
            if s.field not in props:
                props[s.field] = {
                    "@iot.id": s.field,
                    "name": s.field,
                    "definition": f"urn:lightpole:observed-property:{s.field}",
                    "description": f"{s.field} as the pole's sensors publish it"
                    + (" (a protected count per bin)" if s.kind == "counts" else ""),
                    "properties": {},
                    "_field": s.field,
                }
            ds = datastream_entity(s)
            self.sets["Datastreams"].append(ds)
            self.ds_by_pole.setdefault(p.pole_id, []).append(ds)
            self.ds_by_sensor.setdefault(SEP.join((p.pole_id, s.sensor)), []).append(ds)
            self.ds_by_property.setdefault(s.field, []).append(ds)

    def get(self, set_name: str, key: str) -> E:
        e = self.by_id.get(set_name, {}).get(key)
        if e is None:
            raise NotFound(f"no {SETS[set_name].singular} with that id")
        return e

    def datastream(self, pole: str, sensor: str, field: str, kind: str) -> E:
        """The Datastream of an observation's series (made up if the pole's manifest no
        longer lists it, so an old observation still leads somewhere)."""
        e = self.by_id["Datastreams"].get(SEP.join((pole, sensor, field)))
        if e is not None:
            return e
        return datastream_entity(Series(pole, sensor, field, "", kind, None))


def _title(model: str) -> str:
    from city.web.fleet import descriptor

    d = descriptor(model) if model else None
    return d.title if d else model or "unknown sensor"


def datastream_entity(s: Series) -> E:
    counts = s.kind == "counts"
    return {
        "@iot.id": SEP.join((s.pole_id, s.sensor, s.field)),
        "name": f"{s.field} at {s.pole_id} ({s.sensor})",
        "description": (
            f"Protected count of {s.field} per bin, after the pole's privacy gate"
            if counts
            else f"Mean of {s.field} per window, with min, max and samples"
        ),
        "unitOfMeasurement": unit_of(s.unit),
        "observationType": OM + ("OM_CountObservation" if counts else "OM_Measurement"),
        "properties": {"sensor": s.sensor, "model": s.model, "series": f"{s.sensor}/{s.field}"},
        "_pole": s.pole_id,
        "_sensor": s.sensor,
        "_field": s.field,
        "_kind": s.kind,
    }


# -- navigation ---------------------------------------------------------------------------------
def related(cat: Catalogue, set_name: str, e: E, nav: str) -> tuple[str, list[E] | ObsSource]:
    """What navigation property ``nav`` of entity ``e`` leads to: (target set, entities
    or, for Observations, a restriction)."""
    pole: str = e.get("_pole", "")
    by = cat.by_id
    if set_name == "Things":
        if nav == "Datastreams":
            return "Datastreams", list(cat.ds_by_pole.get(pole, []))
        target = {"Locations": "Locations", "HistoricalLocations": "HistoricalLocations"}[nav]
        return target, [x for x in [by[target].get(pole)] if x]
    if set_name in ("Locations", "HistoricalLocations"):
        if nav in ("Things", "Thing"):
            return "Things", [x for x in [by["Things"].get(pole)] if x]
        target = {"HistoricalLocations": "HistoricalLocations", "Locations": "Locations"}[nav]
        return target, [x for x in [by[target].get(pole)] if x]
    if set_name == "Sensors":
        return "Datastreams", list(cat.ds_by_sensor.get(e["@iot.id"], []))
    if set_name == "ObservedProperties":
        return "Datastreams", list(cat.ds_by_property.get(e["@iot.id"], []))
    if set_name == "Datastreams":
        if nav == "Observations":
            return "Observations", ObsSource(pole, e["_sensor"], e["_field"], (e["_kind"],))
        if nav == "Thing":
            return "Things", [x for x in [by["Things"].get(pole)] if x]
        if nav == "Sensor":
            sensor = by["Sensors"].get(SEP.join((pole, e["_sensor"])))
            return "Sensors", [sensor] if sensor else []
        prop = by["ObservedProperties"].get(e["_field"])
        return "ObservedProperties", [prop] if prop else []
    if set_name == "Observations":
        if nav == "Datastream":
            return "Datastreams", [cat.datastream(pole, e["_sensor"], e["_field"], e["_kind"])]
        return "FeaturesOfInterest", [x for x in [by["FeaturesOfInterest"].get(pole)] if x]
    if set_name == "FeaturesOfInterest":
        return "Observations", ObsSource(pole=pole)
    raise NotFound("no such navigation property")


def _resolver(cat: Catalogue, set_name: str, e: E) -> odata.Resolve:
    def resolve(path: tuple[str, ...]) -> list:
        return _values(cat, set_name, [e], path)

    return resolve


def _values(cat: Catalogue, set_name: str, entities: list[E], path: tuple[str, ...]) -> list:
    spec = SETS[set_name]
    head, rest = path[0], path[1:]
    if head in spec.navs:
        out: list = []
        for e in entities:
            target, found = related(cat, set_name, e, head)
            if isinstance(found, ObsSource):
                raise QueryError("a filter cannot reach through Observations here")
            if not rest:
                raise QueryError(f"{head} is a navigation property: name one of its properties")
            out += _values(cat, target, found, rest)
        return out
    if head not in spec.props:
        raise QueryError(f"{spec.plural} have no property {odata._short(head)}")
    out = []
    for e in entities:
        v = e.get(head)
        for seg in rest:
            v = v.get(seg) if isinstance(v, dict) else None
        out.append(_comparable(v))
    return out


def _comparable(v: object) -> object:
    if isinstance(v, dict) and v.get("type") == "Point":
        x, y = v["coordinates"]
        return Geo("Point", (float(x), float(y)))
    if isinstance(v, list):
        return None
    return v


def _sort_key(v: object) -> tuple:
    """Sorts any mix of values: nulls last, then by type, then by value."""
    if v is None:
        return (3, 0)
    if isinstance(v, bool):
        return (1, str(v))
    if isinstance(v, (int, float)):
        return (0, v)
    if isinstance(v, dt.datetime):
        return (0, v.timestamp())
    return (2, str(v))


def select_entities(cat: Catalogue, set_name: str, entities: list[E], o: Options) -> list[E]:
    """Filter and order a small set in memory."""
    if o.filter is not None:
        f = o.filter
        entities = [e for e in entities if odata.evaluate(f, _resolver(cat, set_name, e))]
    for path, desc in reversed(o.orderby):

        def key(e: E, path: tuple = path) -> tuple:
            vals = _values(cat, set_name, [e], path)
            return _sort_key(vals[0] if vals else None)

        entities = sorted(entities, key=key, reverse=desc)
    return entities


# -- rendering -----------------------------------------------------------------------------------
def link(base: str, set_name: str, key: str) -> str:
    return f"{base}/{set_name}('{quote(key, safe='~-._:@')}')"


def render(base: str, set_name: str, e: E, select: list[str] | None) -> dict:
    """An entity as JSON: its properties (or the selected ones), self link, navigation
    links."""
    spec = SETS[set_name]
    self_link = link(base, set_name, e["@iot.id"])
    out: dict[str, Any] = {}
    wanted = select or list(spec.props) + list(spec.navs)
    for name in wanted:
        if name == "@iot.id":
            out["@iot.id"] = e["@iot.id"]
            out["@iot.selfLink"] = self_link
        elif name in spec.navs:
            out[f"{name}@iot.navigationLink"] = f"{self_link}/{name}"
        elif name in e:
            out[name] = _json(e[name])
    if select is None:  # @iot.id and selfLink first, as the standard's examples show them
        out = {"@iot.id": out.pop("@iot.id"), "@iot.selfLink": out.pop("@iot.selfLink"), **out}
    return out


def _json(v: object) -> object:
    if isinstance(v, dt.datetime):
        return iso(v.timestamp())
    if isinstance(v, Interval):
        return f"{iso(v.start.timestamp())}/{iso(v.end.timestamp())}"
    return v


def check_select(set_name: str, select: list[str] | None) -> None:
    if select is None:
        return
    spec = SETS[set_name]
    for name in select:
        if name not in spec.props and name not in spec.navs:
            raise QueryError(f"{spec.plural} have no property {odata._short(name)} to select")


def check_expand(set_name: str, o: Options) -> None:
    """Refuse an $expand or $orderby naming what a set does not have, before any query."""
    spec = SETS[set_name]
    check_select(set_name, o.select)
    for path, _desc in o.orderby:
        if path[0] not in spec.props and path[0] not in spec.navs:
            raise QueryError(f"{spec.plural} have no property {odata._short(path[0])}")
    for ex in o.expand:
        current = spec
        for i, nav in enumerate(ex.path):
            if nav not in current.navs:
                raise QueryError(
                    f"{current.plural} have no navigation property {odata._short(nav)}"
                )
            target = SETS[current.navs[nav][0]]
            if i == len(ex.path) - 1:
                check_expand(target.plural, ex.options)
            current = target


# -- one request ---------------------------------------------------------------------------------
class Service:
    """Resolves a SensorThings URL path with its options to a JSON document.

    Args:
        reader: the store.
        catalogue: gives the current Catalogue.
    """

    def __init__(self, reader: db.Reader, catalogue: Callable[[], Catalogue]) -> None:
        self.reader = reader
        self.catalogue = catalogue

    def root(self, base: str) -> dict:
        return {
            "value": [{"name": name, "url": f"{base}/{name}"} for name in SETS],
            "serverSettings": {
                "conformance": [
                    "http://www.opengis.net/spec/iot_sensing/1.1/req/datamodel",
                    "http://www.opengis.net/spec/iot_sensing/1.1/req/resource-path/resource-path-to-entities",
                    "http://www.opengis.net/spec/iot_sensing/1.1/req/request-data",
                ]
            },
        }

    def get(self, base: str, path: str, o: Options, next_url: Callable[[int, int], str]) -> Any:
        """The document for ``path`` (below the service root); runs in a database thread."""
        cat = self.catalogue()
        segments = _segments(path)
        set_name, target = self._walk(cat, segments)
        if isinstance(target, tuple):  # ("value", v) or ("property", name, v)
            return target
        if isinstance(target, dict):
            check_expand(set_name, o)
            out = render(base, set_name, target, o.select)
            self._expand(cat, base, set_name, [target], [out], o.expand)
            return out
        check_expand(set_name, o)
        return self._collection(cat, base, set_name, target, o, next_url)

    def _walk(self, cat: Catalogue, segs: list[tuple[str, str | None]]):
        name, key = segs[0]
        if name not in SETS:
            raise NotFound(f"no entity set {odata._short(name)}; see the service root")
        set_name = name
        current: Any
        if name == "Observations":
            current = ObsSource()
            if key is not None:
                current = self._one_observation(parse_obs_id(key))
        else:
            current = cat.sets[name] if key is None else cat.get(name, key)
        for i, (seg, key) in enumerate(segs[1:], start=1):
            spec = SETS[set_name]
            if seg == "$value" and i == len(segs) - 1 and isinstance(current, tuple):
                return set_name, ("value", current[2])
            if isinstance(current, dict) and seg in spec.navs:
                target, found = related(cat, set_name, current, seg)
                collection = spec.navs[seg][1]
                set_name = target
                if isinstance(found, ObsSource):
                    current = found
                    if key is not None:
                        oid = parse_obs_id(key)
                        current = self._one_observation(oid, found)
                elif collection:
                    current = found
                    if key is not None:
                        current = next((e for e in found if e["@iot.id"] == key), None)
                        if current is None:
                            raise NotFound(f"no such {SETS[target].singular} there")
                else:
                    if key is not None or not found:
                        raise NotFound(f"no {SETS[target].singular} there")
                    current = found[0]
                continue
            if isinstance(current, dict) and key is None and seg in spec.props and seg in current:
                current = ("property", seg, _json(current[seg]))
                continue
            raise NotFound("no such path: navigate from one entity, by the names the standard uses")
        return set_name, current

    def _one_observation(self, oid: tuple, within: ObsSource | None = None) -> E:
        src = dataclasses.replace(within or ObsSource(), obs_id=oid)
        o = Options(top=1)
        sql, params = observations_sql(self.reader.dialect, src, o)
        rows = self.reader.store().query(sql, params)
        if not rows:
            raise NotFound("no Observation with that id")
        return observation_entity(rows[0])

    def _collection(self, cat, base, set_name, target, o: Options, next_url) -> dict:
        out: dict[str, Any] = {}
        if isinstance(target, ObsSource):
            if o.count:
                sql, params = observations_sql(self.reader.dialect, target, o, count=True)
                out["@iot.count"] = int(self.reader.store().query(sql, params)[0][0])
            sql, params = observations_sql(self.reader.dialect, target, o)
            rows = self.reader.store().query(sql, params)
            page = [observation_entity(r) for r in rows[: o.top]]
            more = len(rows) > o.top
        else:
            entities = select_entities(cat, set_name, list(target), o)
            if o.count:
                out["@iot.count"] = len(entities)
            page = entities[o.skip : o.skip + o.top]
            more = len(entities) > o.skip + o.top
        values = [render(base, set_name, e, o.select) for e in page]
        self._expand(cat, base, set_name, page, values, o.expand)
        if more and next_url is not None:
            out["@iot.nextLink"] = next_url(o.skip + o.top, o.top)
        out["value"] = values
        return out

    def _expand(self, cat, base, set_name, entities: list[E], docs: list[dict], expand) -> None:
        for ex in expand:
            nav, rest = ex.path[0], ex.path[1:]
            spec = SETS[set_name]
            target_set, collection = spec.navs[nav]
            options = ex.options
            if rest:  # Datastreams/Observations: Datastreams with Observations expanded
                options = Options(expand=[odata.Expand(rest, ex.options)], top=odata.MAX_TOP)
            for e, doc in zip(entities, docs, strict=True):
                target, found = related(cat, set_name, e, nav)
                doc.pop(f"{nav}@iot.navigationLink", None)
                if collection:
                    sub = self._collection(cat, base, target, found, options, None)
                    doc[nav] = sub["value"]
                    if "@iot.count" in sub:
                        doc[f"{nav}@iot.count"] = sub["@iot.count"]
                else:
                    items = found if isinstance(found, list) else []
                    if items:
                        rendered = render(base, target, items[0], options.select)
                        self._expand(cat, base, target, items[:1], [rendered], options.expand)
                        doc[nav] = rendered


def _segments(path: str) -> list[tuple[str, str | None]]:
    """``Things('a')/Datastreams`` as [("Things", "a"), ("Datastreams", None)]."""
    out: list[tuple[str, str | None]] = []
    if len(path) > 2000:
        raise NotFound("path too long")
    for seg in _split_path(path):
        if not seg:
            continue
        name, paren, rest = seg.partition("(")
        key: str | None = None
        if paren:
            if not rest.endswith(")"):
                raise NotFound("no such path: an id is written Things('nl-ams-0001')")
            inner = rest[:-1]
            if len(inner) >= 2 and inner[0] == inner[-1] == "'":
                key = inner[1:-1].replace("''", "'")
            elif inner.isdigit():
                key = inner
            else:
                raise NotFound("no such path: an id is written Things('nl-ams-0001')")
        out.append((name, key))
    if not out:
        raise NotFound("no entity set named")
    return out


def _split_path(path: str) -> Iterable[str]:
    """Split at '/' outside quoted ids."""
    buf: list[str] = []
    quote_open = False
    for c in path:
        if c == "'":
            quote_open = not quote_open
        if c == "/" and not quote_open:
            yield "".join(buf)
            buf = []
        else:
            buf.append(c)
    yield "".join(buf)


def next_link_factory(base_url: str, items: list[tuple[str, str]]) -> Callable[[int, int], str]:
    """``@iot.nextLink``: the same request with ``$skip`` moved on (and ``$top`` as used)."""

    def make(skip: int, top: int) -> str:
        kept = [(k, v) for k, v in items if k not in ("$skip", "$top")]
        return f"{base_url}?{urlencode(kept + [('$top', str(top)), ('$skip', str(skip))])}"

    return make
