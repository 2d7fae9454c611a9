"""Builders for the city web tests (tests/test_city_web_*.py import what they use).

``Town``: a few poles whose every message is built by the pole's own encoders (window
packs, count bins, health, birth, the privacy manifest from the real descriptors),
signed with the pole's key, checked by the city's verifier and stored as an ingest
worker stores it, on SQLite or PostgreSQL. ``accepted`` keeps what the verifier
accepted, for comparison with what the APIs serve. ``serving`` runs the web service
on a free port (uvicorn in a thread) until the block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from city import rows
from city.store import Store
from city.web.app import Settings, WebServer
from edge import messages, senml
from edge.config import PrivacyConfig
from edge.cose import Signer, cti_bytes
from edge.descriptors import load_sensor
from edge.gate import encode_bin
from edge.manifest import encode_manifest, output_schema
from edge.window import Window
from provisioning.trustlist import KeyRecord
from provisioning.verifier import Verdict, Verifier

ROOT = Path(__file__).resolve().parent.parent
NOW = int(time.time()) // 3600 * 3600  # an hour boundary in the present: inside partitions
SENSORS = (("sds011", "sds011"), ("bme280", "bme280"), ("lis3dh", "lis3dh"),
           ("ina219", "ina219"), ("ld2450", "ld2450"))  # fmt: skip
WINDOW = 60
BIN = 900
HERE = (51.4416, 5.4697)  # Eindhoven


def descriptors() -> list[tuple[str, object]]:
    return [(name, load_sensor(model)) for name, model in SENSORS]


def privacy() -> PrivacyConfig:
    return PrivacyConfig({"mode": "dp", "bin_s": BIN, "k": 10, "round_to": 5})


class TownPole:
    def __init__(self, pole_id: str, lat: float, lon: float) -> None:
        self.signer = Signer(os.urandom(32), pole_id)
        self.pole_id = pole_id
        self.lat, self.lon = lat, lon
        self.seq = 0
        sensors = descriptors()
        self.series = [
            senml.Series(name, key, f.senml, f.unit, f.resolution)
            for name, d in sensors
            for key, f in d.fields.items()
            if f.privacy == "public"
        ]
        self.encoder = senml.WindowPackEncoder(pole_id, self.series)

    def sign(self, kind: str, payload: bytes, t: int) -> bytes:
        self.seq += 1
        return self.signer.sign(kind, payload, t, cti_bytes(1, self.seq))

    def birth(self, t: int) -> bytes:
        items = [
            ("bdSeq", 1),
            ("boot", 1),
            ("software", "lightpole-gateway 0.1.0"),
            ("sensors", ",".join(f"{n}:{m}" for n, m in SENSORS)),
            ("window", WINDOW),
            ("location/lat", self.lat),
            ("location/lon", self.lon),
        ]
        return self.sign("birth", messages.pack(messages.BIRTH, self.pole_id, t, items), t)

    def manifest(self, t: int) -> bytes:
        sensors, p = descriptors(), privacy()
        n_counts = 2  # ld2450: people and bicycles
        payload = encode_manifest(
            self.pole_id,
            t,
            WINDOW,
            sensors,  # type: ignore[arg-type]
            p,
            output_schema(sensors, p),  # type: ignore[arg-type]
            remaining_budget=17.5,
            epsilon_per_bin=p.epsilon_for(n_counts),
        )
        return self.sign("manifest", payload, t)

    def data(self, end: int, values: dict[tuple[str, str], list[float]]) -> bytes:
        w = Window(end - WINDOW, WINDOW)
        for key, samples in values.items():
            for v in samples:
                w.add(key, v)
        return self.sign("data", self.encoder.encode(w, w.end), end)

    def counts(self, end: int, people: int, bicycles: int) -> bytes:
        values = [
            (("ld2450", "people"), (people, people == 0)),
            (("ld2450", "bicycles"), (bicycles, bicycles == 0)),
        ]
        return self.sign("counts", encode_bin(self.pole_id, end, BIN, values), end)

    def health(self, t: int, alarms: dict[str, str] | None = None) -> bytes:
        items: list = [("time/uptime", 120.0), ("time/valid", True), ("sensor/sds011/up", True)]
        for name, detail in (alarms or {}).items():
            items += [(f"alarm/{name}", True), (f"alarm/{name}/detail", detail)]
        return self.sign("health", messages.pack(messages.HEALTH, self.pole_id, t, items), t)


class Town:
    """Three poles 40 m apart: pole 2 leans (a truck), pole 3's lamp failed; 36 minutes of
    windows (1,080 observations) and four count bins each.

    Args:
        n: how many poles.
        windows: windows per pole.
    """

    def __init__(self, n: int = 3, windows: int = 36) -> None:
        self.poles = [
            TownPole(f"nl-ehv-{i + 1:05d}", HERE[0], HERE[1] + i * 0.00058) for i in range(n)
        ]
        self.windows = windows
        self.accepted: list[tuple[str, Verdict, bytes]] = []  # (topic, verdict, raw)

    def messages(self) -> list[tuple[TownPole, str, bytes]]:
        out = []
        for i, p in enumerate(self.poles):
            out.append((p, "birth", p.birth(NOW)))
            out.append((p, "manifest", p.manifest(NOW)))
            for w in range(self.windows):
                end = NOW + (w + 1) * WINDOW
                base = 10.0 + i + w
                values = {
                    ("sds011", "pm2_5"): [base, base + 2.0],
                    ("sds011", "pm10"): [2 * base, 2 * base + 1.0],
                    ("bme280", "temperature"): [11.5 + w * 0.25],
                    ("bme280", "humidity"): [81.0],
                    ("bme280", "pressure"): [101_210.0],
                    ("lis3dh", "tilt"): [14.0 if (i == 1 and w >= 3) else 0.4],
                    ("ina219", "current"): [0.0 if i == 2 else 2.1],
                    ("ina219", "voltage"): [230.0],
                    ("ina219", "power"): [0.0 if i == 2 else 483.0],
                }
                out.append((p, "data", p.data(end, values)))
            for b in range(4):
                out.append((p, "counts", p.counts(NOW + (b + 1) * BIN, 15 + 5 * b, 0 if b else 10)))
            alarms = {}
            if i == 1:
                alarms = {"pole_tilted": "leans 14.0 deg"}
            elif i == 2:
                alarms = {"lamp_failed": "0.00 A while commanded on"}
            out.append((p, "health", p.health(NOW + self.windows * WINDOW, alarms)))
        return out

    def write(self, store: Store) -> list[tuple[str, Verdict, bytes]]:
        """Register every key, verify every message as a worker does, store the batch."""
        keys = {p.signer.kid: KeyRecord(p.pole_id, p.signer.public_key) for p in self.poles}
        store.apply_trust(list(keys.values()), [])
        verifier = Verifier(keys)
        items = []
        for p, kind, raw in self.messages():
            topic = f"poles/{p.pole_id}/{kind}"
            v = verifier.check(topic, raw)
            assert v.status == "accepted", v
            self.accepted.append((topic, v, raw))
            items.append(rows.item(v, raw, time.time()))
        assert all(store.write(items))
        return self.accepted

    def records(self, pole_id: str, kind: str) -> list[dict[str, object]]:
        """The accepted records of each message of a pole and kind: {relative name: value}."""
        base = len(pole_id) + 1
        return [
            {r[0][base:]: r[2] for r in v.records}
            for _t, v, _raw in self.accepted
            if v.pole_id == pole_id and v.kind == kind
        ]


def get(url: str, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of a GET, whatever the status."""
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def get_json(url: str) -> object:
    status, _h, body = get(url)
    assert status == 200, (status, body[:500])
    return json.loads(body)


