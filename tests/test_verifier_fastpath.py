"""The verifier's template path (provisioning/fastpath.py) must decide exactly as the full
path: same status, same reason, same records, on random packs and on every mutation of
a message whose template it has learned, including mutations signed with the pole's
real key (so the signature cannot be what rejects them)."""

from __future__ import annotations

import math
import random
import struct

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nacl.bindings import crypto_sign

from bench.bench_sign import demo_pole_window
from edge import senml
from edge.cbordecode import loads as strict_loads
from edge.cose import Signer, cti_bytes
from edge.window import Window
from provisioning import fastpath
from provisioning.senml_decode import resolve
from provisioning.trustlist import KeyRecord
from provisioning.verifier import Verifier

POLE = "nl-fast-0001"
TOPIC = f"poles/{POLE}/data"
HTOPIC = f"poles/{POLE}/health"  # health declares records of every value kind
# Declared health record names (edge/messages.py) for each value kind.
NAMES = {
    "int": "counter/c%d",
    "float": "time/uptime",
    "bool": "alarm/a%d",
    "str": "alarm/a%d/detail",
}
SIGNER = Signer(b"\x07" * 32, POLE)
KEYS = {SIGNER.kid: KeyRecord(POLE, SIGNER.public_key)}


def signed_raw(protected: bytes, payload: bytes) -> bytes:
    """A COSE_Sign1 over arbitrary protected/payload bytes, with the pole's real key."""
    tbs = cbor2.dumps(["Signature1", protected, b"", payload])
    sig = crypto_sign(tbs, SIGNER._secret)[:64]
    return cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, sig]))


def _val(x):
    return ("float", struct.pack(">d", x)) if isinstance(x, float) else (type(x).__name__, x)


def rview(records: list) -> list:
    """Records as comparable tuples: floats bit for bit (NaN payload and sign, -0.0)."""
    return [(r.name, r.unit, _val(r.value), _val(r.time), r.sum) for r in records]


def key(v):
    """A comparable view of a verdict."""
    return (v.status, v.reason, v.pole_id, v.kind, v.cti, v.iat, rview(v.records))


def pair(
    learn_from: bytes, require_template: bool = True, topic: str = TOPIC
) -> tuple[Verifier, Verifier]:
    """A template verifier that has learned ``learn_from``, and a full-path verifier in
    the same replay state. (A first message holding a NaN in a half or single float is
    not templated: it goes to the full path, so then no template may exist.)"""
    fast, slow = Verifier(dict(KEYS)), Verifier(dict(KEYS), fast=False)
    a, b = fast.check(topic, learn_from), slow.check(topic, learn_from)
    assert a.accepted and key(a) == key(b)
    if require_template:
        assert fast.templates.get(topic), "no template learned"
    return fast, slow


# -- the pole's own encoder ------------------------------------------------------------------
samples = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=40,
)


@given(a=samples, b=samples, c=st.integers(0, 1), end=st.integers(1_700_000_000, 2_100_000_000))
def test_window_packs_decode_identically_on_both_paths(a, b, c, end):
    series = [
        senml.Series("sds011", "pm2_5", "pm2_5", "ug/m3", 0.1),
        senml.Series("bme280", "temperature", "temperature", "Cel", 0.01),
    ]
    enc = senml.WindowPackEncoder(POLE, series)

    def window(values: list[float], t_end: int) -> bytes:
        w = Window(t_end - 60, 60)
        for x in values:
            w.add(("sds011", "pm2_5"), x)
            if c:
                w.add(("bme280", "temperature"), -x)
        return enc.encode(w, t_end)

    first = SIGNER.sign("data", window(a, end), end, cti_bytes(1, 1))
    fast, slow = pair(first)
    second = SIGNER.sign("data", window(b, end + 60), end + 60, cti_bytes(1, 2))
    x, y = fast.check(TOPIC, second), slow.check(TOPIC, second)
    assert key(x) == key(y)
    assert x.accepted
    if len(a) == len(b) or (len(a) < 24 and len(b) < 24):  # same count encoding width
        assert fast.fast_hits == 1, "same shape, yet the full path was taken"


