"""The city's operator keys: who may change a finished pole.

Three kinds of key, three roles, never mixed (docs/security-console.md):
- a pole's key signs what the pole publishes;
- a technician's key signs offline registrations (``trust sync`` accepts only enrolled
  technicians);
- an operator key belongs to the city: its public half is installed on every pole at
  provisioning (``operators.json``), and only it can authorise changes to a finished
  pole over the console (later also signed configuration and updates, issue 16).

An operator key lives on the city's machine, like a technician's on the laptop: a
32-byte Ed25519 seed in ``operator.key`` (mode 0600 whatever the umask, never printed,
never followed through a symlink) beside ``operator.json`` (its public record).

A console authorisation is a COSE_Sign1 (tag 18, EdDSA), protected header
``{1: -8, 4: kid}``, no unprotected headers, over the CBOR map
``{"type": "lightpole-console-auth", "v": 1, "pole_id", "command", "nonce", "exp"}``:
one command on one pole, bound to the challenge the pole handed out (HELLO), valid
once and until ``exp``. It is carried as hex, in a file or on the console line.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

from edge import cbor, cbordecode
from edge.console_auth import (
    AUTH_FIELDS,
    AUTH_TYPE,
    AUTH_VERSION,
    GUARDED,
    MAX_AUTH_HEX,
    auth_payload,
    sig_structure,
)
from edge.cose import ALG_EDDSA, COSE_SIGN1_TAG, HDR_ALG, HDR_KID, fingerprint, kid_for
from edge.names import check_id, check_pole_id, describe
from edge.state import atomic_write, write_new_secret
from provisioning.console_client import ProvisionError

OPERATOR_KEY = "operator.key"
OPERATOR_PUB = "operator.json"
DEFAULT_DIR = Path.home() / ".config" / "lightpole"
DEFAULT_VALID_S = 15 * 60
MAX_VALID_S = 24 * 3600
_MAX_PUBLIC_RECORD = 4096


def read_regular_file(path: Path, max_size: int, *, private: bool = False) -> bytes:
    """The bytes of ``path``, refusing symlinks (O_NOFOLLOW), FIFOs and devices, files
    larger than ``max_size`` and, when ``private``, files others may read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if os.path.islink(path):
            raise PermissionError(
                f"{path} is a symbolic link: keys and authorisations are read only from "
                "regular files; copy the file itself there"
            ) from None
        raise PermissionError(f"cannot open {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise PermissionError(f"{path} is not a regular file")
        if private and st.st_mode & 0o077:
            raise PermissionError(f"{path} is readable by others: run 'chmod 600 {path}'")
        if st.st_size > max_size:
            raise ValueError(f"{path} is {st.st_size} bytes, more than the {max_size} expected")
        data = os.read(fd, max_size + 1)
    finally:
        os.close(fd)
    if len(data) > max_size:
        raise ValueError(f"{path} grew while it was read")
    return data


def read_public_record(directory: Path) -> dict:
    """``operator.json`` of a key directory: name and public key (no secret is read)."""
    path = directory / OPERATOR_PUB
    try:
        rec = json.loads(read_regular_file(path, _MAX_PUBLIC_RECORD).decode("ascii"))
        name = check_id(rec["operator"], "operator")
        pk = bytes.fromhex(rec["public_key"])
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no operator key in {directory}: make one with 'pole-admin operator create "
            f"--name NAME --dir {directory}'"
        ) from None
    except (ValueError, KeyError, TypeError, UnicodeError):
        raise ValueError(f"{path} is not an operator key's public record") from None
    if len(pk) != 32:
        raise ValueError(f"{path}: an Ed25519 public key is 32 bytes")
    return {"operator": name, "public_key": pk}


class OperatorKey:
    """A city operator's signing key (mode 0600, never printed).

    Args:
        name: the operator's name (the id rule of edge.names), as enrolled in the trust list.
        seed: the 32-byte Ed25519 seed.
    """

    def __init__(self, name: str, seed: bytes) -> None:
        self.name = check_id(name, "operator")
        self.public_key, self._sk = crypto_sign_seed_keypair(seed)
        self.kid = kid_for(self.public_key)

    def __repr__(self) -> str:  # never the seed, even in a traceback
        return f"OperatorKey({self.name!r}, kid={self.kid.hex()})"

    def public_record(self) -> dict:
        return {
            "operator": self.name,
            "role": "operator",
            "kid": self.kid.hex(),
            "public_key": self.public_key.hex(),
            "fingerprint": fingerprint(self.public_key),
        }

    def sign(self, payload: bytes) -> bytes:
        """COSE_Sign1 (tag 18): protected {alg: EdDSA, kid}, no unprotected headers."""
        protected = cbor.dumps(cbor.Map([(HDR_ALG, ALG_EDDSA), (HDR_KID, self.kid)]))
        sig = crypto_sign(sig_structure(protected, payload), self._sk)[:64]
        return cbor.dumps(cbor.Tag(COSE_SIGN1_TAG, [protected, {}, payload, sig]))

    def authorise(
        self,
        pole_id: str,
        command: str,
        challenge: bytes,
        valid_s: int = DEFAULT_VALID_S,
        now: float | None = None,
    ) -> bytes:
        """A one-time console authorisation for ``command`` on ``pole_id``."""
        check_pole_id(pole_id)
        command = check_command(command)
        if len(challenge) != 16:
            raise ValueError("the challenge is 16 bytes (32 hex digits), as the pole showed it")
        if not 0 < valid_s <= MAX_VALID_S:
            raise ValueError(f"an authorisation is valid for 1 s to {MAX_VALID_S // 3600} h")
        exp = int((time.time() if now is None else now) + valid_s)
        return self.sign(auth_payload(pole_id, command, challenge, exp))

    @staticmethod
    def create(directory: Path, name: str) -> OperatorKey:
        """A new key in ``directory``; refuses to replace one (FileExistsError)."""
        check_id(name, "operator")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        seed = os.urandom(32)
        write_new_secret(directory / OPERATOR_KEY, seed)  # O_EXCL: never through a link
        key = OperatorKey(name, seed)
        record = json.dumps(key.public_record(), indent=2).encode()
        atomic_write(directory / OPERATOR_PUB, record, mode=0o644)
        return key

    @staticmethod
    def load(path: Path) -> OperatorKey:
        """``path``: the key file or the directory holding it."""
        if path.is_dir():
            path = path / OPERATOR_KEY
        try:
            seed = read_regular_file(path, 32, private=True)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"no operator key at {path}: the city makes one with 'pole-admin operator "
                "create --name NAME' and enrols it with 'pole-admin trust add-operator'"
            ) from None
        if len(seed) != 32:
            raise ValueError(f"{path} is not a 32-byte key: the file is damaged")
        rec = read_public_record(path.parent)
        key = OperatorKey(rec["operator"], seed)
        if key.public_key != rec["public_key"]:
            raise ValueError(f"{path.parent / OPERATOR_PUB} does not belong to {path}")
        return key


