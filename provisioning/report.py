"""One line per verified message, for people watching a verifier or the demo.

A data line shows the mean of every series in the pack, grouped by sensor, whatever
the sensor: built-in or from a vendor's package, the verifier needs no list of fields
(``bme280: temperature 21.5 Cel, pressure 1012.3 hPa; acme_lux: illuminance 320.4 lx``).
A counts line shows every count, marked when the privacy gate suppressed it.
Names and units come from a verified, strictly decoded pack (docs/wire-format.md).
"""

from __future__ import annotations

import time

from provisioning.verifier import Verdict

UNITS = {"Pa": ("hPa", 0.01)}  # shown as people read them; the pack keeps SI


def _number(value: object) -> str:
    """One decimal as people read a street's values (18.2, 1012.3, 320.4); two below 1
    (0.95); three significant digits for the very large and the very small (1.5e+07)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value).lower()
    size = abs(value)
    if size >= 1e6 or 0 < size < 0.1:
        return f"{value:.3g}"
    return f"{value:.2f}" if size < 1 else f"{value:.1f}"


def _by_sensor(v: Verdict, stat: str) -> dict[str, list[tuple[str, object, str]]]:
    """{sensor: [(field, value, unit)]} of the records ``<pole>/<sensor>/<field>/<stat>``,
    in pack order."""
    out: dict[str, list[tuple[str, object, str]]] = {}
    base = v.pole_id + "/"
    for r in v.records:
        if not r.name.startswith(base):
            continue
        parts = r.name[len(base) :].split("/")
        if len(parts) != 3 or parts[2] != stat or r.value is None:
            continue
        out.setdefault(parts[0], []).append((parts[1], r.value, r.unit or ""))
    return out


def _series(v: Verdict) -> str:
    groups = []
    for sensor, fields in _by_sensor(v, "mean").items():
        shown = []
        for field, value, unit in fields:
            unit, scale = UNITS.get(unit, (unit, 1))
            if scale != 1 and isinstance(value, (int, float)):
                value = value * scale
            shown.append(f"{field} {_number(value)} {unit}".rstrip())
        groups.append(f"{sensor}: " + ", ".join(shown))
    return "; ".join(groups)


def _counts(v: Verdict) -> str:
    suppressed = {
        (sensor, field)
        for sensor, fields in _by_sensor(v, "suppressed").items()
        for field, value, _unit in fields
        if value is True
    }
    groups = []
    for sensor, fields in _by_sensor(v, "count").items():
        shown = [
            f"{field} {value}" + (" (suppressed)" if (sensor, field) in suppressed else "")
            for field, value, _unit in fields
        ]
        groups.append(f"{sensor}: " + ", ".join(shown))
    return "; ".join(groups)


def format_verdict(topic: str, v: Verdict) -> str | None:
    stamp = time.strftime("%H:%M:%S")
    if v.status == "rejected":
        return f"{stamp}  REJECTED {topic}: {v.reason}"
    if v.status == "duplicate":
        return (
            f"{stamp}  {v.pole_id:<13} duplicate cti {v.cti >> 32}:{v.cti & 0xFFFFFFFF} stored once"
        )
    cti = f"{v.cti >> 32}:{v.cti & 0xFFFFFFFF}"
    if v.kind == "data":
        counts = [r.value for r in v.records if r.name.endswith("/count")] or [0]
        return (
            f"{stamp}  {v.pole_id:<13} verified data cti {cti:<7} "
            + _series(v)
            + f"  ({max(counts)} samples)"
        )
    if v.kind == "counts":
        return f"{stamp}  {v.pole_id:<13} verified counts cti {cti:<7} " + (
            _counts(v) or "no counting sensor"
        )
    if v.kind in ("birth", "death"):
        bd = next((r.value for r in v.records if r.name.endswith("bdSeq")), "?")
        return f"{stamp}  {v.pole_id:<13} verified {v.kind} (bdSeq {bd})"
    if v.kind == "health":
        alarms = [
            r.name.split("/")[-1]
            for r in v.records
            if "/alarm/" in r.name and not r.name.endswith("/detail")
        ]
        return f"{stamp}  {v.pole_id:<13} verified health" + (
            f"  ALARMS: {', '.join(alarms)}" if alarms else "  ok"
        )
    return None
