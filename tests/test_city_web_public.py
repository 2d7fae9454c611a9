"""A pole's label leads to its public page, and the page states the pole's privacy
parameters as its signed manifest has them (on SQLite and PostgreSQL): the QR code is
decoded by an independent reader (zxing-cpp), the page fetched from the running
service, its values compared with the manifest the verifier accepted. Every value is
escaped; the register entry says the same in JSON."""

# ruff: noqa: F811  (pytest fixtures imported from tests/city_fixtures.py)

from __future__ import annotations

import copy
import hashlib
import html.parser
import json
import time

import pytest
import zxingcpp
from PIL import Image

from city import rows
from city.store import open_store
from edge.cose import fingerprint
from provisioning.label import parse_qr_text, write_label
from provisioning.trustlist import KeyRecord
from provisioning.verifier import Verifier
from tests.city_fixtures import pg_cluster, store_url  # noqa: F401  (fixtures)
from tests.city_web_fixtures import (
    NOW,
    Town,
    TownPole,
    descriptors,
    get,
    get_json,
    privacy,
    serving,
)

PRIVACY = (
    "privacy/k",
    "privacy/round_to",
    "privacy/bin",
    "privacy/window",
    "privacy/mode",
    "privacy/epsilon_per_bin",
    "privacy/epsilon_per_day",
    "privacy/epsilon_remaining_today",
    "privacy/unique_devices",
    "privacy/retention",
)


