"""The city's SensorThings API, read by a third-party client (frost-sta-client, from
PyPI) from the running service (uvicorn on a free port), on SQLite and on a real
PostgreSQL: Things, Datastreams and Observations with filters and paging equal what
the city's verifier accepted; hostile query strings get the standard's 400, never a
stack trace, and reach the database only as bound parameters."""

# ruff: noqa: F811  (pytest fixtures imported from tests/city_fixtures.py)

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.error
import urllib.parse
import urllib.request

import frost_sta_client as fsc
import pytest

from city.store import open_store
from tests.city_fixtures import pg_cluster, store_url  # noqa: F401  (fixtures)
from tests.city_web_fixtures import Town, get, get_json, serving


@pytest.fixture
def town_url(store_url: str):
    """A store holding the Town's signed messages, and the Town."""
    store = open_store(store_url)
    store.migrate()
    town = Town()
    town.write(store)
    store.close()
    return store_url, town


def _utc(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_sensorthings_client_reads_what_the_verifier_accepted(town_url):
    url, town = town_url
    with serving(url, poles=3) as web:
        service = fsc.SensorThingsService(web.url + "/v1.1")
        things = list(service.things().query().list())
        assert sorted(t.id for t in things) == [p.pole_id for p in town.poles]
        (tilted,) = list(service.things().query().filter("name eq 'nl-ehv-00002'").list())
        assert tilted.properties["state"] == "alarm" and tilted.properties["alarms"] == [
            "pole_tilted"
        ]
        pm = list(service.datastreams().query().filter("ObservedProperty/name eq 'pm2_5'").list())
        assert sorted(d.id for d in pm) == [f"{p.pole_id}~sds011~pm2_5" for p in town.poles]
        assert {d.unit_of_measurement.symbol for d in pm} == {"µg/m³"}

        # Observations of one series, filtered and paged two at a time (@iot.nextLink):
        pole = town.poles[0].pole_id
        (ds,) = [d for d in pm if d.id.startswith(pole)]
        query = (
            ds.get_observations()
            .query()
            .filter("result ge 12.0")
            .orderby("phenomenonTime", "asc")
            .top(2)
        )
        got = [
            (
                _utc(o.result_time),
                o.result,
                o.parameters["min"],
                o.parameters["max"],
                o.parameters["count"],
            )
            for o in query.list()
        ]
        want = [w for w in want_all(town, pole) if w[1] >= 12.0]
        assert len(got) == len(want) >= 3  # more than one page
        assert got == want

        # Counts: the protected count as accepted, with the suppressed flag.
        people = list(
            service.observations()
            .query()
            .filter(f"Datastream/@iot.id eq '{pole}~ld2450~people'")
            .orderby("resultTime", "asc")
            .list()
        )
        accepted = [r["ld2450/people/count"] for r in town.records(pole, "counts")]
        assert [o.result for o in people] == accepted
        assert all(o.parameters["suppressed"] is False for o in people)
        # Each value says which key signed it.
        key = town.poles[0].signer.kid.hex()
        assert {o.parameters["verification"]["kid"] for o in people} == {key}


def want_all(town: Town, pole: str) -> list[tuple]:
    """(window end, mean, min, max, count) of PM2.5 of every data message of a pole, as the
    verifier accepted them, in time order."""
    out = []
    for _topic, v, _raw in town.accepted:
        if v.pole_id != pole or v.kind != "data":
            continue
        by = {r[0][len(pole) + 1 :]: r for r in v.records}
        mean = by["sds011/pm2_5/mean"]
        out.append(
            (
                mean[3],
                mean[2],
                by["sds011/pm2_5/min"][2],
                by["sds011/pm2_5/max"][2],
                by["sds011/pm2_5/count"][2],
            )
        )
    return sorted(out)


def test_navigation_expand_select_count_and_paging(town_url):
    url, town = town_url
    with serving(url, poles=3) as web:
        base = web.url + "/v1.1"
        pole = town.poles[1].pole_id

        def q(path: str, **params: str) -> dict:
            query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
            return get_json(f"{base}/{urllib.parse.quote(path, safe='/()~')}?{query}")

        thing = q(
            f"Things('{pole}')",
            **{"$expand": "Locations,Datastreams($filter=properties/sensor eq 'lis3dh';"
               "$expand=Observations($top=1;$orderby=resultTime desc))"},
        )  # fmt: skip
        assert thing["Locations"][0]["location"]["coordinates"] == [
            town.poles[1].lon,
            town.poles[1].lat,
        ]
        tilt = next(d for d in thing["Datastreams"] if d["@iot.id"].endswith("~tilt"))
        assert tilt["Observations"][0]["result"] == 14.0  # the truck: the latest window leans
        assert tilt["unitOfMeasurement"]["symbol"] == "°"
        page = q("Things", **{"$select": "name", "$top": "1", "$count": "true"})
        assert page["@iot.count"] == 3 and page["value"] == [{"name": town.poles[0].pole_id}]
        nxt = get_json(page["@iot.nextLink"])
        assert nxt["value"] == [{"name": town.poles[1].pole_id}]
        assert q(f"Datastreams('{pole}~sds011~pm2_5')/Thing")["@iot.id"] == pole
        assert q(f"Things('{pole}')/name") == {"name": pole}
        status, _h, body = get(f"{base}/Things('{pole}')/name/$value")
        assert status == 200 and body.decode() == pole
        both = f"Datastream/Thing/@iot.id eq '{pole}' and parameters/count eq 2"
        obs = q("Observations", **{"$filter": both, "$count": "true", "$top": "1"})
        assert obs["@iot.count"] == town.windows * 2  # PM2.5 and PM10: two samples a window
        one = obs["value"][0]
        again = q(f"Observations('{one['@iot.id']}')")
        assert again["result"] == one["result"]
        assert q(f"Observations('{one['@iot.id']}')/Datastream")["@iot.id"].startswith(pole)
        near = q("Locations", **{"$filter": "st_within(location, geography'POLYGON((5.469 "
                                "51.441, 5.4701 51.441, 5.4701 51.442, 5.469 51.442, 5.469 "
                                "51.441))')"})  # fmt: skip
        assert [loc["@iot.id"] for loc in near["value"]] == [town.poles[0].pole_id]
        props = q("ObservedProperties", **{"$orderby": "name desc", "$top": "2"})
        assert [p["name"] for p in props["value"]] == ["voltage", "tilt"]
        late = q("Observations", **{"$filter": "phenomenonTime ge now() sub duration'P1D' "
                                    "and year(resultTime) ge 2026 and result lt 0"})  # fmt: skip
        assert late["value"] == []


HOSTILE = [
    ("$filter", "result gt"),
    ("$filter", "result gt 'a"),
    ("$filter", "(" * 200 + "result gt 1" + ")" * 200),
    ("$filter", "not " * 100 + "true"),
    ("$filter", "result gt 1; DROP TABLE observations"),
    ("$filter", "result eq 'x'"),
    ("$filter", "nosuchproperty eq 1"),
    ("$filter", "pg_sleep(10) eq 1"),
    ("$filter", "result eq 1e999"),
    ("$filter", "result eq 99999999999999999999999999"),
    ("$filter", "resultTime gt 2026-13-45T99:00:00Z"),
    ("$filter", "\x00"),
    ("$filter", "x" * 5000),
    ("$top", "-1"),
    ("$top", "1.5"),
    ("$top", "ten"),
    ("$skip", "-5"),
    ("$count", "maybe"),
    ("$orderby", "result sideways"),
    ("$orderby", "result; DROP TABLE observations"),
    ("$select", "result,*"),
    ("$expand", "Datastream(" * 20),
    ("$expand", "NoSuchThing"),
    ("$expand", "Datastream($top=x)"),
    ("$format", "json"),
    ("$resultFormat", "dataArray"),
]


def test_hostile_query_options_get_the_standards_400(town_url):
    url, _town = town_url
    with serving(url, poles=3) as web:
        for name, value in HOSTILE:
            query = urllib.parse.urlencode({name: value})
            status, _headers, body = get(f"{web.url}/v1.1/Observations?{query}")
            assert status == 400, (name, value[:40], body[:300])
            doc = json.loads(body)
            assert doc["code"] == 400 and doc["type"] == "error" and doc["message"]
            message = doc["message"]
            assert "Traceback" not in message and "SELECT" not in message, message
            # Only a short, printable name is ever repeated (edge.names.describe's rule).
            assert value[:41] not in message or (len(value) <= 40 and value.isprintable())
        status, _h, body = get(f"{web.url}/v1.1/Observations?%24top=1")
        assert status == 200  # the tables are all there


def test_literals_are_bound_a_huge_top_is_capped_and_unknown_paths_are_404(town_url):
    url, town = town_url
    with serving(url, poles=3) as web:
        base = web.url + "/v1.1"
        evil = "x''); DROP TABLE observations; --"  # a quote inside a literal is doubled
        query = urllib.parse.urlencode({"$filter": f"Datastream/@iot.id eq '{evil}'"})
        assert get_json(f"{base}/Observations?{query}")["value"] == []
        query = urllib.parse.urlencode({"$filter": f"name eq '{evil}'"})
        assert get_json(f"{base}/Things?{query}")["value"] == []
        page = get_json(f"{base}/Observations?%24top=" + "9" * 60)
        assert len(page["value"]) == 1000 and "@iot.nextLink" in page  # capped, not refused
        assert "%24top=1000" in page["@iot.nextLink"]
        total = get_json(f"{base}/Observations?%24count=true&%24top=0")["@iot.count"]
        n_data = sum(len(p.series) for p in town.poles) * town.windows
        assert total == n_data + 3 * 4 * 2  # every window and every count bin
        for path in ("Nothing", "Things('nope')", "Things('a'')/Datastreams",
                     "Observations('zz~00~a~b')", "Things(1)/Nowhere", "Things('x'"):  # fmt: skip
            status, _h, body = get(f"{base}/{urllib.parse.quote(path, safe='/()')}")
            assert status == 404 and json.loads(body)["code"] == 404, (path, body)
        req = urllib.request.Request(f"{base}/Things", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=5)
        assert err.value.code == 405


def test_the_serve_command_runs_the_service_and_refuses_bad_options(town_url):
    import signal
    import subprocess
    import sys

    from city.devdb import free_port
    from tests.city_web_fixtures import ROOT

    url, _town = town_url
    port = free_port()
    public = "https://data.city.example/poles"
    cmd = [sys.executable, "-m", "city.cli", "serve", "--db", url, "--port", str(port),
           "--public-url", public, "--owner", "Gemeente Eindhoven"]  # fmt: skip
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        assert first.strip() == f"map: http://127.0.0.1:{port}/map", first
        deadline = time.monotonic() + 30
        while True:
            status, _h, body = get(f"http://127.0.0.1:{port}/v1.1/Things")
            if status == 200 and len(json.loads(body)["value"]) == 3:
                break
            assert time.monotonic() < deadline, body[:300]
            time.sleep(0.2)
        thing = json.loads(body)["value"][0]
        assert thing["properties"]["owner"] == "Gemeente Eindhoven"
        assert thing["properties"]["publicPage"].startswith("https://data.city.example/poles/")
    finally:
        p.send_signal(signal.SIGTERM)
        _out, err = p.communicate(timeout=30)
    assert p.returncode == 0 and "Traceback" not in err, err[-2000:]
    r = subprocess.run([sys.executable, "-m", "city.cli", "serve", "--db", url, "--refresh", "0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode != 0 and "--refresh must be" in r.stderr and "Traceback" not in r.stderr
