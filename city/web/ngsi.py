"""NGSI-LD export: the poles and their latest readings as FIWARE Smart Data Models entities.

Per located pole, the entities its sensors support, each as of its latest window:

| entity type | from |
|---|---|
| ``Streetlight`` | status (``columnIssue``: it leans; ``defectiveLamp``: lamp failed), lamp |
| ``AirQualityObserved`` | PM1, PM2.5, PM10 (SDS011, PMS5003), temperature and humidity |
| ``WeatherObserved`` | temperature, relative humidity (0..1), pressure (hPa) |
| ``CrowdFlowObserved`` | people per bin, after the pole's privacy gate |
| ``TrafficFlowObserved`` | bicycles per bin (``vehicleType`` bicycle) |

The type is spelled as the published schema spells it: the Smart Data Models renamed
``StreetLight`` to ``Streetlight``. ``/ngsi-ld/v1/entities?type=T`` answers the
normalized form (``Property`` / ``GeoProperty`` with ``observedAt``) or, with
``options=keyValues``, the simplified form that the models' JSON Schemas describe
(city/web/schemas/, validated in tests/test_city_web_ngsi.py). Errors are NGSI-LD
problem details (``BadRequestData``, ``ResourceNotFound``).
"""

from __future__ import annotations

import time
from typing import Any

from city.web import db
from city.web.fleet import View, fingerprint
from city.web.sta import iso

TYPES = (
    "Streetlight",
    "AirQualityObserved",
    "WeatherObserved",
    "CrowdFlowObserved",
    "TrafficFlowObserved",
)
CONTEXT = [
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Streetlighting/master/context.jsonld",
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld",
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld",
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Transportation/master/context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
]
ERRORS = "https://uri.etsi.org/ngsi-ld/errors/"
LAMP_ON_A = 0.1  # lamp current above which the lamp counts as on
STATUS = {  # alarm -> Streetlight status, the first present wins
    "pole_tilted": "columnIssue",
    "lamp_failed": "defectiveLamp",
    "lamp_degraded": "defectiveLamp",
}


