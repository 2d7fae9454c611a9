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

import logging
import time
from collections import Counter, deque
from collections.abc import Callable

from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from edge import cbor, cbordecode, messages, names
from edge.cbor import Tag
from edge.rotation import proof_message
from provisioning import fastpath, senml_decode
from provisioning.trustlist import KeyRecord, TrustList

log = logging.getLogger(__name__)

ACCEPTED_ALGS = (-8, -19)
KINDS = tuple(messages.BY_NAME)
# Kinds verified through learned templates: the frequent ones. Birth, death, manifest
# and rotation are rare, and birth/death need their records for the bdSeq rule.
TEMPLATED = ("data", "counts", "health")
MAX_HEADER = 512  # bytes of protected header: ours is about 80
# Records in one pack (and labels in one record): a full sensor set's window has about
# 100 records, a health pack a few dozen. Checked by the decoder at each container's
# head, it caps the work a validly signed, hostile pack can cause.
MAX_RECORDS = 256
_HEADER_LABELS = frozenset((1, 3, 4, 15, 16))  # alg, content type, kid, CWT claims, typ
_SIG1_PREFIX = cbor.encode_text("Signature1").join((b"\x84", b""))


class Verdict:
    """``records`` are resolved SenML records. On the template path they are built on
    first access from the values already unpacked and checked: deciding does not need
    Python objects per record, and many consumers (counters, forwarding) never read them."""

    __slots__ = (
        "status",
        "reason",
        "pole_id",
        "kind",
        "cti",
        "_records",
        "iat",
        "_lazy",
        "kid",
        "floor",
    )

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
        kid: bytes = b"",
    ) -> None:
        self.kid = kid
        self.floor = -1  # the key's replay floor after this message (stored with it)
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

    def __init__(self, order: list[int] | None = None, floor: int = -1) -> None:
        self.order: deque[int] = deque(order or ())
        self.seen: set[int] = set(self.order)
        self.floor = floor
        self.bdseq: int | None = None


