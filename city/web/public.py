"""A public page per pole, the target of the QR code on its label, and its register entry.

Residents ask what a sensor above their street records; Dutch cities answer with
public sensor registers and the TADA principles (open and transparent, the citizen in
control). The page says, from the pole's own signed manifest (verified again with the
key the city holds, city/web/fleet.py): what each sensor measures and why, which of its
fields can leave the pole and which never do (from the hardware descriptors), the
privacy parameters exactly as signed (k, rounding, bin and window length, ε per bin and
per day, what was left at the last start, and what the bins published today spent),
the hash of the signed manifest and the key that signs it, the owner and the contact.
With ``?fp=`` (the label's fingerprint) it says whether the label matches the key the
city trusts for this pole: a label on a swapped controller does not.

Every value is escaped (``html.escape``), the page runs no script, and the same facts
are a JSON register entry (``/register/<pole>.json``) that a national sensor register
can take.
"""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any

from city.web import db
from city.web.fleet import Pole, View, descriptor
from city.web.sta import iso
from edge.names import InvalidName, check_pole_id

FP = re.compile(r"[0-9a-f]{4}(?::[0-9a-f]{4}){1,15}")
PRIVACY_ROWS = (  # manifest record, what it means
    ("privacy/k", "counts below k are published as suppressed (0)"),
    ("privacy/round_to", "counts at or above k are rounded to a multiple of this"),
    ("privacy/bin", "bin length of the counts, seconds"),
    ("privacy/window", "window length of the measurements, seconds"),
    ("privacy/mode", '"k": suppression and rounding; "dp": also differential-privacy noise'),
    ("privacy/epsilon_per_bin", "ε spent per count series per bin"),
    ("privacy/epsilon_per_day", "ε budget per day, every count series together"),
    ("privacy/epsilon_remaining_today", "ε left of the day's budget when the pole last started"),
    ("privacy/unique_devices", "whether distinct devices are counted (Wi-Fi/Bluetooth)"),
    ("privacy/legal_basis", "the stated legal basis for counting devices"),
    ("privacy/retention", "how long anything is kept on the pole"),
)
CLASSES = {
    "personal": "personal data: never stored, logged or published",
    "health": "device diagnostics: stay on the pole",
    "count": "only as protected counts per bin",
    "public": "window statistics",
}


def pole_id_or_none(text: str) -> str | None:
    try:
        return check_pole_id(text)
    except InvalidName:
        return None


def entry(fleet: View, reader: db.Reader, p: Pole, *, owner: str, contact: str, urls: dict):
    """The register entry of a pole (JSON values only); runs in a database thread."""
    m = p.manifest
    keys = fleet.keys_of(p.pole_id)
    sensors: list[dict[str, Any]] = []
    for name, model, purpose, fields in m.sensors() if m else []:
        d = descriptor(model)
        never: list[dict[str, Any]] = []
        measures: list[dict[str, Any]] = []
        if d is not None:
            for f in d.fields.values():
                item = {"field": f.senml, "unit": f.unit, "class": f.privacy}
                (measures if f.senml in fields else never).append(item)
        else:
            measures = [{"field": f, "unit": None, "class": None} for f in fields]
        sensors.append(
            {
                "name": name,
                "model": model,
                "title": d.title if d else model,
                "purpose": purpose,
                "leaves": measures,
                "neverLeaves": never,
            }
        )
    privacy: dict[str, Any] = {}
    if m is not None:
        for rec, _meaning in PRIVACY_ROWS:
            if rec in m.records:
                privacy[rec.split("/", 1)[1]] = m.records[rec]
    spent = _spent_today(reader, p, privacy)
    return {
        "id": p.pole_id,
        "type": "light pole sensor node",
        "owner": owner,
        "contact": contact,
        "purpose": [s["purpose"] for s in sensors if s["purpose"]],
        "location": (
            {"type": "Point", "coordinates": [p.lon, p.lat]} if p.lat is not None else None
        ),
        "personalData": any(c["class"] == "personal" for s in sensors for c in s["leaves"]),
        "sensors": sensors,
        "privacy": privacy,
        "epsilonSpentToday": spent,
        "manifest": (
            {
                "sha256": m.sha256,
                "signedAt": iso(m.signed_at),
                "key": _fp(m.kid),
                "software": m.records.get("manifest/software"),
                "schemaSha256": m.records.get("manifest/schema_sha256"),
                "verified": m.verified,
            }
            if m
            else None
        ),
        "keys": [{"fingerprint": k.fingerprint, "status": k.status} for k in keys],
        "state": p.state,
        "software": p.software,
        "links": urls,
    }