def check_command(command: object) -> str:
    if not isinstance(command, str) or command.upper() not in GUARDED:
        raise ValueError(
            f"command {describe(command)}: an authorisation is for one of "
            f"{', '.join(sorted(GUARDED))}"
        )
    return command.upper()


def parse_challenge(text: str) -> bytes:
    text = text.strip()
    try:
        ch = bytes.fromhex(text)
    except ValueError:
        ch = b""
    if len(ch) != 16 or len(text) != 32:
        raise ValueError(
            "the challenge is the 32 hex digits the pole shows (pole-admin prints it when it "
            "asks for an authorisation)"
        )
    return ch


class Authorisation:
    """What an authorisation says, read without checking its signature (the pole does
    that): so the laptop can say early that a token does not fit, before sending it."""

    def __init__(self, token_hex: str) -> None:
        self.hex = token_hex
        try:
            if len(token_hex) > MAX_AUTH_HEX:
                raise ValueError
            msg = cbordecode.loads(bytes.fromhex(token_hex), tags=(COSE_SIGN1_TAG,))
            protected, _, payload, _ = msg.value
            self.kid = cbordecode.loads(protected)[HDR_KID]
            body = cbordecode.loads(payload)
            if set(body) != AUTH_FIELDS or body["type"] != AUTH_TYPE or body["v"] != AUTH_VERSION:
                raise ValueError
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ValueError(
                "not a console authorisation (pole-admin operator authorise)"
            ) from None
        self.pole_id = body["pole_id"]
        self.command = body["command"]
        self.nonce = body["nonce"]
        self.exp = body["exp"]

    @staticmethod
    def read(path: Path) -> Authorisation:
        try:
            data = read_regular_file(path, MAX_AUTH_HEX + 16)
            return Authorisation(data.decode("ascii").strip())
        except (ValueError, UnicodeError) as exc:
            raise ValueError(f"{path}: {exc}") from None


class Authoriser:
    """Gets console commands on a finished pole authorised, on the laptop: signed here
    with an operator key (``key``), or with a token the city made for this pole, this
    command and this challenge (``token``, the two-step flow)."""

    def __init__(self, key: OperatorKey | None = None, token: Authorisation | None = None) -> None:
        self.key = key
        self.token = token
        self.used = False

    def require(self, pole_id: str, command: str, challenge: bytes) -> None:
        """Raise ProvisionError (what to ask the city for) unless ``command`` can be
        authorised; nothing is used up."""
        if self.key is not None:
            return
        ask = (
            f"ask the city for an authorisation: pole-admin operator authorise {pole_id} "
            f"{command} --challenge {challenge.hex()} --out {command.lower()}.auth; then run "
            f"this command again with --authorisation {command.lower()}.auth (the challenge "
            "stays valid for a few minutes and until it is used). Holding a city operator "
            "key, give --operator-key DIR instead"
        )
        t = self.token
        if t is None or self.used:
            raise ProvisionError(
                f"pole {pole_id} is finished: {command} needs an authorisation from the city",
                ask,
            )
        if t.pole_id != pole_id or t.command != command:
            raise ProvisionError(
                f"the authorisation is for {describe(t.command)} on pole "
                f"{describe(t.pole_id)}, but {command} on {pole_id} needs one",
                ask,
            )
        if t.nonce != challenge:
            raise ProvisionError(
                "the authorisation was made for another challenge (an older one, or the "
                "pole restarted)",
                ask,
            )
        if not isinstance(t.exp, int) or t.exp <= time.time():
            raise ProvisionError("the authorisation has expired", ask)

    def token_for(self, pole_id: str, command: str, challenge: bytes) -> str:
        self.require(pole_id, command, challenge)
        if self.key is not None:
            return self.key.authorise(pole_id, command, challenge).hex()
        self.used = True
        assert self.token is not None
        return self.token.hex
