"""``pole-admin trust sync``: offline registrations into the trust list, after checks.

Each ``*.lpreg`` file is checked (docs: provisioning/registration.py) and, when it
holds, its key is registered and its broker password hash installed. Accepted files
are moved to ``synced/`` next to them, rejected ones stay where they are, so running
the sync again is harmless and shows what is still wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

from provisioning.broker_auth import BrokerAuth
from provisioning.registration import SUFFIX, RegistrationError, read_registration
from provisioning.trustlist import TrustError, TrustList


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(p.glob("*" + SUFFIX))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def sync_registrations(
    paths: list[Path], trust: TrustList, broker_dir: Path | None, topic_prefix: str = "poles"
) -> list[tuple[Path, bool, str]]:
    """[(file, accepted, what happened)] for every registration file found."""
    auth = BrokerAuth(broker_dir, topic_prefix=topic_prefix) if broker_dir else None
    results = []
    for path in _files(paths):
        try:
            body, tech = read_registration(path.read_bytes(), trust.technician)
            pole_id, pk = body["pole_id"], body["public_key"]
            others = [r for r in trust.active_keys(pole_id) if r.public_key != pk]
            if others and not body.get("replaces"):
                raise RegistrationError(
                    f"pole {pole_id} already has another active key; a replacement controller "
                    "must be registered with 'pole-admin replace-controller'"
                )
            rec = trust.add(pole_id, pk, note=f"offline registration by {tech}")
            for r in others:
                trust.revoke(kid=r.kid.hex())
            msg = f"{pole_id} kid {rec.kid.hex()} active (recorded by {tech})"
            if others:
                msg += f"; revoked {len(others)} old key(s)"
            if auth is not None and body.get("broker_hash"):
                auth.set_hash(str(body.get("broker_user", pole_id)), str(body["broker_hash"]))
                msg += "; broker password installed"
            # Synced files go to synced/ beside them (a file synced from there stays put).
            done = path.parent if path.parent.name == "synced" else path.parent / "synced"
            done.mkdir(exist_ok=True)
            if done != path.parent:
                os.replace(path, done / path.name)
            results.append((path, True, msg))
        except (RegistrationError, TrustError, OSError, KeyError) as exc:
            results.append((path, False, str(exc)))
    return results
