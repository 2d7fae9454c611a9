"""Offline registrations: recorded at the pole, synced to the city's trust list later.

At the foot of a pole there is often no network. The technician's laptop then writes a
registration file instead of touching the trust list. The file is a COSE_Sign1
(RFC 9052, EdDSA) signed with the technician's own key, which the city enrolled
beforehand (``pole-admin trust add-technician``), and it carries the pole's proof of
possession: the pole key's signature over ``"lightpole-register" 0 pole_id 0 key nonce``,
made on the controller. So nobody on the way (a USB stick, e-mail, a shared drive) can
forge or alter a registration: a changed byte breaks the technician's signature, a
technician cannot register a key the controller does not hold, and a key from
elsewhere lacks the technician's signature. ``pole-admin trust sync`` checks both and
registers the key (and the pole's broker password hash) in one go.

Payload (a CBOR map, text keys): type, v, pole_id, public_key, nonce, proof, lat, lon,
board, broker_user, broker_hash, technician, recorded, replaces (bool).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cbor2
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

from edge.console import registration_proof_message
from edge.cose import fingerprint, kid_for
from edge.state import atomic_write, write_new_secret

TYPE = "lightpole-registration"
SUFFIX = ".lpreg"
TECH_KEY = "technician.key"
TECH_PUB = "technician.json"


class RegistrationError(ValueError):
    """A registration that must not be accepted; the message says why."""


def verify_proof(pole_id: str, public_key: bytes, nonce: bytes, proof: bytes) -> bool:
    """Does ``proof`` show that whoever holds ``public_key``'s private half answered?"""
    try:
        crypto_sign_open(proof + registration_proof_message(pole_id, public_key, nonce), public_key)
    except (BadSignatureError, ValueError):
        return False
    return True


class TechnicianKey:
    """The technician's signing key on the laptop (mode 0600, never printed)."""

    def __init__(self, name: str, seed: bytes) -> None:
        self.name = name
        self.public_key, self._sk = crypto_sign_seed_keypair(seed)
        self.kid = kid_for(self.public_key)

    def __repr__(self) -> str:
        return f"TechnicianKey({self.name!r}, kid={self.kid.hex()})"

    def public_record(self) -> dict:
        return {
            "technician": self.name,
            "kid": self.kid.hex(),
            "public_key": self.public_key.hex(),
            "fingerprint": fingerprint(self.public_key),
        }

    def sign(self, payload: bytes) -> bytes:
        """COSE_Sign1 (tag 18): protected {alg: EdDSA, kid}, no unprotected headers."""
        protected = cbor2.dumps({1: -8, 4: self.kid})
        tbs = cbor2.dumps(["Signature1", protected, b"", payload])
        sig = crypto_sign(tbs, self._sk)[:64]
        return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, sig]))

    @staticmethod
    def create(directory: Path, name: str) -> TechnicianKey:
        directory.mkdir(parents=True, exist_ok=True)
        seed = os.urandom(32)
        write_new_secret(directory / TECH_KEY, seed)
        key = TechnicianKey(name, seed)
        atomic_write(directory / TECH_PUB, json.dumps(key.public_record(), indent=2).encode())
        return key

    @staticmethod
    def load(path: Path) -> TechnicianKey:
        """``path``: the key file or the directory holding it."""
        if path.is_dir():
            path = path / TECH_KEY
        try:
            st = path.stat()
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no technician key at {path}: run 'pole-admin technician create --name YOU' "
                "and ask the city to enrol the public key it prints"
            ) from None
        if st.st_mode & 0o077:
            raise PermissionError(f"{path} is readable by others: run 'chmod 600 {path}'")
        seed = path.read_bytes()
        if len(seed) != 32:
            raise ValueError(f"{path} is not a 32-byte key: the file is damaged")
        name = json.loads((path.parent / TECH_PUB).read_text())["technician"]
        return TechnicianKey(name, seed)


def make_registration(tech: TechnicianKey, fields: dict) -> bytes:
    payload = cbor2.dumps(
        {"type": TYPE, "v": 1, **fields, "technician": tech.name, "recorded": int(time.time())},
        canonical=True,
    )
    return tech.sign(payload)


def registration_path(directory: Path, pole_id: str, public_key: bytes) -> Path:
    return directory / f"{pole_id}-{kid_for(public_key).hex()[:8]}{SUFFIX}"


def read_registration(data: bytes, technician_lookup) -> tuple[dict, str]:
    """Check a registration; returns (payload, technician name) or raises RegistrationError.

    ``technician_lookup(kid) -> (name, public_key, status) | None``.
    """
    try:
        obj = cbor2.loads(data)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is "not a registration"
        raise RegistrationError(f"not CBOR ({type(exc).__name__})") from None
    if not (
        isinstance(obj, cbor2.CBORTag) and obj.tag == 18 and isinstance(obj.value, (list, tuple))
    ):
        raise RegistrationError("not a COSE_Sign1 message")
    if cbor2.dumps(obj) != data:
        raise RegistrationError("trailing or non-canonical bytes")
    try:
        protected, _unprotected, payload, sig = obj.value
        header = cbor2.loads(protected)
    except (ValueError, Exception):  # noqa: BLE001
        raise RegistrationError("malformed COSE_Sign1") from None
    if not isinstance(header, dict) or header.get(1) != -8 or not isinstance(header.get(4), bytes):
        raise RegistrationError("unexpected algorithm or no key id")
    tech = technician_lookup(header[4])
    if tech is None:
        raise RegistrationError(f"signed by an unknown technician key {header[4].hex()}")
    name, tech_pk, status = tech
    if status != "active":
        raise RegistrationError(f"technician {name}'s key is revoked")
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    try:
        crypto_sign_open(bytes(sig) + tbs, tech_pk)
    except (BadSignatureError, ValueError, TypeError):
        raise RegistrationError(
            "technician signature does not verify: altered on the way?"
        ) from None
    try:
        body = cbor2.loads(payload)
    except Exception:  # noqa: BLE001
        raise RegistrationError("payload is not CBOR") from None
    if not isinstance(body, dict) or body.get("type") != TYPE or body.get("v") != 1:
        raise RegistrationError("not a version-1 lightpole registration")
    if body.get("technician") != name:
        raise RegistrationError("technician name does not match the signing key")
    pole_id, pk = body.get("pole_id"), body.get("public_key")
    nonce, proof = body.get("nonce"), body.get("proof")
    if not (isinstance(pole_id, str) and isinstance(pk, bytes) and len(pk) == 32):
        raise RegistrationError("pole id or public key missing")
    if not (isinstance(nonce, bytes) and isinstance(proof, bytes)):
        raise RegistrationError("proof of possession missing")
    if not verify_proof(pole_id, pk, nonce, proof):
        raise RegistrationError("the pole's proof of possession does not verify")
    return body, name