History = Callable[[bytes, int], tuple[list[int], int]]


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
        history: History | None = None,
    ) -> None:
        """``fast``: verify data and count packs through per-topic templates learned from
        accepted messages (provisioning/fastpath.py); False: always the full path.
        ``history(kid, window)``: the replay state of a key from a store, as (the last
        ``window`` ctis in arrival order, the highest cti before them), so a restarted
        verifier still knows an old message for a replay (provisioning/receiver.py)."""
        self.history = history
        self.keys: dict[bytes, KeyRecord] = {}
        self.poles: set[str] = set()  # poles with a key (active or not): others cost nothing
        self.set_keys(keys)
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

    def set_keys(self, keys: dict[bytes, KeyRecord]) -> None:
        """Take a new set of keys (a reloaded trust list): revocations and new poles count
        from the next message on. Replay state is kept: it is per key, not per list."""
        self.keys = keys
        self.poles = {k.pole_id for k in keys.values()}

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
            if v.accepted and v.kind in TEMPLATED:
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
        self._check_iat(t.kind, iat)
        cti = int.from_bytes(values[t.cti_slot], "big")
        self.fast_hits += 1
        return self._admit(key, t.kid, t.kind, cti, None, iat, (t, values))

    def _topic(self, topic: str) -> tuple[str, str]:
        """(pole id, kind) of ``<prefix>/<pole>/<kind>``, names checked by the one rule."""
        parts = topic.split("/")
        if (
            len(parts) != 3
            or parts[0] != self.topic_prefix
            or parts[2] not in messages.BY_NAME
            or not names.is_id(parts[1])
        ):
            raise _Reject(f"topic: not {self.topic_prefix}/<pole>/<kind>")
        return parts[1], parts[2]

    def _check_full(self, topic: str, payload: bytes) -> Verdict:
        topic_pole, kind = self._topic(topic)
        if topic_pole not in self.poles:  # before any decoding: strangers cost nothing
            raise _Reject(f"pole: no key registered for pole {topic_pole}")
        if len(payload) > self.max_size:
            raise _Reject(f"size: {len(payload)} bytes over the {self.max_size} limit")
        try:
            msg = cbordecode.loads(
                payload, tags=(18,), max_depth=3, max_size=self.max_size, max_len=4
            )
        except cbordecode.DecodeError as exc:
            raise _Reject(f"cbor: {exc}") from None
        if not isinstance(msg, Tag) or msg.tag != 18:
            raise _Reject("cose: not a tagged COSE_Sign1 (tag 18)")
        body = msg.value
        if not isinstance(body, list) or len(body) != 4:
            raise _Reject("cose: COSE_Sign1 is an array of 4")
        prot_raw, unprot, content, sig = body
        if not (
            isinstance(prot_raw, bytes)
            and isinstance(unprot, dict)
            and isinstance(content, bytes)
            and isinstance(sig, bytes)
        ):
            raise _Reject("cose: wrong element types")
        if len(sig) != 64:
            raise _Reject("cose: signature is not 64 bytes")
        if unprot:
            raise _Reject("cose: unprotected header must be empty (nothing there is signed)")
        try:
            prot = cbordecode.loads(prot_raw, max_depth=2, max_size=MAX_HEADER, max_len=8)
        except cbordecode.DecodeError as exc:
            raise _Reject(f"cose: protected header: {exc}") from None
        if not isinstance(prot, dict):
            raise _Reject("cose: protected header is not a map")
        if 2 in prot:
            raise _Reject("cose: critical headers not supported")
        if not set(prot) <= _HEADER_LABELS:
            raise _Reject("cose: unexpected protected header label")
        alg = prot.get(1)
        if alg not in ACCEPTED_ALGS or isinstance(alg, bool):
            raise _Reject(f"alg: {names.describe(alg)} is not EdDSA")
        typ = prot.get(16)
        signed_kind = messages.BY_TYP.get(typ) if isinstance(typ, str) else None
        if signed_kind is None:
            raise _Reject("typ: no message kind in the protected header")
        if signed_kind.name != kind:
            raise _Reject(f"typ: signed as {signed_kind.name}, published as {kind}")
        if prot.get(3, 112) != 112:
            raise _Reject("cose: content type is not application/senml+cbor (112)")
        kid = prot.get(4)
        if not isinstance(kid, bytes) or len(kid) != 8:
            raise _Reject("kid: missing from the protected header")
        key = self.keys.get(kid)
        if key is None:
            raise _Reject(f"kid: unknown key {kid.hex()}")
        if not key.active:
            raise _Reject(f"kid: key {kid.hex()} of pole {key.pole_id} is revoked")
        if topic_pole != key.pole_id:
            raise _Reject(f"iss: topic names pole {topic_pole}, key belongs to {key.pole_id}")
        tbs = b"".join(
            (
                _SIG1_PREFIX,
                _bstr_head(len(prot_raw)),
                prot_raw,
                b"\x40",
                _bstr_head(len(content)),
                content,
            )
        )
        try:
            crypto_sign_open(sig + tbs, key.public_key)
        except BadSignatureError:
            raise _Reject("signature: does not verify") from None
        claims = prot.get(15)
        if not isinstance(claims, dict) or not set(claims) <= {1, 6, 7}:
            raise _Reject("claims: CWT claims (iss, iat, cti) missing or unexpected")
        iss, iat, cti_raw = claims.get(1), claims.get(6), claims.get(7)
        if iss != key.pole_id:
            raise _Reject(f"iss: {names.describe(iss)} is not the key's pole {key.pole_id}")
        if not isinstance(cti_raw, bytes) or len(cti_raw) != 8:
            raise _Reject("cti: not an 8-byte counter")
        # No iat is honest: the pole had no valid clock (its pack then uses relative time).
        if iat is not None and (not isinstance(iat, int) or isinstance(iat, bool)):
            raise _Reject("iat: not an integer")
        self._check_iat(kind, iat)
        try:  # records and labels bounded at their heads, before decoding any of them
            pack = cbordecode.loads(
                content, max_depth=2, max_size=self.max_size, max_len=MAX_RECORDS
            )
            records = senml_decode.resolve(pack)
        except cbordecode.DecodeError as exc:
            raise _Reject(f"senml: payload refused ({exc})") from None
        except senml_decode.SenMLError as exc:
            raise _Reject(f"senml: {exc}") from None
        problem = _kind_rules(signed_kind, key.pole_id, records)
        if problem:
            raise _Reject(problem)
        cti = int.from_bytes(cti_raw, "big")
        return self._admit(key, kid, kind, cti, records, iat)

    def _check_iat(self, kind: str, iat: int | None) -> None:
        """A death is sealed when its session starts (it is the MQTT will), so its iat
        may be as old as the session; it must still not come from the future."""
        if iat is None or self.max_skew_s is None:
            return
        now = self.clock()
        if iat - now > self.max_skew_s or (kind != "death" and now - iat > self.max_skew_s):
            raise _Reject(f"iat: {iat} outside the allowed skew of {self.max_skew_s}s")

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
            st = self.state[kid] = (
                _KeyState(*self.history(kid, self.window)) if (self.history) else _KeyState()
            )
        if cti in st.seen:
            return Verdict(
                "duplicate", "already seen", key.pole_id, kind, cti, records, iat, lazy, kid
            )
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
        v = Verdict("accepted", "", key.pole_id, kind, cti, records, iat, lazy, kid)
        v.floor = st.floor
        return v

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
            self.poles.add(rec.pole_id)
            if self.trust is not None:  # its answer counts: a key announced under a key
                # the list has revoked meanwhile (a stolen one) is recorded revoked
                self.keys[rec.kid] = self.trust.add(
                    old.pole_id,
                    new_key,
                    note=f"rotated from {old.kid.hex()}",
                    rotated_from=old.kid.hex(),
                )
            log.info("pole %s rotated to key %s", old.pole_id, rec.kid.hex())


