"""The live map in a real browser (Debian's headless Chromium, driven by Selenium) during
a simulated incident: simulated poles (the real edge daemon) publish to a real
Mosquitto, the city's ingest worker stores what it verifies, the web service serves
the map. A truck knocks a pole over: the map shows it in alarm within one window;
clicking a pole, or choosing one with the keyboard, shows its readings (each with the
key that verified it) and a chart of its day; axe-core finds no serious or critical
accessibility violation on the map or on a pole's public page. Screenshots are saved
as test artefacts (build/test-artefacts/city-web/).

The demo (``pole-sim demo``) prints its map's URL, and the map shows the demo's poles
with the truck and the failing lamp."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from city.web.live import LiveCity
from host_sim.pole import SimPole
from host_sim.world import World
from provisioning.trustlist import TrustList
from tests.city_web_fixtures import ROOT, axe, chromium, get, get_json, need_browser, save_picture

pytestmark = pytest.mark.broker
WINDOW = 3  # s: the pole-knocked scenario's window (host_sim/scenarios.py)
REFRESH = 1.0  # s: how often the service reads the store (city/web/app.py Settings)


def _serious(violations: list[dict]) -> list[dict]:
    return [v for v in violations if v["impact"] in ("serious", "critical")]


def _state(driver, pole_id: str) -> str | None:
    return driver.execute_script(
        "const m = document.querySelector(`#markers [data-pole='${arguments[0]}']`);"
        "return m ? m.getAttribute('data-state') : null;",
        pole_id,
    )


async def _until(cond, timeout: float, what: str, step: float = 0.1) -> float:
    """Wait (letting the poles run) until ``cond()``; the monotonic time it held."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(step)
    return time.monotonic()


def test_the_map_shows_a_knocked_pole_in_alarm_within_one_window(mosquitto, tmp_path):
    need_browser()
    asyncio.run(_incident(mosquitto.url, tmp_path))


async def _incident(broker: str, work: Path) -> None:
    prefix = "web" + os.urandom(3).hex()
    world = World(seed=7)
    trust = TrustList(work / "trust.sqlite")
    poles = []
    for i in range(3):
        pid = f"nl-ehv-{i + 1:05d}"
        where = {"location": {"lat": 51.4416, "lon": 5.4697 + i * 0.00058}}
        sp = SimPole(pid, work / pid, broker, world.pole(i), window_s=WINDOW, health_s=1,
                     topic_prefix=prefix, sensors="full", config_overrides=where)  # fmt: skip
        trust.add(pid, sp.identity.public_key)
        poles.append(sp)
    trust.close()
    city = LiveCity(work, broker, work / "trust.sqlite", prefix=prefix, silent_after_s=30)
    map_url = await city.start()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(p.run(stop)) for p in poles]
    knocked, standing = poles[0], poles[1]
    try:
        with chromium() as driver:
            driver.get(map_url)

            def tilting(p: SimPole) -> bool:  # the LIS3DH averages 5 s: wait for its windows
                _s, _h, body = get(f"{city.url}/api/poles/{p.pole_id}")
                rows = json.loads(body).get("readings", []) if _s == 200 else []
                return any(r["sensor"] == "lis3dh" and r["count"] for r in rows)

            await _until(lambda: all(tilting(p) for p in poles), 60, "tilt readings", 0.5)
            await _until(
                lambda: all(_state(driver, p.pole_id) == "ok" for p in poles), 20, "all ok"
            )
            assert "1 ok" not in driver.find_element("id", "status").text  # three, live

            hit_wall, hit = time.time(), time.monotonic()
            knocked.world.tilt_deg = 14.0  # the truck
            seen = await _until(
                lambda: _state(driver, knocked.pole_id) == "alarm", 30, "the alarm on the map"
            )
            # The alarm was signed within one window of the impact (the pole's clock is
            # the wall clock here), and the map showed it within that window plus one
            # refresh of the service and a second of transport.
            pole = get_json(f"{city.url}/api/poles/{knocked.pole_id}")["pole"]
            (alarm,) = [a for a in pole["alarms"] if a["alarm"] == "pole_tilted"]
            print(f"alarm signed {alarm['since'] - hit_wall:.2f} s, on the map {seen - hit:.2f} s "
                  "after the impact")  # fmt: skip
            assert alarm["since"] - hit_wall <= WINDOW, (alarm, hit_wall)
            assert seen - hit <= WINDOW + REFRESH + 1.0, seen - hit
            assert _state(driver, standing.pole_id) == "ok"
            log = driver.find_element("id", "alarm-log").text
            assert f"{knocked.pole_id}: pole_tilted raised" in log

            # Click the knocked pole: its readings, each verified with its key, and charts.
            driver.find_element("css selector", f"#markers [data-pole='{knocked.pole_id}']").click()
            info = _detail(driver, knocked.pole_id)
            assert "pole_tilted" in info["text"]
            assert {"lis3dh/tilt", "sds011/pm2_5", "bme280/temperature"} <= set(info["series"])
            assert f"verified, key {knocked.identity.fingerprint}" in info["text"]
            assert info["charts"] >= len(info["series"]) - 1
            assert info["tiltLine"] and "lis3dh tilt:" in info["tiltCaption"]
            save_picture(driver, "city-map.png", full=False)
            violations = axe(driver)
            assert not _serious(violations), violations

            # The keyboard: from the knocked pole, the arrow key east reaches its
            # neighbour, Enter shows it.
            from selenium.webdriver.common.keys import Keys

            marker = driver.find_element(
                "css selector", f"#markers [data-pole='{knocked.pole_id}']"
            )
            driver.execute_script("arguments[0].focus()", marker)
            marker.send_keys(Keys.ARROW_RIGHT)
            focused = driver.switch_to.active_element.get_attribute("data-pole")
            assert focused == standing.pole_id
            driver.switch_to.active_element.send_keys(Keys.ENTER)
            assert "No open alarms" in _detail(driver, standing.pole_id)["text"]
            assert driver.switch_to.active_element.get_attribute("id") == "detail"  # focus moved
            # ... and the list of poles is a table of buttons, in tab order.
            driver.find_element(
                "css selector", f"#poles button[data-pole='{poles[2].pole_id}']"
            ).send_keys(Keys.ENTER)
            _detail(driver, poles[2].pole_id)

            # The public page of the knocked pole, as its label's QR code opens it.
            driver.get(f"{city.url}/poles/{knocked.pole_id}?fp={knocked.identity.fingerprint}")
            assert "is the key the city trusts" in driver.find_element("id", "label-check").text
            save_picture(driver, "city-pole-page.png")
            violations = axe(driver)
            assert not _serious(violations), violations
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await city.stop()