def _fp(kid: bytes) -> str:
    from city.web.fleet import fingerprint

    return fingerprint(kid)


def _spent_today(reader: db.Reader, p: Pole, privacy: dict) -> dict | None:
    """ε the pole's count bins of its latest day spent: each published series and bin
    spends the manifest's ε per bin (dp mode only)."""
    per_bin = privacy.get("epsilon_per_bin")
    if privacy.get("mode") != "dp" or not isinstance(per_bin, (int, float)):
        return None
    last = db.epoch(reader.query(db.LAST_COUNT_T, {"pole": p.pole_id})[0][0])
    if last is None:
        return {"day": None, "bins": 0, "epsilon": 0.0}
    bin_s = privacy.get("bin") or 0
    day = (last - float(bin_s)) // 86400 * 86400  # the day the latest bin started
    n = reader.query(
        db.COUNTS_TODAY,
        {
            "pole": p.pole_id,
            "start": db.tparam(reader.dialect, day + float(bin_s)),
            "end": db.tparam(reader.dialect, day + 86400 + float(bin_s)),
        },
    )[0][0]
    return {
        "day": time.strftime("%Y-%m-%d", time.gmtime(day)),
        "bins": int(n),
        "epsilon": round(int(n) * float(per_bin), 6),
    }


# -- the page -------------------------------------------------------------------------------------
def _e(v: object) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def page(e: dict, fp: str | None, *, title: str) -> str:
    """The HTML page for a register entry; ``fp``: the fingerprint from the label."""
    pid = e["id"]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Light pole {_e(pid)} · {_e(title)}</title>",
        '<link rel="stylesheet" href="/static/page.css">',
        "</head><body>",
        '<a class="skip" href="#main">Skip to the content</a>',
        f'<header><p>{_e(title)}</p><h1>Light pole <span id="pole-id">{_e(pid)}</span></h1>',
        f'<p>State now: <strong class="state state-{_e(e["state"])}">{_e(e["state"])}</strong>'
        f' · owner <span id="owner">{_e(e["owner"])}</span>'
        + (f" · contact {_e(e['contact'])}" if e["contact"] else "")
        + "</p></header>",
        '<main id="main">',
    ]
    parts.append(_label_check(e, fp))
    parts.append(
        '<section aria-labelledby="measures"><h2 id="measures">What this pole measures</h2>'
    )
    if not e["sensors"]:
        parts.append("<p>No signed manifest has arrived from this pole yet.</p>")
    else:
        parts.append(
            "<table><caption>Sensors, why the city measures, and what can leave the pole"
            '</caption><thead><tr><th scope="col">Sensor</th><th scope="col">Purpose</th>'
            '<th scope="col">Leaves the pole</th></tr></thead><tbody>'
        )
        for s in e["sensors"]:
            leaves = ", ".join(
                f"{_e(f['field'])}" + (f" ({_e(f['unit'])})" if f["unit"] else "")
                for f in s["leaves"]
            )
            parts.append(
                f'<tr><th scope="row">{_e(s["title"])} <small>({_e(s["name"])})</small></th>'
                f"<td>{_e(s['purpose'])}</td><td>{leaves or 'nothing'}</td></tr>"
            )
        parts.append("</tbody></table>")
    parts.append("</section>")
    parts.append(_never(e))
    parts.append(_privacy(e))
    parts.append(_signed(e))
    links = e["links"]
    parts.append(
        '<section aria-labelledby="more"><h2 id="more">More</h2><ul>'
        f'<li><a href="{_e(links["register"])}">This page as a register entry (JSON)</a></li>'
        f'<li><a href="{_e(links["sensorthings"])}">Its data (OGC SensorThings API)</a></li>'
        f'<li><a href="{_e(links["map"])}">The city\'s map of poles</a></li></ul></section>'
    )
    parts.append("</main></body></html>")
    return "\n".join(parts)


