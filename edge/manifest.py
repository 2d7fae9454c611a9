"""The pole's output schema, its privacy manifest, and the audit that prints them.

``output_schema`` expands the message registry (edge/messages.py) for one pole: the
records of every kind, with the data and count records spelled out for the pole's
sensors from their hardware descriptors and privacy classes. The daemon builds its
encoders from the same descriptors and the same declarations, so a record that is not
in the schema has no code path to leave, and a test compares captured traffic with it.
The manifest (signed, retained) tells anyone what each sensor measures and why, what
can leave, bin length, k, epsilon and the remaining budget, retention, the software
version and the schema's hash. ``pole-admin audit`` prints the same schema as a table.
"""

from __future__ import annotations

import hashlib
import json

from edge import __version__, messages
from edge.config import PrivacyConfig
from edge.descriptors import SensorDescriptor
from edge.messages import COUNTS, DATA, FIELD_UNIT, MANIFEST, STATS

NEVER = "never leaves the pole"


def personal_source(desc: SensorDescriptor) -> str | None:
    """The personal field holding device addresses, if the sensor has one."""
    return next((k for k, f in desc.fields.items() if f.privacy == "personal"), None)


def count_series(
    sensors: list[tuple[str, SensorDescriptor]], privacy: PrivacyConfig
) -> list[tuple[str, str, str]]:
    """(sensor, field, source) of every count series the pole publishes, in bin order."""
    out = []
    for name, desc in sensors:
        personal = personal_source(desc)
        if personal is None:
            out += [
                (name, k, f"{desc.model}.{k}")
                for k, f in desc.fields.items()
                if f.privacy == "count"
            ]
        elif privacy.unique_devices:
            src = f"{desc.model}.{personal} (HMAC, per-bin key, RAM only)"
            out.append((name, "unique_devices", src))
    return out


def _row(rec: messages.Rec, name: str, unit: str | None, cls: str, source: str) -> dict:
    return {
        "record": name,
        "unit": unit or "",
        "value": rec.value,
        "class": cls,
        "source": source,
        "when": rec.when,
    }


def output_schema(sensors: list[tuple[str, SensorDescriptor]], privacy: PrivacyConfig) -> dict:
    """{kind: [rows], NEVER: [rows]}: every record the pole can publish, per kind, and
    every field that cannot leave. Rows: record, unit, value kind, class, source, when."""
    schema: dict[str, list[dict]] = {}
    never = []
    series_rec = {r.name.rsplit("/", 1)[-1]: r for r in DATA.records if "<field>" in r.name}
    for k in messages.KINDS:
        rows = []
        for rec in k.records:
            if "<field>" in rec.name:
                continue  # spelled out below, per sensor field
            if "<sensor>" in rec.name:
                rows += [
                    _row(rec, rec.name.replace("<sensor>", n), rec.unit, k.privacy, "daemon")
                    for n, _ in sensors
                ]
                continue
            src = "config" if rec.name in ("window", "bin") else "daemon"
            rows.append(_row(rec, rec.name, rec.unit, k.privacy, src))
        schema[k.name] = rows
    for name, desc in sensors:
        for field, f in desc.fields.items():
            src = f"{desc.model}.{field}"
            if f.privacy == "public":
                for stat in (*STATS, "count"):
                    rec = series_rec[stat]
                    unit = f.unit if rec.unit == FIELD_UNIT else rec.unit
                    full = rec.name.replace("<sensor>", name).replace("<field>", f.senml)
                    schema[DATA.name].append(_row(rec, full, unit, "public", src))
            elif f.privacy != "count" or personal_source(desc) is not None:
                never.append(
                    {
                        "record": None,
                        "unit": f.unit,
                        "value": "",
                        "class": f.privacy,
                        "source": src,
                        "when": "",
                    }
                )
    for name, field, src in count_series(sensors, privacy):
        for rec in COUNTS.records:
            if "<field>" in rec.name:
                full = rec.name.replace("<sensor>", name).replace("<field>", field)
                schema[COUNTS.name].append(_row(rec, full, rec.unit, "count", src))
    schema[NEVER] = never
    return schema


def schema_hash(schema: dict) -> str:
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


def allowed(schema: dict, kind: str, name: str) -> bool:
    """Is ``name`` (relative to the pole's base name) a record ``kind`` may carry under
    this schema? Patterns (health counters, alarms) match one name segment each."""
    rows = schema.get(kind, ())
    for r in rows:
        if r["record"] == name or (
            "<" in r["record"] and messages.Rec(r["record"], None, "", "").matches(name)
        ):
            return True
    return False


def encode_manifest(
    pole_id: str,
    bt: int,
    window_s: int,
    sensors: list[tuple[str, SensorDescriptor]],
    privacy: PrivacyConfig,
    schema: dict,
    remaining_budget: float | None,
    epsilon_per_bin: float | None = None,
) -> bytes:
    items: list[tuple[str, object]] = [
        ("manifest/software", "lightpole-edge " + __version__),
        ("manifest/schema_sha256", schema_hash(schema)),
        ("privacy/window", window_s),
        ("privacy/bin", privacy.bin_s),
        ("privacy/k", privacy.k),
        ("privacy/round_to", privacy.round_to),
        ("privacy/mode", privacy.mode),
        ("privacy/unique_devices", privacy.unique_devices),
        ("privacy/retention", privacy.retention),
    ]
    legal_basis = getattr(privacy, "legal_basis", "")
    if legal_basis and any(personal_source(d) for _, d in sensors):
        items.append(("privacy/legal_basis", legal_basis))
    if privacy.mode == "dp":
        items.append(("privacy/epsilon_per_bin", float(epsilon_per_bin or 0.0)))
        items.append(("privacy/epsilon_per_day", float(privacy.daily_epsilon)))
        items.append(("privacy/epsilon_remaining_today", float(remaining_budget or 0.0)))
    leaving: dict[str, set[str]] = {name: set() for name, _ in sensors}
    for kind, rows in schema.items():
        if kind == NEVER:
            continue
        for r in rows:
            head = r["record"].split("/")
            if len(head) == 3 and head[0] in leaving:
                leaving[head[0]].add(head[1])
    for name, desc in sensors:
        items.append((f"sensor/{name}/model", desc.model))
        items.append((f"sensor/{name}/purpose", desc.purpose or "-"))
        items.append((f"sensor/{name}/leaves", ",".join(sorted(leaving[name])) or "nothing"))
    return messages.pack(MANIFEST, pole_id, bt, items)