def _detail(driver, pole_id: str) -> dict:
    """What the detail panel shows once it shows ``pole_id``, read in one step (the
    panel is redrawn as new windows arrive)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 15).until(
        lambda d: (
            d.find_element("id", "detail").get_attribute("data-pole") == pole_id
            and d.find_elements("css selector", "#detail table.readings")
        )
    )
    return driver.execute_script(
        """
        const d = document.getElementById("detail");
        const tilt = d.querySelector("figure.chart[data-series='lis3dh/tilt']");
        return {
          text: d.innerText,
          series: [...d.querySelectorAll("table.readings tr[data-series]")]
                    .map(r => r.getAttribute("data-series")),
          charts: d.querySelectorAll("figure.chart").length,
          tiltLine: !!(tilt && tilt.querySelector("polyline.line")),
          tiltCaption: tilt ? tilt.querySelector("figcaption").textContent : "",
        };
        """
    )


def test_the_demo_prints_its_map_and_shows_the_truck_and_the_lamp(tmp_path):
    """``pole-sim demo --at 21:00`` (lamps on): the printed map URL answers while the demo
    runs, with the three demo poles, the truck's pole_tilted and the lamp_failed."""
    p = subprocess.Popen(
        [sys.executable, "-m", "host_sim.cli", "demo", "--at", "21:00", "--duration", "40",
         "--window", "2", "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert p.stdout is not None
    try:
        url = None
        for line in p.stdout:
            m = re.match(r"map: (http://\S+/map)", line)
            if m:
                url = m.group(1)
                break
        assert url, "the demo printed no map URL"
        base = url.rsplit("/", 1)[0]
        deadline = time.monotonic() + 60
        while True:
            poles = {q["id"]: q for q in get_json(f"{base}/api/poles")["poles"]}
            alarms = {pid: {a["alarm"] for a in q["alarms"]} for pid, q in poles.items()}
            if "pole_tilted" in alarms.get("nl-demo-0002", ()) and "lamp_failed" in alarms.get(
                "nl-demo-0003", ()
            ):
                break
            assert time.monotonic() < deadline, poles
            time.sleep(0.5)
        assert set(poles) == {"nl-demo-0001", "nl-demo-0002", "nl-demo-0003"}
        assert all(q["lat"] is not None for q in poles.values())  # placed on the street
        assert poles["nl-demo-0002"]["state"] == "alarm" == poles["nl-demo-0003"]["state"]
        status, _h, body = get(f"{base}/v1.1/Things('nl-demo-0002')")
        assert status == 200 and json.loads(body)["properties"]["alarms"] == ["pole_tilted"]
        if os.path.exists("/usr/bin/chromium") and os.path.exists("/usr/bin/chromedriver"):
            with chromium() as driver:
                driver.get(f"{url}#nl-demo-0002")
                _detail(driver, "nl-demo-0002")
                assert _state(driver, "nl-demo-0003") == "alarm"
                save_picture(driver, "city-demo-map.png", full=False)
    finally:
        p.terminate()
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err[-2000:]
    assert "Traceback" not in err


def test_a_configured_tile_layer_lies_under_the_poles(tmp_path):
    """Where a city has a tile server: the tiles drawn are those under the poles (Web
    Mercator, the XYZ scheme), at a zoom that fits them."""
    import math

    from city.store import open_store
    from tests.city_web_fixtures import Town, serving

    need_browser()
    url = f"sqlite:///{tmp_path / 'city.sqlite'}"
    store = open_store(url)
    store.migrate()
    town = Town(windows=1)
    town.write(store)
    store.close()
    tiles = "/static/tiles/{z}/{x}/{y}.png"  # none there: the browser asks, gets 404s
    with serving(url, poles=3, tile_url=tiles) as web, chromium() as driver:
        driver.get(f"{web.url}/map")
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 15).until(lambda d: d.find_elements("css selector", "#tiles image"))
        hrefs = [
            i.get_attribute("href") for i in driver.find_elements("css selector", "#tiles image")
        ]
        cells = {tuple(map(int, re.fullmatch(r"/static/tiles/(\d+)/(\d+)/(\d+)\.png", h).groups()))
                 for h in hrefs}  # fmt: skip
        (z,) = {c[0] for c in cells}
        assert 15 <= z <= 19  # a street's worth of poles
        for p in town.poles:
            n = 2**z
            x = int((p.lon + 180) / 360 * n)
            s = math.sin(math.radians(p.lat))
            y = int((0.5 - math.log((1 + s) / (1 - s)) / (4 * math.pi)) * n)
            assert (z, x, y) in cells, (p.pole_id, (z, x, y), sorted(cells))
        assert not _serious(axe(driver))