def _label_check(e: dict, fp: str | None) -> str:
    if fp is None:
        return ""
    keys = e["keys"]
    if not FP.fullmatch(fp):
        msg, cls = "The code you scanned holds no valid key fingerprint.", "warn"
    elif any(k["fingerprint"] == fp and k["status"] == "active" for k in keys):
        msg = f"The label's key {_e(fp)} is the key the city trusts for this pole."
        cls = "ok"
    elif any(k["fingerprint"] == fp for k in keys):
        msg = f"The label's key {_e(fp)} was revoked: this label belongs to a replaced controller."
        cls = "warn"
    else:
        msg = f"The label's key {_e(fp)} is not a key of this pole: please tell the city."
        cls = "warn"
    return f'<p id="label-check" class="notice {cls}" role="status">{msg}</p>'


def _never(e: dict) -> str:
    rows = [
        f"<li>{_e(s['title'])}: {_e(f['field'])} ({_e(CLASSES.get(f['class'], f['class']))})</li>"
        for s in e["sensors"]
        for f in s["neverLeaves"]
    ]
    return (
        '<section aria-labelledby="never"><h2 id="never">What it never records or sends</h2>'
        "<p>Only fields that the sensor descriptions declare public (as window statistics) "
        "or countable (as protected counts per bin) pass the pole's privacy gate; "
        "nothing else leaves it. No images, no sound, no positions or tracks of people "
        "leave the pole.</p>"
        + (f'<ul id="never-list">{"".join(rows)}</ul>' if rows else "")
        + "</section>"
    )


def _privacy(e: dict) -> str:
    priv = e["privacy"]
    rows = []
    for rec, meaning in PRIVACY_ROWS:
        key = rec.split("/", 1)[1]
        if key not in priv:
            continue
        v = priv[key]
        rows.append(
            f'<tr><th scope="row">{_e(key)}</th>'
            f'<td data-manifest="{_e(rec)}" data-value="{_e(json.dumps(v))}">{_e(_value(v))}</td>'
            f"<td>{_e(meaning)}</td></tr>"
        )
    spent = e["epsilonSpentToday"]
    if spent is not None:
        rows.append(
            '<tr><th scope="row">epsilon spent today</th>'
            f'<td id="epsilon-spent" data-value="{_e(json.dumps(spent["epsilon"]))}">'
            f"{_e(spent['epsilon'])}</td><td>{_e(spent['bins'])} count series × bins published "
            f"on {_e(spent['day'])} (UTC), ε per bin each</td></tr>"
        )
    if not rows:
        return (
            '<section aria-labelledby="privacy"><h2 id="privacy">Privacy parameters</h2>'
            "<p>Not known yet: no signed manifest has arrived.</p></section>"
        )
    return (
        '<section aria-labelledby="privacy"><h2 id="privacy">Privacy parameters</h2>'
        "<table><caption>As the pole's signed manifest states them</caption><thead><tr>"
        '<th scope="col">Parameter</th><th scope="col">Value</th><th scope="col">Meaning</th>'
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>"
    )


def _signed(e: dict) -> str:
    m = e["manifest"]
    keys = "".join(
        f"<li><code>{_e(k['fingerprint'])}</code> ({_e(k['status'])})</li>" for k in e["keys"]
    )
    if m is None:
        body = "<p>No signed manifest yet.</p>"
    else:
        body = (
            "<dl>"
            f'<dt>SHA-256 of the signed manifest</dt><dd><code id="manifest-sha256">'
            f"{_e(m['sha256'])}</code></dd>"
            f"<dt>Signed at</dt><dd>{_e(m['signedAt'])}</dd>"
            f'<dt>Signed with key</dt><dd><code id="manifest-key">{_e(m["key"])}</code>'
            f"{' (signature checked by the city)' if m['verified'] else ''}</dd>"
            f"<dt>Software</dt><dd>{_e(m['software'])}</dd>"
            f"<dt>Output schema SHA-256</dt><dd><code>{_e(m['schemaSha256'])}</code></dd>"
            "</dl>"
        )
    return (
        '<section aria-labelledby="signed"><h2 id="signed">Signed by the pole</h2>'
        + body
        + (f"<p>Keys of this pole:</p><ul>{keys}</ul>" if keys else "")
        + "</section>"
    )