def _bstr_head(n: int) -> bytes:
    return cbor.head(2, n)


_SPECS: dict[tuple[str, str], object] = {}  # (kind, relative name) -> its declaration


def _spec(k: messages.Kind, name: str) -> messages.Rec | None:
    """The declaration of a record name, cached: names repeat in every pack of every pole
    (the cache holds declared names only, so it stays as small as the registry's expansion
    over the sensors in service)."""
    spec = _SPECS.get((k.name, name))
    if spec is None:
        spec = k.spec(name)
        if spec is not None and len(_SPECS) < 100_000:
            _SPECS[(k.name, name)] = spec
    return spec  # type: ignore[return-value]


def _kind_rules(k: messages.Kind, pole_id: str, records: list) -> str:
    """The registry's rules for a kind: every record under the pole's own base name,
    declared by the kind, with a value of the declared kind. "" when all hold."""
    base = pole_id + "/"
    for i, r in enumerate(records):
        if not r.name.startswith(base):
            return f"senml: record {i} is outside the pole's base name {base}"
        spec = _spec(k, r.name[len(base) :])
        if spec is None:
            return f"kind: record {i} is not declared for {k.name} messages"
        v = r.value
        want = spec.value
        if want == messages.BOOL:
            ok = isinstance(v, bool)
        elif want == messages.TEXT:
            ok = isinstance(v, str)
        elif want == messages.BYTES:
            ok = isinstance(v, bytes)
        elif want == messages.INT:
            ok = isinstance(v, int) and not isinstance(v, bool)
        else:  # FLOAT, NUMBER: a number; an integral float may have been sent as an int
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        if not ok:
            return f"kind: record {i} of a {k.name} message must be {want}"
    return ""


def _bdseq(records: list) -> int | None:
    for r in records[:2]:  # birth and death packs put bdSeq first
        if r.name.endswith("/bdSeq") and isinstance(r.value, int):
            return r.value
    return None
