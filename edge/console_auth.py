"""The console authorisation: what makes a finished pole accept a change over its cable.

A cable at the pole is not an authorisation. Once a pole is finished, the console
commands that change it (GUARDED) need a one-time authorisation from the city: a
COSE_Sign1 (RFC 9052, tag 18, EdDSA) made by one of the city's operator keys, whose
public halves provisioning installed in ``operators.json``, over the CBOR map::

    {"type": "lightpole-console-auth", "v": 1, "pole_id": ..., "command": ...,
     "nonce": <the pole's 16-byte challenge>, "exp": <unix time>}

with protected header ``{1: -8 (EdDSA), 4: kid}`` and no unprotected headers. The
challenge comes from HELLO, lives in RAM only and is used up by the first command
that presents an authorisation (``Challenge``). Decoded only by ``edge.cbordecode``.
The signing side is ``provisioning/operator.py``; docs/security-console.md.
"""

from __future__ import annotations

import hmac
import json
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from nacl.bindings import crypto_sign_open

from edge import cbor, cbordecode
from edge.console_args import HEX, MAX_OPERATORS, ConsoleError
from edge.cose import ALG_EDDSA, COSE_SIGN1_TAG, HDR_ALG, HDR_KID, kid_for
from edge.names import check_id, describe

AUTH_TYPE = "lightpole-console-auth"
AUTH_VERSION = 1
AUTH_FIELDS = frozenset(("type", "v", "pole_id", "command", "nonce", "exp"))
# Commands that change a finished pole: a cable alone is not enough for them.
GUARDED = frozenset(("CONFIGURE", "CREDENTIALS", "OPERATORS", "WIPE"))
CHALLENGE_BYTES = 16
CHALLENGE_TTL_S = 600.0  # long enough to phone the city for a token, short enough to go stale
MAX_AUTH_HEX = 2048  # a real token is about 400 hex characters
OPERATORS_FILE = "operators.json"
OPERATORS_FORMAT = "lightpole-operators"
MAX_OPERATORS_FILE = 64 * 1024


def auth_payload(pole_id: str, command: str, nonce: bytes, exp: int) -> bytes:
    """The CBOR map an operator signs to authorise one console command on one pole."""
    return cbor.dumps(
        cbor.Map(
            [
                ("type", AUTH_TYPE),
                ("v", AUTH_VERSION),
                ("pole_id", pole_id),
                ("command", command),
                ("nonce", nonce),
                ("exp", exp),
            ]
        )
    )


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    """RFC 9052 Sig_structure for COSE_Sign1 without external AAD."""
    return cbor.dumps(["Signature1", protected, b"", payload])