class Cells(html.parser.HTMLParser):
    """The page's manifest values: data-manifest -> (data-value as JSON, shown text)."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, tuple[object, str]] = {}
        self.ids: dict[str, str] = {}
        self.values: dict[str, object] = {}  # id -> data-value
        self._open: tuple[str, object] | None = None
        self._id: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if "data-manifest" in a:
            self._open = (a["data-manifest"], json.loads(a["data-value"]))
            self.cells[a["data-manifest"]] = (self._open[1], "")
        if "id" in a:
            self._id = a["id"]
            self.ids.setdefault(self._id, "")
            if "data-value" in a:
                self.values[a["id"]] = json.loads(a["data-value"])

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            name, value = self._open
            self.cells[name] = (value, self.cells[name][1] + data)
        if self._id is not None:
            self.ids[self._id] += data

    def handle_endtag(self, tag: str) -> None:
        self._open = None
        self._id = None


def test_the_label_leads_to_the_page_that_states_the_signed_privacy_parameters(store_url, tmp_path):
    store = open_store(store_url)
    store.migrate()
    town = Town(windows=2)
    town.write(store)
    with serving(store_url, poles=3) as web:
        public_url = web.service.public_url
        pole = town.poles[0]
        fp = fingerprint(pole.signer.public_key)
        png, _svg = write_label(tmp_path, pole.pole_id, fp, pole.lat, pole.lon, public_url)
        (code,) = zxingcpp.read_barcodes(Image.open(png))
        assert code.text == f"{public_url}/{pole.pole_id}?fp={fp}"
        assert parse_qr_text(code.text) == (pole.pole_id, fp)

        status, headers, body = get(code.text)
        assert status == 200 and headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in headers["content-security-policy"]
        page = Cells()
        page.feed(body.decode())
        (manifest,) = town.records(pole.pole_id, "manifest")  # as the verifier accepted it
        for rec in PRIVACY:
            value, shown = page.cells[rec]
            assert value == manifest[rec], rec
            want = manifest[rec] if not isinstance(manifest[rec], bool) else "no"
            assert shown == str(want), rec
        assert page.cells["privacy/mode"][0] == "dp" and page.cells["privacy/k"][0] == 10
        raw = next(
            r for _t, v, r in town.accepted if v.pole_id == pole.pole_id and v.kind == "manifest"
        )
        assert page.ids["manifest-sha256"] == hashlib.sha256(raw).hexdigest()
        assert page.ids["manifest-key"] == fp
        assert "is the key the city trusts" in page.ids["label-check"]
        # ε spent today: every count series of every bin of the day spends ε per bin.
        bins = len(town.records(pole.pole_id, "counts")) * 2  # people and bicycles
        spent = page.values["epsilon-spent"]
        assert spent == pytest.approx(bins * manifest["privacy/epsilon_per_bin"])
        # What it measures and what never leaves, in words.
        text = body.decode()
        assert "Air quality: fine dust" in text and "pm2_5 (ug/m3)" in text
        assert "What it never records or sends" in text

        # The register entry says the same, in JSON.
        entry = get_json(f"{web.url}/register/{pole.pole_id}.json")
        assert entry["privacy"]["k"] == manifest["privacy/k"]
        assert entry["privacy"]["epsilon_per_day"] == manifest["privacy/epsilon_per_day"]
        assert entry["manifest"]["sha256"] == hashlib.sha256(raw).hexdigest()
        assert entry["manifest"]["verified"] is True
        assert entry["keys"] == [{"fingerprint": fp, "status": "active"}]
        assert entry["personalData"] is False
        everyone = get_json(f"{web.url}/register.json")
        assert [e["id"] for e in everyone["poles"]] == [p.pole_id for p in town.poles]

        # A label from another controller, and then a revoked key, are told apart.
        other = fingerprint(town.poles[1].signer.public_key)
        _s, _h, body = get(f"{public_url}/{pole.pole_id}?fp={other}")
        assert "not a key of this pole" in body.decode()
        store.apply_trust([], [pole.signer.kid])
        deadline = time.monotonic() + 20
        while "was revoked" not in get(code.text)[2].decode():
            assert time.monotonic() < deadline, "the revocation did not reach the page"
            time.sleep(0.2)
        assert get_json(f"{web.url}/api/poles/{pole.pole_id}")["pole"]["state"] == "revoked"
    store.close()


def test_every_value_is_escaped_and_bad_paths_are_404(tmp_path):
    """A validly signed manifest whose texts are markup: shown as text, never run."""
    url = f"sqlite:///{tmp_path / 'city.sqlite'}"
    store = open_store(url)
    store.migrate()
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    pole = TownPole("nl-ehv-00666", 51.44, 5.47)
    sensors = descriptors()
    sensors[0] = (sensors[0][0], copy.copy(sensors[0][1]))
    sensors[0][1].purpose = evil  # what a pole (or a thief with its key) could sign
    from edge.manifest import encode_manifest, output_schema

    payload = encode_manifest(
        pole.pole_id, NOW, 60, sensors, privacy(), output_schema(sensors, privacy()), 1.0, 0.001
    )
    raw_manifest = pole.sign("manifest", payload, NOW)
    key = KeyRecord(pole.pole_id, pole.signer.public_key)
    store.apply_trust([key], [])
    verifier = Verifier({key.kid: key})
    items = []
    for kind, raw in (("birth", pole.birth(NOW)), ("manifest", raw_manifest)):
        v = verifier.check(f"poles/{pole.pole_id}/{kind}", raw)
        assert v.status == "accepted"
        items.append(rows.item(v, raw, time.time()))
    store.write(items)
    store.close()
    with serving(url, poles=1, owner='Gemeente <b>"Test"</b>') as web:
        status, _h, body = get(f"{web.url}/poles/{pole.pole_id}?fp=%3Cscript%3E")
        text = body.decode()
        assert status == 200
        assert "<script" not in text and "<img" not in text and "<b>" not in text
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
        assert "Gemeente &lt;b&gt;&quot;Test&quot;&lt;/b&gt;" in text
        assert "holds no valid key fingerprint" in text
        for path in ("/poles/..", "/poles/%3Cscript%3E", "/poles/nl-ehv-99999",
                     "/register/x.json", "/register/nl-ehv-00666.txt"):  # fmt: skip
            status, _h, body = get(web.url + path)
            assert status == 404 and b"<script" not in body, path
