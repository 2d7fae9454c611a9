"""Planted canaries and a scanner that finds them in any form they could leak in."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path


def forms(mac: bytes) -> list[bytes]:
    colon = ":".join(f"{b:02x}" for b in mac)
    out = [
        mac,
        mac.hex().encode(),
        mac.hex().upper().encode(),
        colon.encode(),
        colon.upper().encode(),
        colon.replace(":", "-").encode(),
        base64.b64encode(mac).rstrip(b"="),
    ]
    for data in (mac, colon.encode(), colon.upper().encode()):
        for h in (hashlib.sha256, hashlib.sha1, hashlib.md5):
            d = h(data).digest()
            out += [d, d.hex().encode(), base64.b64encode(d).rstrip(b"=")]
    return out


def ssid_forms(ssid: bytes) -> list[bytes]:
    return [ssid, ssid.hex().encode(), base64.b64encode(ssid).rstrip(b"=")]


def scan(blobs: dict[str, bytes], macs: list[bytes], ssids: list[bytes]) -> list[str]:
    needles = [(f"mac {m.hex()}", f) for m in macs for f in forms(m)]
    needles += [(f"ssid {s!r}", f) for s in ssids if len(s) >= 6 for f in ssid_forms(s)]
    return [f"{what} in {name}" for name, blob in blobs.items() for what, f in needles if f in blob]


def files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}
