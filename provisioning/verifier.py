"""The city's verifier: accept only authentic, fresh, well-formed messages from known poles.

``Verifier.check(topic, payload)`` never raises; it returns a ``Verdict`` whose
``status`` is ``accepted``, ``duplicate`` (a QoS 1 redelivery: same key and cti,
to be stored once) or ``rejected`` with a reason. Checks, in order:
size, CBOR, COSE_Sign1 shape, algorithm (EdDSA -8 or Ed25519 -19), kid known and
not revoked, signature, iss equals the key's pole and the topic's pole, iat within
the allowed skew (if configured), cti fresh, payload a valid SenML pack.

Replay rule (per key): a cti is accepted once. Each key keeps the last ``window``
ctis seen and a floor (the highest cti pushed out of that window); anything at or
below the floor is a replay. Not simply "above the high-water mark": after an
outage the spooled backlog legitimately arrives after the birth message of the
new session, whose cti is higher. Death messages (the broker sends the last will
registered at connect time, so its cti is old) are accepted when unseen and their
bdSeq matches the pole's last birth.
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter, deque
from collections.abc import Mapping

import cbor2
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from edge.rotation import proof_message
from provisioning import fastpath, senml_decode
from provisioning.trustlist import KeyRecord, TrustList

log = logging.getLogger(__name__)

ACCEPTED_ALGS = (-8, -19)
KINDS = ("data", "counts", "health", "birth", "death", "rotate", "manifest")


class Verdict:
    """``records`` are resolved SenML records. On the template path they are built on
    first access from the values already unpacked and checked: deciding does not need
    Python objects per record, and many consumers (counters, forwarding) never read them."""

    __slots__ = ("status", "reason", "pole_id", "kind", "cti", "_records", "iat", "_lazy")

    def __init__(
        self,
        status: str,
        reason: str = "",
        pole_id: str = "",
        kind: str = "",
        cti: int = -1,
        records: list | None = None,
        iat: int | None = None,
        lazy: tuple | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.pole_id = pole_id
        self.kind = kind
        self.cti = cti
        self._records = records
        self.iat = iat
        self._lazy = lazy

    @property
    def records(self) -> list:
        r = self._records
        if r is None:
            if self._lazy is not None:
                r = fastpath.records(*self._lazy)
                self._lazy = None
            else:
                r = []
            self._records = r
        return r

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def __repr__(self) -> str:
        where = f"{self.pole_id}/{self.kind}"
        return f"Verdict({self.status}, {self.reason!r}, {where}, cti={self.cti:#x})"


class _Reject(Exception):
    pass


class _KeyState:
    __slots__ = ("seen", "order", "floor", "bdseq")

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.order: deque[int] = deque()
        self.floor = -1
        self.bdseq: int | None = None


class Verifier:
    def __init__(
        self,
        keys: dict[bytes, KeyRecord],
        topic_prefix: str = "poles",
        max_size: int = 16 * 1024,
        max_skew_s: float | None = None,
        window: int = 512,
        clock=time.time,
        trust: TrustList | None = None,
        fast: bool = True,
    ) -> None:
        """``fast``: verify data and count packs through per-topic templates learned from
        accepted messages (provisioning/fastpath.py); False: always the full path."""
        self.keys = keys
        self.trust = trust
        self.topic_prefix = topic_prefix
        self.max_size = max_size
        self.max_skew_s = max_skew_s
        self.window = window
        self.clock = clock
        self.state: dict[bytes, _KeyState] = {}
        self.counts: Counter[str] = Counter()
        self.fast = fast
        self.templates: dict[str, list[fastpath.Template]] = {}
        self.fast_hits = 0

    def check(self, topic: str, payload: bytes) -> Verdict:
        try:
            v = self._check(topic, payload)
        except _Reject as r:
            v = Verdict("rejected", str(r))
        except Exception as exc:  # the verifier never crashes on input
            v = Verdict("rejected", f"internal: {type(exc).__name__}")
            log.exception("verifier bug on a %d-byte message", len(payload))
        self.counts[
            v.status if v.status != "rejected" else "rejected:" + v.reason.split(":")[0]
        ] += 1
        if v.status == "rejected":
            log.info("rejected message on %s: %s", topic[:120], v.reason)
        return v

    def _check(self, topic: str, payload: bytes) -> Verdict:
        if self.fast:
            templates = self.templates.get(topic)
            if templates and len(payload) <= self.max_size:
                for t in templates:
                    m = fastpath.match(t, payload)
                    if m is not None:
                        v = self._check_fast(t, *m)
                        if v is not None:
                            return v
                        break
            v = self._check_full(topic, payload)
            if v.accepted and v.kind in ("data", "counts"):
                self._learn(topic, payload, v)
            return v
        return self._check_full(topic, payload)

    def _learn(self, topic: str, payload: bytes, v: Verdict) -> None:
        t = fastpath.learn(payload, v.records)
        if t is None:
            return
        t.kind = v.kind
        t.pole = v.pole_id
        if len(self.templates) > 200_000:  # bounded: a verifier for a whole city
            self.templates.clear()
        ts = self.templates.setdefault(topic, [])
        ts.insert(0, t)
        del ts[fastpath.MAX_TEMPLATES_PER_TOPIC :]

    def _check_fast(self, t: fastpath.Template, values: list, signed: bytes) -> Verdict | None:
        """The checks that depend on more than the message's shape; None: use the full
        path (the key was revoked, removed or re-assigned since the template was learned)."""
        key = self.keys.get(t.kid)
        if key is None or not key.active or key.pole_id != t.pole:
            return None
        try:
            crypto_sign_open(signed, key.public_key)
        except BadSignatureError:
            raise _Reject("signature: does not verify") from None
        iat = values[t.iat_slot] if t.iat_slot is not None else None
        if (
            iat is not None
            and self.max_skew_s is not None
            and abs(iat - self.clock()) > self.max_skew_s
        ):
            raise _Reject(f"iat: {iat} outside the allowed skew of {self.max_skew_s}s")
        cti = int.from_bytes(values[t.cti_slot], "big")
        self.fast_hits += 1
        return self._admit(key, t.kid, t.kind, cti, None, iat, (t, values))

    def _check_full(self, topic: str, payload: bytes) -> Verdict:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != self.topic_prefix or parts[2] not in KINDS:
            raise _Reject(f"topic: not {self.topic_prefix}/<pole>/<kind>")
        topic_pole, kind = parts[1], parts[2]
        if len(payload) > self.max_size:
            raise _Reject(f"size: {len(payload)} bytes over the {self.max_size} limit")
        try:
            msg = strict_loads(payload)
        except Exception as exc:
            raise _Reject(f"cbor: {type(exc).__name__}") from None
        if not isinstance(msg, cbor2.CBORTag) or msg.tag != 18:
            raise _Reject("cose: not a tagged COSE_Sign1 (tag 18)")
        body = msg.value
        if not isinstance(body, (list, tuple)) or len(body) != 4:
            raise _Reject("cose: COSE_Sign1 is an array of 4")
        prot_raw, unprot, content, sig = body
        if not (
            isinstance(prot_raw, bytes)
            and isinstance(unprot, Mapping)
            and isinstance(content, bytes)
            and isinstance(sig, bytes)
        ):
            raise _Reject("cose: wrong element types")
        if len(sig) != 64:
            raise _Reject("cose: signature is not 64 bytes")
        try:
            prot = strict_loads(prot_raw) if prot_raw else {}
        except Exception:
            raise _Reject("cose: protected header is not CBOR") from None
        if not isinstance(prot, Mapping):
            raise _Reject("cose: protected header is not a map")
        if 2 in prot:
            raise _Reject("cose: critical headers not supported")
        alg = prot.get(1)
        if alg not in ACCEPTED_ALGS or isinstance(alg, bool):
            raise _Reject(f"alg: {alg!r} is not EdDSA")
        if 1 in unprot or 4 in unprot or 15 in unprot:
            raise _Reject("cose: security headers must be protected")
        kid = prot.get(4)
        if not isinstance(kid, bytes):
            raise _Reject("kid: missing from the protected header")
        key = self.keys.get(kid)
        if key is None:
            raise _Reject(f"kid: unknown key {kid.hex()[:32]}")
        if not key.active:
            raise _Reject(f"kid: key {kid.hex()} of pole {key.pole_id} is revoked")
        tbs = cbor2.dumps(["Signature1", prot_raw, b"", content])
        try:
            crypto_sign_open(sig + tbs, key.public_key)
        except BadSignatureError:
            raise _Reject("signature: does not verify") from None
        claims = prot.get(15)
        if not isinstance(claims, Mapping):
            raise _Reject("claims: no CWT claims in the protected header")
        iss, iat, cti_raw = claims.get(1), claims.get(6), claims.get(7)
        if iss != key.pole_id:
            raise _Reject(f"iss: {str(iss)[:64]!r} is not the key's pole {key.pole_id}")
        if topic_pole != key.pole_id:
            raise _Reject(
                f"iss: topic names pole {topic_pole[:64]!r}, key belongs to {key.pole_id}"
            )
        if not isinstance(cti_raw, bytes) or len(cti_raw) != 8:
            raise _Reject("cti: not an 8-byte counter")
        # No iat is honest: the pole had no valid clock (its pack then uses relative time).
        if iat is not None and (not isinstance(iat, int) or isinstance(iat, bool)):
            raise _Reject("iat: not an integer")
        if (
            iat is not None
            and self.max_skew_s is not None
            and abs(iat - self.clock()) > self.max_skew_s
        ):
            raise _Reject(f"iat: {iat} outside the allowed skew of {self.max_skew_s}s")
        try:
            pack = strict_loads(content)
            records = senml_decode.resolve(pack)
        except senml_decode.SenMLError as exc:
            raise _Reject(f"senml: {exc}") from None
        except Exception as exc:
            raise _Reject(f"senml: payload is not CBOR ({type(exc).__name__})") from None
        cti = int.from_bytes(cti_raw, "big")
        return self._admit(key, kid, kind, cti, records, iat)

    def _admit(
        self,
        key: KeyRecord,
        kid: bytes,
        kind: str,
        cti: int,
        records: list | None,
        iat: int | None,
        lazy: tuple | None = None,
    ) -> Verdict:
        """Replay window, rotation, bookkeeping: the same for both paths (``records`` is
        None with ``lazy`` only for data and count packs, which need no record here)."""
        st = self.state.get(kid)
        if st is None:
            st = self.state[kid] = _KeyState()
        if cti in st.seen:
            return Verdict("duplicate", "already seen", key.pole_id, kind, cti, records, iat, lazy)
        bdseq = _bdseq(records or []) if kind in ("birth", "death") else None
        if cti <= st.floor and not (kind == "death" and bdseq is not None and bdseq == st.bdseq):
            raise _Reject(f"replay: cti {cti:#x} at or below the window floor {st.floor:#x}")
        if kind == "rotate":
            self._rotate(key, records or [])
        st.seen.add(cti)
        st.order.append(cti)
        while len(st.order) > self.window:
            old = st.order.popleft()
            st.seen.discard(old)
            st.floor = max(st.floor, old)
        if kind == "birth" and bdseq is not None:
            st.bdseq = bdseq
        return Verdict("accepted", "", key.pole_id, kind, cti, records, iat, lazy)

    def _rotate(self, old: KeyRecord, records: list) -> None:
        """Accept a pole's new key, announced under its current key with proof of possession."""
        fields = {r.name.rsplit("/", 2)[-1]: r.value for r in records if "/rotate/" in r.name}
        new_key, proof = fields.get("new_key"), fields.get("proof")
        if not isinstance(new_key, bytes) or not isinstance(proof, bytes) or len(proof) != 64:
            raise _Reject("rotate: announcement lacks new_key or proof")
        try:
            crypto_sign_open(proof + proof_message(old.pole_id, new_key, old.kid), new_key)
        except (BadSignatureError, ValueError):
            raise _Reject("rotate: no proof of possession of the new key") from None
        rec = KeyRecord(old.pole_id, new_key)
        existing = self.keys.get(rec.kid)
        if existing is not None and existing.pole_id != old.pole_id:
            raise _Reject("rotate: key already belongs to another pole")
        if existing is None:
            self.keys[rec.kid] = rec
            if self.trust is not None:
                self.trust.add(old.pole_id, new_key, note=f"rotated from {old.kid.hex()}")
            log.info("pole %s rotated to key %s", old.pole_id, rec.kid.hex())


def strict_loads(data: bytes) -> object:
    """Decode exactly one CBOR item; trailing bytes are an error (cbor2.loads ignores them)."""
    fp = io.BytesIO(data)
    item = cbor2.CBORDecoder(fp).decode()
    if fp.tell() != len(data):
        raise ValueError(f"{len(data) - fp.tell()} trailing bytes")
    return item


def _bdseq(records: list) -> int | None:
    for r in records[:2]:  # birth and death packs put bdSeq first
        if r.name.endswith("/bdSeq") and isinstance(r.value, int):
            return r.value
    return None
