"""The pole's output schema, its privacy manifest, and the audit that prints them.

``output_schema`` is derived from the hardware descriptors and the privacy settings,
and it is what the daemon builds its encoders from: a record that is not in it has no
code path to leave. The manifest (signed, published retained on
``<prefix>/<pole>/manifest``) tells anyone what each sensor measures and why, what can
leave, bin length, k, ε and the remaining budget, retention, the software version and
the schema's hash. ``pole-admin audit`` prints the same schema as a table.
"""

from __future__ import annotations

import hashlib
import json

from edge import __version__, senml
from edge.config import PrivacyConfig
from edge.descriptors import SensorDescriptor

STATS = ("mean", "min", "max", "count")


def personal_source(desc: SensorDescriptor) -> str | None:
    """The personal field holding device addresses, if the sensor has one."""
    return next((k for k, f in desc.fields.items() if f.privacy == "personal"), None)


def output_schema(
    sensors: list[tuple[str, SensorDescriptor]], privacy: PrivacyConfig, prefix: str = "poles"
) -> dict:
    """{topic: [{"record", "unit", "class", "source"}]}: everything the pole can publish."""
    data, counts, never = [], [], []
    for name, desc in sensors:
        personal = personal_source(desc)
        for field, f in desc.fields.items():
            src = f"{desc.model}.{field}"
            if f.privacy == "public":
                data += [
                    {
                        "record": f"{name}/{f.senml}/{st}",
                        "unit": "count" if st == "count" else f.unit,
                        "class": "public",
                        "source": src,
                    }
                    for st in STATS
                ]
            elif f.privacy == "count" and personal is None:
                counts.append(
                    {
                        "record": f"{name}/{field}/count",
                        "unit": "count",
                        "class": "count",
                        "source": src,
                    }
                )
            else:
                never.append({"record": None, "unit": f.unit, "class": f.privacy, "source": src})
        if personal is not None and privacy.unique_devices:
            counts.append(
                {
                    "record": f"{name}/unique_devices/count",
                    "unit": "count",
                    "class": "count",
                    "source": f"{desc.model}.{personal} (HMAC, per-window key, RAM only)",
                }
            )
    return {
        f"{prefix}/<pole>/data": [
            {"record": "window", "unit": "s", "class": "meta", "source": "config"},
            *data,
        ],
        f"{prefix}/<pole>/counts": [
            {"record": "bin", "unit": "s", "class": "meta", "source": "config"},
            *counts,
        ],
        f"{prefix}/<pole>/health": [
            {
                "record": "sensor/<name>/up | counter/<name> | alarm/<name>[/detail] | time/*",
                "unit": "",
                "class": "health",
                "source": "daemon",
            }
        ],
        f"{prefix}/<pole>/birth": [
            {
                "record": "bdSeq, boot, software, sensors, window",
                "unit": "",
                "class": "meta",
                "source": "daemon",
            }
        ],
        f"{prefix}/<pole>/death": [
            {"record": "bdSeq", "unit": "", "class": "meta", "source": "daemon"}
        ],
        f"{prefix}/<pole>/manifest": [
            {"record": "this manifest", "unit": "", "class": "meta", "source": "daemon"}
        ],
        "never leaves the pole": never,
    }


def schema_hash(schema: dict) -> str:
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


def encode_manifest(
    pole_id: str,
    bt: int,
    window_s: int,
    sensors: list[tuple[str, SensorDescriptor]],
    privacy: PrivacyConfig,
    schema: dict,
    remaining_budget: float | None,
) -> bytes:
    records = [
        [
            (senml.BN, pole_id + "/"),
            (senml.BT, bt),
            (0, "manifest/software"),
            (3, "lightpole-edge " + __version__),
        ],
        [(0, "manifest/schema_sha256"), (3, schema_hash(schema))],
        [(0, "privacy/window"), (1, "s"), (2, window_s)],
        [(0, "privacy/bin"), (1, "s"), (2, privacy.bin_s)],
        [(0, "privacy/k"), (2, privacy.k)],
        [(0, "privacy/round_to"), (2, privacy.round_to)],
        [(0, "privacy/mode"), (3, privacy.mode)],
        [(0, "privacy/unique_devices"), (4, privacy.unique_devices)],
        [(0, "privacy/retention"), (3, privacy.retention)],
    ]
    if privacy.mode == "dp":
        records.append([(0, "privacy/epsilon_per_bin"), (2, privacy.epsilon)])
        records.append([(0, "privacy/epsilon_remaining_today"), (2, remaining_budget or 0.0)])
    for name, desc in sensors:
        leaves = sorted(
            {
                r["record"].split("/")[1]
                for t, rows in schema.items()
                if t != "never leaves the pole"
                for r in rows
                if r["record"] and r["record"].startswith(name + "/")
            }
        )
        records.append([(0, f"sensor/{name}/model"), (3, desc.model)])
        records.append([(0, f"sensor/{name}/purpose"), (3, desc.purpose or "-")])
        records.append([(0, f"sensor/{name}/leaves"), (3, ",".join(leaves) or "nothing")])
    return senml.encode_pack(records)
