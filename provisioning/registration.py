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

Payload (a CBOR map, text keys): type, v, pole_id, public_key, nonce, proof,
technician, recorded, and optionally lat, lon, board, broker_user, broker_hash,
replaces (bool). The file comes from outside, so it is decoded with the one strict
decoder (``edge.cbordecode``: tag 18 for the envelope only, no tags inside, definite
lengths, no duplicate keys, shallow nesting), every field has exactly one type, names
follow the one name rule (``edge.names``), and the broker user is always the pole id:
a registration cannot set the password of another pole or of one of the city's readers.
"""

from __future__ import annotations

import json
import math
import os
import stat
import time
from pathlib import Path

import cbor2
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

from edge.cbor import Tag
from edge.cbordecode import DecodeError, loads
from edge.console import registration_proof_message
from edge.cose import fingerprint, kid_for
from edge.names import InvalidName, check_id, check_pole_id, describe
from edge.state import atomic_write, write_new_secret
from provisioning.broker_auth import BrokerAuthError, check_hash

TYPE = "lightpole-registration"
SUFFIX = ".lpreg"
TECH_KEY = "technician.key"
TECH_PUB = "technician.json"
MAX_SIZE = 64 * 1024  # an honest registration is about 400 bytes
MAX_FUTURE_S = 86_400  # a laptop clock a day ahead (a wrong time zone) is still accepted
_KID_LEN = 8

REQUIRED = ("type", "v", "pole_id", "public_key", "nonce", "proof", "technician", "recorded")
OPTIONAL = ("lat", "lon", "board", "broker_user", "broker_hash", "replaces")


class RegistrationError(ValueError):
    """A registration that must not be accepted; the message says why."""


def verify_proof(pole_id: str, public_key: bytes, nonce: bytes, proof: bytes) -> bool:
    """Does ``proof`` show that whoever holds ``public_key``'s private half answered?"""
    try:
        crypto_sign_open(proof + registration_proof_message(pole_id, public_key, nonce), public_key)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


def _read_private(path: Path, limit: int) -> tuple[bytes, os.stat_result]:
    """A small file of ours, never through a symbolic link, never a FIFO or device."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path} is not a regular file")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes: the file is damaged")
    return data, st


class TechnicianKey:
    """The technician's signing key on the laptop (mode 0600, never printed)."""

    def __init__(self, name: str, seed: bytes) -> None:
        self.name = check_id(name, "technician")
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
        check_id(name, "technician")  # before anything is written
        directory.mkdir(parents=True, exist_ok=True)
        seed = os.urandom(32)
        write_new_secret(directory / TECH_KEY, seed)
        key = TechnicianKey(name, seed)
        record = json.dumps(key.public_record(), indent=2).encode()
        atomic_write(directory / TECH_PUB, record, mode=0o644)
        return key

    @staticmethod
    def load(path: Path) -> TechnicianKey:
        """``path``: the key file or the directory holding it (never a symbolic link)."""
        if path.is_dir():
            path = path / TECH_KEY
        try:
            seed, st = _read_private(path, 32)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no technician key at {path}: run 'pole-admin technician create --name YOU' "
                "and ask the city to enrol the public key it prints"
            ) from None
        except OSError as exc:
            raise PermissionError(
                f"cannot open {path} ({exc.strerror}): the key must be a regular file of "
                "yours, not a symbolic link"
            ) from None
        if st.st_mode & 0o077:
            raise PermissionError(f"{path} is readable by others: run 'chmod 600 {path}'")
        if len(seed) != 32:
            raise ValueError(f"{path} is not a 32-byte key: the file is damaged")
        try:
            pub, _ = _read_private(path.parent / TECH_PUB, 4096)
            name = json.loads(pub)["technician"]
            if not isinstance(name, str):
                raise TypeError
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(
                f"{path.parent / TECH_PUB} is missing or damaged: it names the technician; "
                "restore it from the laptop's backup"
            ) from None
        try:
            return TechnicianKey(name, seed)
        except InvalidName as exc:
            raise ValueError(
                f"{path.parent / TECH_PUB}: {exc}; make a new key with 'pole-admin technician "
                "create --name NAME --dir NEW_DIR' and ask the city to enrol it"
            ) from None


def make_registration(tech: TechnicianKey, fields: dict) -> bytes:
    payload = cbor2.dumps(
        {"type": TYPE, "v": 1, **fields, "technician": tech.name, "recorded": int(time.time())},
        canonical=True,
    )
    return tech.sign(payload)


def registration_path(directory: Path, pole_id: str, public_key: bytes) -> Path:
    return directory / f"{check_pole_id(pole_id)}-{kid_for(public_key).hex()[:8]}{SUFFIX}"


