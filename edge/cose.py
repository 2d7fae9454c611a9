"""COSE_Sign1 (RFC 9052) with Ed25519, CWT claims in the protected header (RFC 9597).

Every message the pole publishes is one of these: tag 18 around
``[protected, {}, payload, signature]`` where ``protected`` holds::

    {1: -8 (EdDSA), 3: 112 (application/senml+cbor), 4: kid,
     15: {1: iss = pole id, 6: iat, 7: cti = 8-byte big-endian (boot << 32 | seq)},
     16: typ = "application/vnd.lightpole.<kind>+cose"}

``typ`` (RFC 9596) names the message kind (edge/messages.py) inside the signed bytes,
so a message signed as one kind cannot be passed off as another.

The constant parts of the header and of the Sig_structure are encoded once per pole;
per message only iat, cti and the payload are added, so encoding stays a small
fraction of the signature's cost.
"""

from __future__ import annotations

import hashlib
import struct

from nacl.bindings import crypto_sign, crypto_sign_seed_keypair

from edge import cbor
from edge.messages import KINDS

ALG_EDDSA = -8
ALG_ED25519 = -19
HDR_ALG = 1
HDR_CONTENT_TYPE = 3
HDR_KID = 4
HDR_CWT_CLAIMS = 15
HDR_TYP = 16
CWT_ISS = 1
CWT_IAT = 6
CWT_CTI = 7
COSE_SIGN1_TAG = 18
MQTT_CONTENT_TYPE = 'application/cose; cose-type="cose-sign1"'

_SIG1_CONTEXT = cbor.encode_text("Signature1")
_EMPTY_BSTR = b"\x40"


def kid_for(public_key: bytes) -> bytes:
    """Key id: the first 8 bytes of SHA-256 over the raw public key (stable, short, public)."""
    return hashlib.sha256(public_key).digest()[:8]


def fingerprint(public_key: bytes) -> str:
    """Human-checkable fingerprint for labels and technicians: kid as grouped hex."""
    h = kid_for(public_key).hex()
    return ":".join(h[i : i + 4] for i in range(0, len(h), 4))


def cti_bytes(boot: int, seq: int) -> bytes:
    return struct.pack(">II", boot, seq)


class Signer:
    """Signs payloads as COSE_Sign1 for one pole identity."""

    def __init__(self, seed: bytes, pole_id: str, content_format: int = 112) -> None:
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self.public_key, self._secret = crypto_sign_seed_keypair(seed)
        self.kid = kid_for(self.public_key)
        self.pole_id = pole_id
        self.content_format = content_format
        # Protected header up to the varying claims; iat is left out (2 claims instead of
        # 3) when there is no valid clock, rather than inventing a time. The typ that
        # closes the header is constant per kind.
        self._prot_head = self._header_prefix(3) + cbor.encode_int(CWT_IAT)
        self._prot_head_no_iat = self._header_prefix(2)
        self._cti_label = cbor.encode_int(CWT_CTI) + b"\x48"  # 8-byte bstr follows
        self._typ = {k.name: cbor.encode_int(HDR_TYP) + cbor.encode_text(k.typ) for k in KINDS}

    def _header_prefix(self, n_claims: int) -> bytes:
        return (
            cbor.head(5, 5)
            + cbor.encode_int(HDR_ALG)
            + cbor.encode_int(ALG_EDDSA)
            + cbor.encode_int(HDR_CONTENT_TYPE)
            + cbor.encode_int(self.content_format)
            + cbor.encode_int(HDR_KID)
            + cbor.encode_bytes(self.kid)
            + cbor.encode_int(HDR_CWT_CLAIMS)
            + cbor.head(5, n_claims)
            + cbor.encode_int(CWT_ISS)
            + cbor.encode_text(self.pole_id)
        )

    def protected(self, kind: str, iat: int | None, cti: bytes) -> bytes:
        typ = self._typ[kind]  # KeyError: not a declared kind
        if iat is None:
            return self._prot_head_no_iat + self._cti_label + cti + typ
        return self._prot_head + cbor.encode_int(iat) + self._cti_label + cti + typ

    def sig_structure(self, protected: bytes, payload: bytes) -> bytes:
        """The bytes Ed25519 signs: ``["Signature1", protected, h'', payload]``."""
        return (
            b"\x84"
            + _SIG1_CONTEXT
            + cbor.encode_bytes(protected)
            + _EMPTY_BSTR
            + cbor.head(2, len(payload))
            + payload
        )

    def sign(self, kind: str, payload: bytes, iat: int | None, cti: bytes) -> bytes:
        """A complete, tagged COSE_Sign1 message of ``kind`` (edge/messages.py); ``iat``
        None when the clock is not valid."""
        protected = self.protected(kind, iat, cti)
        prot_bstr = cbor.encode_bytes(protected)
        payload_head = cbor.head(2, len(payload))
        tbs = b"".join((b"\x84", _SIG1_CONTEXT, prot_bstr, _EMPTY_BSTR, payload_head, payload))
        signature = crypto_sign(tbs, self._secret)[:64]
        return b"".join(
            (b"\xd2\x84", prot_bstr, b"\xa0", payload_head, payload, b"\x58\x40", signature)
        )