def check_authorisation(
    token: object,
    operators: dict[bytes, tuple[str, bytes]],
    *,
    pole_id: str,
    command: str,
    challenge: bytes | None,
    now: float,
) -> str:
    """The operator's name if ``token`` (hex of a COSE_Sign1) authorises ``command`` on
    ``pole_id`` for ``challenge``; ConsoleError with what to do otherwise. ``operators``:
    kid -> (name, public key), from operators.json."""
    if (
        not isinstance(token, str)
        or not 0 < len(token) <= MAX_AUTH_HEX
        or len(token) % 2
        or any(c not in HEX for c in token)
    ):
        raise ConsoleError("auth_malformed", f"the authorisation is {describe(token)}, not hex")
    try:
        msg = cbordecode.loads(bytes.fromhex(token), tags=(COSE_SIGN1_TAG,), max_depth=4)
        if not (
            isinstance(msg, cbor.Tag)
            and msg.tag == COSE_SIGN1_TAG
            and isinstance(msg.value, list)
            and len(msg.value) == 4
        ):
            raise cbordecode.DecodeError("not a COSE_Sign1")
        protected, unprotected, payload, signature = msg.value
        if not (
            isinstance(protected, bytes)
            and unprotected == {}
            and isinstance(payload, bytes)
            and isinstance(signature, bytes)
            and len(signature) == 64
        ):
            raise cbordecode.DecodeError("not a COSE_Sign1 with an Ed25519 signature")
        header = cbordecode.loads(protected, max_depth=1)
        if not (
            isinstance(header, dict)
            and set(header) == {HDR_ALG, HDR_KID}
            and type(header[HDR_ALG]) is int
            and header[HDR_ALG] == ALG_EDDSA
            and isinstance(header[HDR_KID], bytes)
            and len(header[HDR_KID]) == 8
        ):
            raise cbordecode.DecodeError("the protected header is not {alg: EdDSA, kid}")
    except cbordecode.DecodeError as exc:
        raise ConsoleError(
            "auth_malformed",
            f"the authorisation is not a signed console authorisation ({exc})",
            "ask the city for a new one (pole-admin operator authorise)",
        ) from None
    op = operators.get(header[HDR_KID])
    if op is None:
        raise ConsoleError(
            "auth_unknown_key",
            "the authorisation is not signed by one of this pole's city operator keys (a "
            "technician's key, a withdrawn operator key or an unknown key cannot authorise)",
            "ask the city for an authorisation made with a current operator key",
        )
    name, public_key = op
    try:
        crypto_sign_open(signature + sig_structure(protected, payload), public_key)
    except Exception:  # noqa: BLE001 - BadSignatureError, or a malformed key or message
        raise ConsoleError(
            "auth_bad_signature",
            "the authorisation's signature does not verify: it was altered or damaged",
            "ask the city for a new one; copy the file, do not retype it",
        ) from None
    try:
        body = cbordecode.loads(payload, max_depth=1)
    except cbordecode.DecodeError:
        body = None
    if (
        not isinstance(body, dict)
        or set(body) != AUTH_FIELDS
        or body["type"] != AUTH_TYPE
        or body["v"] != AUTH_VERSION
    ):
        raise ConsoleError(
            "auth_malformed",
            "the signed document is not a version-1 console authorisation",
            "ask the city for a console authorisation (pole-admin operator authorise)",
        )
    if body["pole_id"] != pole_id:
        raise ConsoleError(
            "auth_wrong_pole",
            f"the authorisation is for pole {describe(body['pole_id'])}, not this pole ({pole_id})",
            "check the pole number on the mast and ask the city for one for this pole",
        )
    if body["command"] != command:
        raise ConsoleError(
            "auth_wrong_command",
            f"the authorisation is for the command {describe(body['command'])}, not {command}",
            f"ask the city for an authorisation for {command}",
        )
    nonce = body["nonce"]
    if (
        challenge is None
        or not isinstance(nonce, bytes)
        or not hmac.compare_digest(nonce, challenge)
    ):
        raise ConsoleError(
            "auth_challenge",
            "the authorisation was made for another challenge: it was used already, "
            "expired, or replaced by a newer one (each authorisation works once)",
            "ask the city for a new authorisation with the pole's current challenge",
        )
    exp = body["exp"]
    if isinstance(exp, bool) or not isinstance(exp, int) or exp <= now:
        raise ConsoleError(
            "auth_expired",
            "the authorisation has expired",
            "ask the city for a new one (check the controller's clock if this repeats)",
        )
    return name


def read_operators(path: Path) -> dict[bytes, tuple[str, bytes]]:
    """kid -> (name, public key) from operators.json; {} when absent or damaged (then
    nothing can be authorised, which is the safe side). Not followed through symlinks."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_OPERATORS_FILE:
            return {}
        data = os.read(fd, MAX_OPERATORS_FILE + 1)
    except OSError:
        return {}
    finally:
        os.close(fd)
    try:
        doc = json.loads(data.decode("ascii"), parse_constant=_refuse_constant)
        if doc["format"] != OPERATORS_FORMAT:
            return {}
        out = {}
        for op in doc["operators"][:MAX_OPERATORS]:
            pk = bytes.fromhex(op["public_key"])
            if len(pk) != 32:
                return {}
            out[kid_for(pk)] = (check_id(op["name"], "operator"), pk)
        return out
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return {}


def _refuse_constant(name: str) -> object:
    raise ValueError("NaN and Infinity are not JSON")


class Challenge:
    """The pole's current challenge for an authorisation: random, in RAM only (a restart
    forgets it), the same one until it is used or ``ttl_s`` old, so a technician can
    fetch a token for it and come back; used up by the first command presenting one."""

    def __init__(self, ttl_s: float = CHALLENGE_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.clock = clock
        self._value: bytes | None = None
        self._at = 0.0

    def current(self) -> bytes:
        now = self.clock()
        if self._value is None or now - self._at > self.ttl_s:
            self._value = os.urandom(CHALLENGE_BYTES)
            self._at = now
        return self._value

    def take(self) -> bytes | None:
        """The challenge if still valid, and it is gone: one use, success or not."""
        value, self._value = self._value, None
        if value is None or self.clock() - self._at > self.ttl_s:
            return None
        return value

    def forget(self) -> None:
        self._value = None