# -- packs from an independent encoder, every value kind ----------------------------------
value = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=8),
)


@settings(max_examples=150)
@given(
    shape=st.lists(st.sampled_from(["int", "float", "bool", "str"]), min_size=1, max_size=8),
    data=st.data(),
    canonical=st.booleans(),
    bt=st.one_of(st.none(), st.integers(0, 2**32 - 1)),
)
def test_any_pack_shape_decides_identically(shape, data, canonical, bt):
    def pack() -> bytes:
        recs = []
        for i, kind in enumerate(shape):
            r: dict = {0: NAMES[kind].replace("%d", str(i))}
            if kind == "int":
                r[2] = data.draw(st.integers(-(2**63), 2**64 - 1))
            elif kind == "float":
                r[2] = data.draw(st.floats(allow_nan=True, allow_infinity=True))
            elif kind == "bool":
                r[4] = data.draw(st.booleans())
            else:
                r[3] = data.draw(st.text(max_size=8))
            recs.append(r)
        recs[0][-2] = POLE + "/"
        if bt is not None:
            recs[0][-3] = bt
        return cbor2.dumps(recs, canonical=canonical)

    first = SIGNER.sign("health", pack(), None, cti_bytes(2, 1))
    fast, slow = pair(first, require_template=False, topic=HTOPIC)
    for n in range(2, 5):
        msg = SIGNER.sign("health", pack(), 1_800_000_000 + n, cti_bytes(2, n)) if n == 4 else None
        msg = msg or SIGNER.sign("health", pack(), None, cti_bytes(2, n))
        assert key(fast.check(HTOPIC, msg)) == key(slow.check(HTOPIC, msg))


# -- every mutation, signed with the real key ----------------------------------------------
def _parts(msg: bytes) -> tuple[bytes, bytes]:
    tag = cbor2.loads(msg)
    return tag.value[0], tag.value[2]


def _demo_pair() -> tuple[bytes, bytes]:
    demo, w = demo_pole_window()
    enc = senml.WindowPackEncoder(POLE, demo.series)
    first = SIGNER.sign("data", enc.encode(w, w.end), w.end, cti_bytes(3, 1))
    return first, SIGNER.sign("data", enc.encode(w, w.end + 60), w.end + 60, cti_bytes(3, 2))


def _kinds_pair() -> tuple[bytes, bytes]:
    """Every one-byte and wide slot kind: small and wide, positive and negative integers,
    booleans, half/single/double floats, a string."""

    def pack(k: int) -> bytes:
        return cbor2.dumps(
            [
                {-2: POLE + "/", -3: 1_800_000_000 + k, 0: "counter/small", 2: 5 + k},
                {0: "counter/neg", 2: -3 - k},
                {0: "alarm/flag", 4: bool(k)},
                {0: "counter/wide", 2: 300 + k},
                {0: "counter/wideneg", 2: -300 - k},
                {0: "time/uptime", 2: 1.5 + k},  # a half float
                {0: "time/uptime", 2: 0.1 + k},  # a double
                {0: "alarm/flag/detail", 3: "ok"},
            ],
            canonical=True,
        )

    return (
        SIGNER.sign("health", pack(0), 1_800_000_000, cti_bytes(3, 1)),
        SIGNER.sign("health", pack(1), 1_800_000_060, cti_bytes(3, 2)),
    )


