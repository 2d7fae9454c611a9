"""The NGSI-LD export validates against the Smart Data Models' published JSON Schemas
(shipped in city/web/schemas/, every $ref resolved offline), on SQLite and PostgreSQL,
and says what the verifier accepted: the leaning pole's Streetlight has a column issue,
the failed lamp a defective lamp, the air and crowd values are the latest accepted."""

# ruff: noqa: F811  (pytest fixtures imported from tests/city_fixtures.py)

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.parse

import jsonschema
import pytest
import referencing
import referencing.exceptions
from referencing.jsonschema import DRAFT202012

from city.store import open_store
from city.web import ngsi
from tests.city_fixtures import pg_cluster, store_url  # noqa: F401  (fixtures)
from tests.city_web_fixtures import ROOT, Town, get, get_json, serving

SCHEMAS = ROOT / "city" / "web" / "schemas" / "smart-data-models"
ALIASES = {  # a second address a schema uses for a file shipped here
    "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/"
    "Environment-schema.json": "Environment-schema.json",
}


def _offline(uri: str) -> referencing.Resource:
    raise referencing.exceptions.NoSuchResource(uri)  # nothing is fetched


def registry() -> referencing.Registry:
    reg = referencing.Registry(retrieve=_offline)
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        reg = reg.with_resource(schema["$id"], DRAFT202012.create_resource(schema))
    for uri, name in ALIASES.items():
        schema = json.loads((SCHEMAS / name).read_text())
        reg = reg.with_resource(uri, DRAFT202012.create_resource(schema))
    return reg.crawl()


_CHECKER = jsonschema.FormatChecker(formats=())
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


@_CHECKER.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    """RFC 3339 date-time (what JSON Schema's "date-time" means), strictly."""
    if not isinstance(value, str):
        return True
    if not _TIME.fullmatch(value):
        raise ValueError(f"not an RFC 3339 date-time: {value}")
    dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


@_CHECKER.checks("uri", raises=ValueError)
def _uri(value: object) -> bool:
    if isinstance(value, str) and not urllib.parse.urlsplit(value).scheme:
        raise ValueError(f"not an absolute URI: {value}")
    return True


def validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry(), format_checker=_CHECKER)


def test_the_shipped_schemas_are_complete_and_say_their_source_and_licence():
    names = {p.name for p in SCHEMAS.glob("*.json")}
    for kind in ngsi.TYPES:
        assert f"{kind}.schema.json" in names
    reg = registry()
    for kind in ngsi.TYPES:  # every $ref of every model resolves to a shipped file
        validator(kind).validate  # noqa: B018
        schema = json.loads((SCHEMAS / f"{kind}.schema.json").read_text())
        for ref in re.findall(r'"\$ref":\s*"([^"]+)"', json.dumps(schema)):
            reg.resolver().lookup(ref)
    source = (SCHEMAS / "SOURCE.md").read_text()
    assert "CC BY 4.0" in source and all(n in source for n in names)
    assert "Attribution 4.0" in (SCHEMAS / "LICENCE.md").read_text()


def test_the_validator_can_fail():
    """A control: a Streetlight with a status the model does not know is refused."""
    good = {
        "id": "urn:ngsi-ld:Streetlight:x",
        "type": "Streetlight",
        "status": "ok",
        "location": {"type": "Point", "coordinates": [5.47, 51.44]},
    }
    validator("Streetlight").validate(good)
    for bad in (
        {**good, "status": "leaning"},
        {**good, "location": {"type": "Point"}},
        {**good, "observationDateTime": "yesterday"},
        {k: v for k, v in good.items() if k != "status"},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validator("Streetlight").validate(bad)


@pytest.fixture
def served(store_url: str):
    store = open_store(store_url)
    store.migrate()
    town = Town(windows=4)
    town.write(store)
    store.close()
    with serving(store_url, poles=3) as web:
        yield web, town


def test_every_entity_validates_and_says_what_was_accepted(served):
    web, town = served
    base = f"{web.url}/ngsi-ld/v1/entities"
    seen = {}
    for kind in ngsi.TYPES:
        entities = get_json(f"{base}?type={kind}&options=keyValues&limit=100")
        assert len(entities) == 3, (kind, entities)
        check = validator(kind)
        for e in entities:
            errors = sorted(check.iter_errors(e), key=lambda x: x.path)
            assert not errors, (kind, [(list(x.path), x.message) for x in errors])
            seen[(kind, e["name"])] = e
    p1, p2, p3 = (p.pole_id for p in town.poles)
    assert seen[("Streetlight", p1)]["status"] == "ok"
    assert seen[("Streetlight", p2)]["status"] == "columnIssue"  # the truck
    assert seen[("Streetlight", p3)]["status"] == "defectiveLamp"
    assert seen[("Streetlight", p3)]["powerState"] == "off"
    last = town.records(p1, "data")[-1]
    air = seen[("AirQualityObserved", p1)]
    assert air["pm25"] == last["sds011/pm2_5/mean"] and air["pm10"] == last["sds011/pm10/mean"]
    assert air["relativeHumidity"] == last["bme280/humidity/mean"] / 100
    weather = seen[("WeatherObserved", p1)]
    assert weather["atmosphericPressure"] == last["bme280/pressure/mean"] / 100  # hPa
    crowd = seen[("CrowdFlowObserved", p1)]
    bins = town.records(p1, "counts")
    assert crowd["peopleCount"] == bins[-1]["ld2450/people/count"]
    assert seen[("TrafficFlowObserved", p1)]["vehicleType"] == "bicycle"


def test_normalized_form_and_the_standards_errors(served):
    web, town = served
    base = f"{web.url}/ngsi-ld/v1/entities"
    pole = town.poles[1].pole_id
    one = get_json(f"{base}/urn:ngsi-ld:Streetlight:{pole}")
    assert one["type"] == "Streetlight" and one["status"]["type"] == "Property"
    assert one["status"]["value"] == "columnIssue" and one["location"]["type"] == "GeoProperty"
    air = get_json(f"{base}/urn:ngsi-ld:AirQualityObserved:{pole}")
    assert air["pm25"]["verifiedBy"]["value"].startswith("verified, key ")
    assert air["pm25"]["observedAt"].endswith("Z")
    for query, status, kind in (
        ("", 400, "BadRequestData"),
        ("?type=StreetLamp", 400, "BadRequestData"),
        ("?type=Streetlight&limit=-1", 400, "BadRequestData"),
        ("?type=Streetlight&q=status==ok", 400, "BadRequestData"),
        ("?type=Streetlight&type=Streetlight", 400, "BadRequestData"),
        ("/urn:ngsi-ld:Streetlight:nope", 404, "ResourceNotFound"),
        ("/not-an-urn", 404, "ResourceNotFound"),
    ):
        code, _h, body = get(base + query)
        doc = json.loads(body)
        assert code == status and doc["type"].endswith(kind), (query, code, doc)
