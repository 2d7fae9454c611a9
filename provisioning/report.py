"""One line per verified message, for people watching a verifier or the demo."""

from __future__ import annotations

import time

from provisioning.verifier import Verdict

UNITS = {"Pa": ("hPa", 0.01)}
SHOW = ("pm2_5", "pm10", "temperature", "humidity", "pressure", "tilt", "current", "activePower")


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
        parts = []
        seen: set[str] = set()
        for r in v.records:
            field = r.name.rsplit("/", 2)
            if len(field) == 3 and field[2] == "mean" and field[1] in SHOW and field[1] not in seen:
                seen.add(field[1])
                unit, scale = UNITS.get(r.unit or "", (r.unit, 1))
                parts.append(f"{field[1]} {r.value * scale:.1f} {unit}")
        counts = [r.value for r in v.records if r.name.endswith("/count")] or [0]
        return (
            f"{stamp}  {v.pole_id:<13} verified data cti {cti:<7} "
            + "  ".join(parts)
            + f"  ({max(counts)} samples)"
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