@pytest.mark.parametrize("flip", [0x01, 0x80, 0x20, 0xFF])
@pytest.mark.parametrize("pair_of", [_demo_pair, _kinds_pair])
def test_every_byte_flip_decides_as_the_full_path(flip, pair_of):
    first, second = pair_of()
    topic = HTOPIC if pair_of is _kinds_pair else TOPIC
    fast, slow = pair(first, topic=topic)
    assert key(fast.check(topic, second)) == key(slow.check(topic, second))
    assert fast.fast_hits == 1, "the unmutated second message must take the template path"
    prot, payload = _parts(second)
    rng = random.Random(flip)
    fast_hits = 0
    outcomes: dict[str, int] = {}
    for part in ("protected", "payload"):
        src = prot if part == "protected" else payload
        for i in range(len(src)):
            mutated = bytearray(src)
            mutated[i] ^= flip if flip != 0xFF else rng.randrange(1, 256)
            p, q = (bytes(mutated), payload) if part == "protected" else (prot, bytes(mutated))
            msg = signed_raw(p, q)
            fast, slow = pair(first, topic=topic)
            x, y = fast.check(topic, msg), slow.check(topic, msg)
            assert key(x) == key(y), (part, i, x, y)
            fast_hits += fast.fast_hits
            outcomes[x.status] = outcomes.get(x.status, 0) + 1
    # The template path did decide many of these itself (values changed in place), and
    # both outcomes occurred: this test exercises the fast path, not just its fallback.
    assert fast_hits > 10 and outcomes.get("rejected") and outcomes.get("accepted"), (
        fast_hits,
        outcomes,
    )


def test_truncated_extended_and_resigned_messages(tmp_path):
    demo, w = demo_pole_window()
    enc = senml.WindowPackEncoder(POLE, demo.series)  # the verifier checks the base name
    first = SIGNER.sign("data", enc.encode(w, w.end), w.end, cti_bytes(4, 1))
    second = SIGNER.sign("data", enc.encode(w, w.end + 60), w.end + 60, cti_bytes(4, 2))
    for msg in (second[:-1], second + b"\x00", second[:100], b"", second[1:]):
        fast, slow = pair(first)
        x, y = fast.check(TOPIC, msg), slow.check(TOPIC, msg)
        assert key(x) == key(y) and x.status == "rejected"


def test_revoked_after_learning_is_rejected_and_replays_are_caught():
    demo, w = demo_pole_window()
    enc = senml.WindowPackEncoder(POLE, demo.series)  # the verifier checks the base name
    first = SIGNER.sign("data", enc.encode(w, w.end), w.end, cti_bytes(5, 1))
    fast, _ = pair(first)
    second = SIGNER.sign("data", enc.encode(w, w.end + 60), w.end + 60, cti_bytes(5, 2))
    assert fast.check(TOPIC, second).accepted and fast.fast_hits == 1
    assert fast.check(TOPIC, second).status == "duplicate"
    for n in range(3, 600):  # push cti 1 and 2 below the window floor
        assert fast.check(
            TOPIC, SIGNER.sign("data", enc.encode(w, w.end), w.end, cti_bytes(5, n))
        ).accepted
    v = fast.check(TOPIC, second)
    assert v.status == "rejected" and v.reason.startswith("replay:")
    fast.keys[SIGNER.kid] = KeyRecord(POLE, SIGNER.public_key, status="revoked")
    v = fast.check(TOPIC, SIGNER.sign("data", enc.encode(w, w.end), w.end, cti_bytes(5, 999)))
    assert v.status == "rejected" and "revoked" in v.reason
    # Another pole's topic never uses this pole's template.
    v = fast.check(
        "poles/nl-other-0002/data",
        SIGNER.sign("data", enc.encode(w, w.end), w.end, cti_bytes(5, 1000)),
    )
    assert v.status == "rejected"


@pytest.mark.parametrize("half", [b"\x7e\x01", b"\xfe\x00", b"\x7c\x01", b"\xfd\xff", b"\x7c\x00"])
def test_half_float_nan_payloads_decode_bit_for_bit(half):
    """cbor2 keeps a half float NaN's payload bits, ``struct`` does not: a half float slot
    holding a NaN must go to the full path, not decode to another NaN."""
    first, second = _kinds_pair()
    prot, payload = _parts(second)
    at = payload.index(b"\x6btime/uptime\x02\xf9") + 14
    mutated = payload[:at] + half + payload[at + 2 :]
    fast, slow = pair(first, topic=HTOPIC)
    msg = signed_raw(prot, mutated)
    x, y = fast.check(HTOPIC, msg), slow.check(HTOPIC, msg)
    assert x.accepted and key(x) == key(y)