def _envelope(data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(protected, payload, signature, kid) of a COSE_Sign1 as we make them, or refused."""
    if not isinstance(data, (bytes, bytearray)):
        raise RegistrationError("not bytes")
    if not data:
        raise RegistrationError("an empty file, not a registration")
    if len(data) > MAX_SIZE:
        raise RegistrationError(f"{len(data)} bytes: a registration is at most {MAX_SIZE} bytes")
    try:
        obj = loads(bytes(data), tags=(18,), max_depth=3, max_size=MAX_SIZE)
    except DecodeError as exc:
        raise RegistrationError(f"not a well-formed registration: {exc}") from None
    if not (isinstance(obj, Tag) and obj.tag == 18 and isinstance(obj.value, list)):
        raise RegistrationError("not a COSE_Sign1 message")
    if len(obj.value) != 4:
        raise RegistrationError("malformed COSE_Sign1: it has not 4 parts")
    protected, unprotected, payload, sig = obj.value
    if not (
        isinstance(protected, bytes)
        and unprotected == {}
        and isinstance(payload, bytes)
        and isinstance(sig, bytes)
        and len(sig) == 64
    ):
        raise RegistrationError(
            "malformed COSE_Sign1: protected header, empty unprotected header, payload and "
            "a 64-byte signature expected"
        )
    try:
        header = loads(protected, max_depth=1)
    except DecodeError as exc:
        raise RegistrationError(f"malformed COSE_Sign1 protected header: {exc}") from None
    if (
        not isinstance(header, dict)
        or type(header.get(1)) is not int
        or header[1] != -8
        or not isinstance(header.get(4), bytes)
    ):
        raise RegistrationError("unexpected algorithm or no key id")
    if set(header) != {1, 4} or len(header[4]) != _KID_LEN:
        raise RegistrationError("unexpected protected header parameters or key id length")
    return protected, payload, sig, header[4]


def _field_error(key: str, want: str, value: object) -> RegistrationError:
    return RegistrationError(f"field {key} must be {want}, got {describe(value)}")


def _check_body(body: object, name: str, now: float) -> dict:
    """Every field of a signed payload, each with exactly one type; returns the body."""
    if not isinstance(body, dict) or body.get("type") != TYPE or type(body.get("v")) is not int:
        raise RegistrationError("not a version-1 lightpole registration")
    if body["v"] != 1:
        raise RegistrationError("not a version-1 lightpole registration")
    for key in body:
        if key not in REQUIRED and key not in OPTIONAL:
            raise RegistrationError(f"unexpected field {describe(key)}")
    missing = [k for k in REQUIRED if k not in body]
    if "technician" in missing:
        raise RegistrationError("technician name does not match the signing key")
    tech = body["technician"]
    if not isinstance(tech, str) or tech != name:
        raise RegistrationError("technician name does not match the signing key")
    if "pole_id" in missing or "public_key" in missing:
        raise RegistrationError("pole id or public key missing")
    try:
        pole_id = check_pole_id(body["pole_id"])
    except InvalidName as exc:
        raise RegistrationError(str(exc)) from None
    pk = body["public_key"]
    if not (isinstance(pk, bytes) and len(pk) == 32):
        raise _field_error("public_key", "32 bytes (an Ed25519 key)", pk)
    if "nonce" in missing or "proof" in missing:
        raise RegistrationError("proof of possession missing")
    nonce, proof = body["nonce"], body["proof"]
    if not (isinstance(nonce, bytes) and 16 <= len(nonce) <= 64):
        raise _field_error("nonce", "16 to 64 bytes", nonce)
    if not (isinstance(proof, bytes) and len(proof) == 64):
        raise _field_error("proof", "64 bytes (an Ed25519 signature)", proof)
    if missing:
        raise RegistrationError("field " + missing[0] + " missing")
    recorded = body["recorded"]
    if type(recorded) is not int or recorded <= 0:
        raise _field_error("recorded", "a positive whole number of seconds (Unix time)", recorded)
    if recorded > now + MAX_FUTURE_S:
        raise RegistrationError(
            "recorded more than a day in the future: check the technician laptop's clock "
            "and record the registration again"
        )
    for key, limit in (("lat", 90.0), ("lon", 180.0)):
        if key in body:
            v = body[key]
            if type(v) not in (int, float) or not math.isfinite(v) or abs(v) > limit:
                raise _field_error(key, f"a number from -{limit:g} to {limit:g}", v)
    if "board" in body:
        try:
            check_id(body["board"], "board")
        except InvalidName as exc:
            raise RegistrationError(str(exc)) from None
    if "replaces" in body and type(body["replaces"]) is not bool:
        raise _field_error("replaces", "true or false", body["replaces"])
    if "broker_user" in body:
        user = body["broker_user"]
        if user != pole_id:
            raise RegistrationError(
                f"broker user {describe(user)} is not the pole id {pole_id}: a pole's broker "
                "user is always its pole id, a registration cannot name another account"
            )
    if "broker_hash" in body:
        try:
            check_hash(body["broker_hash"])
        except BrokerAuthError as exc:
            raise RegistrationError(f"field broker_hash: {exc}") from None
    return body


def read_registration(data: bytes, technician_lookup, now: float | None = None) -> tuple[dict, str]:
    """Check a registration; returns (payload, technician name) or raises RegistrationError.

    ``technician_lookup(kid) -> (name, public_key, status) | None``. Nothing of the
    payload is looked at before the technician's signature holds.
    """
    protected, payload, sig, kid = _envelope(data)
    tech = technician_lookup(kid)
    if tech is None:
        raise RegistrationError(f"signed by an unknown technician key {kid.hex()}")
    name, tech_pk, status = tech
    if status != "active":
        raise RegistrationError(f"technician {name}'s key is revoked")
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    try:
        crypto_sign_open(sig + tbs, tech_pk)
    except (BadSignatureError, ValueError, TypeError):
        raise RegistrationError(
            "technician signature does not verify: altered on the way?"
        ) from None
    try:
        body = loads(payload, max_depth=1)
    except DecodeError as exc:
        raise RegistrationError(f"payload is not well-formed: {exc}") from None
    body = _check_body(body, name, time.time() if now is None else now)
    if not verify_proof(body["pole_id"], body["public_key"], body["nonce"], body["proof"]):
        raise RegistrationError("the pole's proof of possession does not verify")
    return body, name
