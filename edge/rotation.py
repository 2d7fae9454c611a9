"""Key rotation on the pole: a new key, announced in a message signed by the old one.

``rotate(state_dir)`` generates the new key on the controller, writes an announcement
(COSE_Sign1 under the OLD key) to ``rotation.cose`` and replaces the key. The
announcement's SenML carries the new public key, its kid, and a proof of possession:
the new key's signature over ``"lightpole-rotate" ‖ pole_id ‖ new_key ‖ old_kid``, so
nobody can announce a key they do not hold. The daemon sends a pending announcement
(through the spool, before anything signed with the new key) on topic
``<prefix>/<pole>/rotate``; the verifier then adds the new key to the trust list.

Rotation is not revocation: the old key stays valid for what it already signed
(messages still in the spool). Revoke it with ``pole-admin trust revoke --kid``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

from edge import messages
from edge.clock import Clock
from edge.cose import Signer, cti_bytes, kid_for
from edge.state import KEY_FILE, PUB_FILE, Identity, PersistentCounter, atomic_write, load_identity

ANNOUNCEMENT = "rotation.cose"
PROOF_CONTEXT = b"lightpole-rotate"


def proof_message(pole_id: str, new_key: bytes, old_kid: bytes) -> bytes:
    return PROOF_CONTEXT + pole_id.encode() + new_key + old_kid


def rotate(state_dir: Path, clock: Clock | None = None) -> Identity:
    """Replace the pole's key; returns the new identity. The announcement is left in
    ``state_dir/rotation.cose`` for the daemon to send."""
    clock = clock or Clock()
    old = load_identity(state_dir)
    seed = os.urandom(32)
    new_pk, new_sk = crypto_sign_seed_keypair(seed)
    proof = crypto_sign(proof_message(old.pole_id, new_pk, old.kid), new_sk)[:64]
    bt = int(clock.wall()) if clock.valid() else 0
    payload = messages.pack(
        messages.ROTATE,
        old.pole_id,
        bt,
        [("rotate/new_key", new_pk), ("rotate/new_kid", kid_for(new_pk)), ("rotate/proof", proof)],
    )
    # A fresh boot epoch for this one message: its cti cannot collide with the daemon's.
    boot = PersistentCounter(state_dir / "boot_counter").advance()
    iat = int(clock.wall()) if clock.valid() else None
    message = Signer(old.seed, old.pole_id).sign("rotate", payload, iat, cti_bytes(boot, 1))
    atomic_write(state_dir / ANNOUNCEMENT, message, mode=0o644)
    new = Identity(old.pole_id, seed)
    atomic_write(state_dir / KEY_FILE, seed, mode=0o600)
    record = new.public_record()
    record["previous_kid"] = old.kid.hex()
    record["rotated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    atomic_write(state_dir / PUB_FILE, json.dumps(record, indent=2).encode())
    return new