# -- the matcher alone, on unsigned bytes: no signature to hide behind ---------------------
def _slow_parse(msg: bytes) -> tuple:
    """What the full path decodes from a message: records, iat, cti, signature ‖ tbs."""
    tag = strict_loads(msg, tags=(18,))
    prot_raw, _unprot, payload, sig = tag.value
    prot = strict_loads(prot_raw)
    claims = prot[15]
    recs = resolve(strict_loads(payload))
    tbs = cbor2.dumps(["Signature1", prot_raw, b"", payload])
    return prot[1], prot[4], recs, claims.get(6), claims[7], sig + tbs


def _agrees(t, msg: bytes) -> bool:
    """True when the matcher decoded ``msg`` (and then exactly as the full path would);
    False when it declined. Never a different value."""
    m = fastpath.match(t, msg)
    if m is None:
        return False
    values, signed = m
    alg, kid, recs, iat, cti, slow_signed = _slow_parse(msg)  # must not raise
    assert alg == -8 and kid == t.kid
    got = fastpath.records(t, values)
    iat_fast = values[t.iat_slot] if t.iat_slot is not None else None
    assert (iat_fast, values[t.cti_slot], signed) == (iat, cti, slow_signed)
    assert rview(got) == rview(recs)
    return True


def _template(first: bytes, topic: str = TOPIC):
    fast, _ = pair(first, topic=topic)
    return fast.templates[topic][0]


@pytest.mark.parametrize("pair_of", [_demo_pair, _kinds_pair])
def test_matcher_on_every_byte_value_never_decodes_differently(pair_of):
    """Every byte of the message (envelope, protected header, payload) set to every other
    value, unsigned: the matcher declines, or decodes exactly what the full path does."""
    first, second = pair_of()
    t = _template(first, HTOPIC if pair_of is _kinds_pair else TOPIC)
    assert _agrees(t, second)
    decoded = 0
    values = range(256) if pair_of is _kinds_pair else (0x00, 0x01, 0x18, 0x3F, 0x80, 0xF5, 0xFF)
    for i in range(len(second) - 64):
        for b in values:
            if b != second[i]:
                decoded += _agrees(t, second[:i] + bytes([b]) + second[i + 1 :])
    for n in (1, 2, 9, 65, len(second) - 1):
        assert not _agrees(t, second[:-n]) and not _agrees(t, second + second[-n:])
    assert decoded > 100  # the value slots did vary and were decoded


def test_matcher_on_every_half_float():
    first, second = _kinds_pair()
    t = _template(first, HTOPIC)
    at = second.index(b"\x6btime/uptime\x02\xf9") + 14
    nan_declined = 0
    for h in range(65536):
        msg = second[:at] + h.to_bytes(2, "big") + second[at + 2 :]
        if not _agrees(t, msg):
            assert math.isnan(struct.unpack(">e", h.to_bytes(2, "big"))[0])
            nan_declined += 1
    assert nan_declined == 2 * 1023  # exactly the NaNs go to the full path


def test_key_moved_to_another_pole_or_smaller_size_limit_after_learning():
    """State the template cannot know: both paths must say the same."""
    first, second = _demo_pair()
    for change in ("pole", "size"):
        fast, slow = pair(first)
        for ver in (fast, slow):
            if change == "pole":
                ver.keys[SIGNER.kid] = KeyRecord("nl-fast-0002", SIGNER.public_key)
            else:
                ver.max_size = 200
        x, y = fast.check(TOPIC, second), slow.check(TOPIC, second)
        assert x.status == "rejected" and key(x) == key(y), (change, x)
        assert x.reason.startswith("iss" if change == "pole" else "size")