class NgsiError(Exception):
    def __init__(self, status: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail

    def body(self) -> dict:
        return {"type": ERRORS + self.kind, "title": self.kind, "detail": self.detail}


def entity_id(kind: str, pole_id: str) -> str:
    return f"urn:ngsi-ld:{kind}:{pole_id}"


class Latest:
    """Every pole's newest reading of each series and newest bin of each count."""

    def __init__(self, reader: db.Reader, lookback_s: float) -> None:
        since = db.tparam(reader.dialect, time.time() - lookback_s)
        self.values: dict[str, dict[tuple[str, str], tuple]] = {}
        for pole, sensor, field, unit, t, _w, mean, _lo, _hi, n, kid in reader.pick(
            db.LATEST_ALL, {"since": since}
        ):
            if mean is not None and n:
                self.values.setdefault(pole, {})[(sensor, field)] = (
                    float(mean),
                    db.epoch(t),
                    bytes(kid),
                    unit,
                )
        self.counts: dict[str, dict[tuple[str, str], tuple]] = {}
        for pole, sensor, field, t, bin_s, count, supp, kid in reader.pick(
            db.LATEST_COUNTS_ALL, {"since": since}
        ):
            end = db.epoch(t) or 0.0
            self.counts.setdefault(pole, {})[(sensor, field)] = (
                int(count),
                end - int(bin_s or 0),
                end,
                bool(supp),
                bytes(kid),
            )

    def field(self, pole: str, field: str, models: tuple[str, ...] = ()) -> tuple | None:
        """The newest (value, t, kid, unit) of ``field`` on any sensor of the pole (or of a
        sensor named one of ``models``)."""
        best = None
        for (sensor, f), v in self.values.get(pole, {}).items():
            newer = best is None or (v[1] or 0) > (best[1] or 0)
            if f == field and (not models or sensor in models) and newer:
                best = v
        return best


def entities(fleet: View, latest: Latest, kind: str | None, owner: str, public_url: str):
    """Every entity (of one type, or all), as key-value dicts with hidden times."""
    out = []
    for pole_id in sorted(fleet.poles):
        p = fleet.poles[pole_id]
        if p.lat is None or p.lon is None:
            continue  # every one of these models places its entity
        common = {
            "location": {"type": "Point", "coordinates": [p.lon, p.lat]},
            "dataProvider": owner,
            "source": f"{public_url}/{pole_id}",
        }
        for make in (_streetlight, _air, _weather, _crowd, _traffic):
            e = make(fleet, latest, p, common)
            if e is not None and (kind is None or e["type"] == kind):
                out.append(e)
    return out


def _observed(e: dict, values: dict[str, tuple]) -> dict:
    """Attach the observation times and keys (used by the normalized form)."""
    e["_observed"] = {k: (v[1], v[2]) for k, v in values.items()}
    return e


def _streetlight(fleet: View, latest: Latest, p, common: dict) -> dict | None:
    status = next((STATUS[a] for a in STATUS if a in p.alarms), "ok")
    e: dict[str, Any] = {
        "id": entity_id("Streetlight", p.pole_id),
        "type": "Streetlight",
        "name": p.pole_id,
        **common,
        "status": status,
    }
    found = {}
    for attr, field in (
        ("current", "current"),
        ("voltage", "voltage"),
        ("powerConsumption", "power"),
    ):
        v = latest.field(p.pole_id, field, ("ina219", "ina226"))
        if v is not None:
            e[attr] = round(v[0], 4)
            found[attr] = v
    if "current" in found:
        e["powerState"] = "on" if found["current"][0] > LAMP_ON_A else "off"
    if p.health_t is not None:
        e["observationDateTime"] = iso(p.health_t)
        found["status"] = (None, p.health_t, p.health_kid)
    return _observed(e, found)


def _air(fleet: View, latest: Latest, p, common: dict) -> dict | None:
    found = {}
    for attr, field in (("pm1", "pm1_0"), ("pm25", "pm2_5"), ("pm10", "pm10")):
        v = latest.field(p.pole_id, field)
        if v is not None:
            found[attr] = v
    if not found:
        return None
    for attr, field in (("temperature", "temperature"), ("relativeHumidity", "humidity")):
        v = latest.field(p.pole_id, field)
        if v is not None:
            found[attr] = v
    return _with_values("AirQualityObserved", p.pole_id, common, found)


def _weather(fleet: View, latest: Latest, p, common: dict) -> dict | None:
    found = {}
    for attr, field in (
        ("temperature", "temperature"),
        ("relativeHumidity", "humidity"),
        ("atmosphericPressure", "pressure"),
    ):
        v = latest.field(p.pole_id, field)
        if v is not None:
            found[attr] = v
    if not found:
        return None
    return _with_values("WeatherObserved", p.pole_id, common, found)


def _with_values(kind: str, pole_id: str, common: dict, found: dict[str, tuple]) -> dict:
    e: dict[str, Any] = {"id": entity_id(kind, pole_id), "type": kind, "name": pole_id, **common}
    newest = max((v[1] or 0.0) for v in found.values())
    e["dateObserved"] = iso(newest)
    for attr, v in found.items():
        value = v[0]
        if attr == "relativeHumidity":
            value = min(1.0, max(0.0, value / 100.0))  # %RH as the models' 0..1
        elif attr == "atmosphericPressure":
            value = value / 100.0  # Pa as hPa
        elif attr in ("pm1", "pm25", "pm10"):
            value = max(0.0, value)
        e[attr] = round(value, 4)
    return _observed(e, found)


def _bin_entity(kind: str, attr: str, latest: Latest, p, common: dict, field: str, extra: dict):
    best = None
    for (_sensor, f), v in latest.counts.get(p.pole_id, {}).items():
        if f == field and (best is None or v[2] > best[2]):
            best = v
    if best is None:
        return None
    count, start, end, suppressed, kid = best
    e: dict[str, Any] = {
        "id": entity_id(kind, p.pole_id),
        "type": kind,
        "name": p.pole_id,
        **common,
        "dateObserved": f"{iso(start)}/{iso(end)}",
        "dateObservedFrom": iso(start),
        "dateObservedTo": iso(end),
        attr: count,
        **extra,
    }
    if suppressed:
        e["description"] = "fewer than k counted in this bin: published as 0 (suppressed)"
    return _observed(e, {attr: (count, end, kid)})


def _crowd(fleet: View, latest: Latest, p, common: dict) -> dict | None:
    return _bin_entity("CrowdFlowObserved", "peopleCount", latest, p, common, "people", {})


def _traffic(fleet: View, latest: Latest, p, common: dict) -> dict | None:
    extra = {"vehicleType": "bicycle"}
    return _bin_entity("TrafficFlowObserved", "intensity", latest, p, common, "bicycles", extra)


def key_values(e: dict) -> dict:
    return {k: v for k, v in e.items() if not k.startswith("_")}


def normalized(e: dict) -> dict:
    """The NGSI-LD normalized form: each attribute a Property (with ``observedAt`` and the
    key that signed it, where known), the location a GeoProperty."""
    observed = e.get("_observed", {})
    out: dict[str, Any] = {"id": e["id"], "type": e["type"]}
    for k, v in e.items():
        if k in ("id", "type") or k.startswith("_"):
            continue
        if k == "location":
            out[k] = {"type": "GeoProperty", "value": v}
            continue
        prop: dict[str, Any] = {"type": "Property", "value": v}
        if k in observed:
            t, kid = observed[k]
            if t:
                prop["observedAt"] = iso(t)
            if kid:
                prop["verifiedBy"] = {
                    "type": "Property",
                    "value": f"verified, key {fingerprint(kid)}",
                }
        out[k] = prop
    return out


def query(
    fleet: View,
    reader: db.Reader,
    params: dict[str, str],
    *,
    owner: str,
    public_url: str,
    lookback_s: float,
) -> list[dict]:
    """``GET /ngsi-ld/v1/entities``: ``type`` (one of TYPES), optional ``id`` (comma
    separated), ``options=keyValues``, ``limit`` (at most 1000) and ``offset``."""
    allowed = {"type", "id", "options", "limit", "offset"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise NgsiError(400, "BadRequestData", "unknown parameter; use type, id, options, limit")
    kind = params.get("type")
    if kind is None and "id" not in params:
        raise NgsiError(400, "BadRequestData", "give type (or id): " + ", ".join(TYPES))
    if kind is not None and kind not in TYPES:
        raise NgsiError(400, "BadRequestData", "type must be one of " + ", ".join(TYPES))
    limit = _int(params.get("limit", "20"), "limit", 1, 1000)
    offset = _int(params.get("offset", "0"), "offset", 0, 2**31)
    options = params.get("options", "")
    if options not in ("", "keyValues", "normalized"):
        raise NgsiError(400, "BadRequestData", "options must be keyValues or normalized")
    latest = Latest(reader, lookback_s)
    found = entities(fleet, latest, kind, owner, public_url)
    if "id" in params:
        ids = set(params["id"].split(","))
        found = [e for e in found if e["id"] in ids]
    page = found[offset : offset + limit]
    form = key_values if options == "keyValues" else normalized
    return [form(e) for e in page]


def _int(text: str, name: str, lo: int, hi: int) -> int:
    if not text.isdigit() or len(text) > 12 or not text.isascii():
        raise NgsiError(400, "BadRequestData", f"{name} must be a whole number")
    return max(lo, min(hi, int(text)))
