"""Where pole keys live at city scale, and how every worker sees the same ones.

The registration side keeps its trust list (``pole-admin trust``: a SQLite file, the
authority for who is registered and who is revoked). Workers on many machines cannot
share that file, so the store holds the keys every worker uses (table ``keys``):

- ``sync_trust`` (run every second by one ingest service, the one given ``--trust``, or by
  ``city keys sync``) brings the file's new keys and revocations into the store, and
  writes keys learned from rotation messages back into the file, so that ``pole-admin
  trust revoke --pole-id`` and ``--compromised`` reach them too. A revoked key is never
  made active again, in either place.
- A worker records the key a rotation message announces with the batch holding that
  message (``RotationIntake``), in the same transaction: a rotation is never
  acknowledged unrecorded.
- Every worker polls ``keys_since(rev)`` (``SharedKeys``), about once a second and at
  once when a message names a key or pole it does not know: a revocation, a rotation or
  a new pole reaches every worker within a poll, without a restart.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from city.store import Store
from provisioning.trustlist import KeyRecord, TrustError, TrustList

log = logging.getLogger(__name__)


class SharedKeys:
    """A worker's copy of the store's keys, brought up to date by ``refresh``."""

    def __init__(self) -> None:
        self.keys: dict[bytes, KeyRecord] = {}
        self.rev = 0

    def refresh(self, store: Store) -> list[KeyRecord]:
        """Fetch what changed since the last call (run in the database thread); returns
        the changed records, which ``apply`` then puts in place."""
        recs, rev = store.keys_since(self.rev)
        self.rev = rev
        return recs

    def apply(self, recs: list[KeyRecord]) -> None:
        for r in recs:
            self.keys[r.kid] = r


class RotationIntake:
    """Given to the Verifier as its ``trust``: the verifier calls ``add`` when a rotation
    message with a valid proof announces a new key. The key is usable by this worker at
    once and is written to the store with the next batch (``take``)."""

    def __init__(self) -> None:
        self.pending: list[KeyRecord] = []

    def add(
        self, pole_id: str, public_key: bytes, note: str = "", rotated_from: str | None = None
    ) -> KeyRecord:
        rec = KeyRecord(pole_id, public_key, rotated_from=rotated_from)
        self.pending.append(rec)
        log.info("pole %s announced key %s (rotated from %s)", pole_id, rec.kid.hex(), rotated_from)
        return rec

    def take(self) -> list[KeyRecord]:
        out, self.pending = self.pending, []
        return out


def trust_stamp(path: Path) -> tuple:
    """What changes when the trust list file (or its WAL) is written."""
    out = []
    for p in (path, Path(str(path) + "-wal")):
        try:
            st = p.stat()
            out.append((st.st_mtime_ns, st.st_size, st.st_ino))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def sync_trust(store: Store, path: Path) -> tuple[int, int]:
    """One two-way pass between the trust list file and the store; returns (changes in
    the store, keys written to the file)."""
    if not os.path.exists(path):
        raise TrustError(f"{path}: no such trust list")
    stored, _ = store.keys_since(0)
    in_store = {r.kid: r for r in stored}
    to_file = 0
    with TrustList(path) as tl:
        in_file = {r.kid: r for r in tl.records()}
        # Rotations the workers accepted: into the file (its rules decide their status).
        for rec in stored:
            if rec.kid not in in_file and rec.rotated_from:
                try:
                    note = f"rotated from {rec.rotated_from}"
                    rec2 = tl.add(rec.pole_id, rec.public_key, note, rec.rotated_from)
                except TrustError as exc:
                    log.warning("rotated key %s not written to %s: %s", rec.kid.hex(), path, exc)
                    continue
                in_file[rec2.kid] = rec2
                to_file += 1
    add = [r for kid, r in in_file.items() if kid not in in_store]
    revoke = [
        kid
        for kid, r in in_file.items()
        if r.status == "revoked" and kid in in_store and in_store[kid].status == "active"
    ]
    changed = store.apply_trust(add, revoke) if (add or revoke) else 0
    if changed or to_file:
        log.info(
            "trust list %s: %d key changes into the store, %d rotated keys into the file",
            path,
            changed,
            to_file,
        )
    return changed, to_file