@contextlib.contextmanager
def serving(store_url: str, *, poles: int = 0, **settings: object) -> Iterator[WebServer]:
    """The web service over ``store_url`` until the block ends; waits until it has read
    ``poles`` poles from the store."""
    web = WebServer(Settings(db=store_url, **settings))  # type: ignore[arg-type]
    web.service.settings.public_url = settings.get("public_url") or f"{web.url}/poles"  # type: ignore[assignment]
    web.start()
    try:
        deadline = time.monotonic() + 30
        while True:
            data = get_json(f"{web.url}/api/poles")
            if len(data["poles"]) >= poles:  # type: ignore[index]
                break
            assert time.monotonic() < deadline, data
            time.sleep(0.1)
        yield web
    finally:
        web.stop()


# -- the browser (Debian's Chromium, driven by Selenium) and axe-core from npm ---------------
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
AXE_DIR = ROOT / "tests" / "city_web_axe"  # package.json + lock: axe-core, MPL-2.0
ARTEFACTS = Path(os.environ.get("TEST_ARTEFACTS", ROOT / "build" / "test-artefacts")) / "city-web"
DOCS_IMG = ROOT / "docs" / "img"


def need_browser() -> None:
    """Skip, saying why, only when Debian's Chromium or its driver is not installed."""
    import pytest

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} missing: apt-get install chromium chromium-driver "
            "(./run test does it)"
        )


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 1000) -> Iterator[object]:
    """A headless Chromium from Debian, through its chromedriver (Selenium Manager, which
    would download a browser, is never asked)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    need_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--force-device-scale-factor=1",
                "--lang=en-GB"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


def axe_source() -> str:
    """axe-core's browser script, installed from npm into tests/city_web_axe on first use
    (``npm ci``: the version and hash in its package-lock.json)."""
    import shutil
    import subprocess

    js = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not js.exists():
        assert shutil.which("npm"), "npm is needed for axe-core: apt-get install nodejs npm"
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=AXE_DIR,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, "npm ci in tests/city_web_axe failed:\n" + r.stdout + r.stderr
    return js.read_text()


AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]


def axe(driver: object) -> list[dict]:
    """axe-core's violations on the page as it is now: [{id, impact, help, nodes}]."""
    driver.execute_script(axe_source())  # type: ignore[attr-defined]
    result = driver.execute_async_script(  # type: ignore[attr-defined]
        """
        const done = arguments[arguments.length - 1];
        axe.run(document, {runOnly: {type: "tag", values: arguments[0]}})
          .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                 nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 5)}))))
          .catch(e => done([{id: "axe-error", impact: "critical", help: String(e), nodes: []}]));
        """,
        AXE_TAGS,
    )
    return result


def save_picture(driver: object, name: str, full: bool = True) -> Path:
    """A screenshot of the whole page (``full``) as a test artefact
    (build/test-artefacts/city-web/, or $TEST_ARTEFACTS); with UPDATE_DOCS_IMG=1 also into
    docs/img/ for docs/city.md."""
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / name
    size = driver.get_window_size()  # type: ignore[attr-defined]
    if full:
        height = driver.execute_script("return document.documentElement.scrollHeight")  # type: ignore[attr-defined]
        driver.set_window_size(size["width"], min(int(height) + 40, 4000))  # type: ignore[attr-defined]
    driver.execute_script("window.scrollTo(0, 0)")  # type: ignore[attr-defined]
    try:
        driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    finally:
        driver.set_window_size(size["width"], size["height"])  # type: ignore[attr-defined]
    if os.environ.get("UPDATE_DOCS_IMG") == "1":  # 128 colours: a third of the bytes
        from PIL import Image

        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        img = Image.open(path).convert("RGB").quantize(128, method=Image.Quantize.MEDIANCUT)
        img.save(DOCS_IMG / name, optimize=True)
    return path
