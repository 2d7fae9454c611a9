"""The one strict CBOR decoder (edge.cbordecode): what it accepts round-trips exactly and
agrees with cbor2; everything else is refused with a DecodeError whose message names a
position, a count or a tag number and never the attacker's bytes; costs stay bounded.

The fixed vectors live in tests/mpy/test_cbordecode.py, so MicroPython checks the very
same values and messages (tests/test_micropython.py runs it there); here they are checked
under CPython and against cbor2.
"""

from __future__ import annotations

import array
import importlib.util
import math
import re
import struct
import sys
import tracemalloc
from pathlib import Path

import cbor2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge import cbor
from edge.cbor import Tag
from edge.cbordecode import (
    DEPTH_LIMIT,
    MAX_SIZE,
    DecodeError,
    _half,
    loads,
    utf8_check,
)

ROOT = Path(__file__).resolve().parent.parent


def _load_vectors():
    path = ROOT / "tests" / "mpy" / "test_cbordecode.py"
    spec = importlib.util.spec_from_file_location("mpy_cbordecode", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


V = _load_vectors()


# --- helpers ------------------------------------------------------------------------------

# Every message the decoder can give, with its numbers taken out: a message that is not
# one of these (after the same substitution) could carry something the attacker wrote.
TEMPLATES = {
    "empty: no item",
    "N bytes is over the N-byte limit",
    "truncated head at byte N",
    "truncated: the message ends inside an item",
    "truncated: tag N at byte N has no content",
    "non-minimal head at byte N",
    "break (Nxff) outside an indefinite item at byte N",
    "indefinite length at byte N",
    "reserved additional information N at byte N",
    "declared length N at byte N exceeds the message",
    "array of N elements at byte N exceeds the message",
    "map of N pairs at byte N exceeds the message",
    "text at byte N is not valid UTF-N",
    "invalid UTF-N in the item at byte N",
    "tag N at byte N is not allowed here",
    "a tag at byte N is not allowed here",
    "nested deeper than the limit at byte N",
    "nested too deep for the interpreter's stack",
    "undefined (simple value N) at byte N is not allowed",
    "simple value N at byte N is not allowed",
    "map key at byte N is a N-bit integer (over N bits)",
    "map key at byte N is not an integer or text (major type N)",
    "duplicate key in the map at byte N",
    "trailing bytes after the item that ends at byte N",
}


def template(exc: DecodeError) -> str:
    msg = str(exc)
    assert len(msg) < 100, msg
    return re.sub(r"\d+", "N", msg)


def refuse(data, reason: str, **opts) -> str:
    """Assert ``data`` is refused with a message containing ``reason``; return it."""
    with pytest.raises(DecodeError) as info:
        loads(data, **opts)
    msg = str(info.value)
    assert reason in msg, msg
    assert template(info.value) in TEMPLATES, msg
    return msg


def same(a, b) -> bool:
    """Equal in type and value: 1 is not 1.0 nor True, -0.0 is not 0.0, NaN is NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, Tag):
        return a.tag == b.tag and same(a.value, b.value)
    return a == b


def from_cbor2(v):
    """cbor2's result in our types (it returns frozendict and tuples inside tags)."""
    if isinstance(v, cbor2.CBORTag):
        return Tag(v.tag, from_cbor2(v.value))
    if isinstance(v, (list, tuple)):
        return [from_cbor2(x) for x in v]
    if isinstance(v, (dict, cbor2.frozendict)):
        return {k: from_cbor2(x) for k, x in v.items()}
    return v


def to_cbor2(v):
    if isinstance(v, Tag):
        return cbor2.CBORTag(v.tag, to_cbor2(v.value))
    if isinstance(v, list):
        return [to_cbor2(x) for x in v]
    if isinstance(v, dict):
        return {k: to_cbor2(x) for k, x in v.items()}
    return v


def strict_cbor2(data: bytes):
    return cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False, max_depth=200)


def decode_or_refuse(data: bytes, **opts):
    """Our verdict on ``data``; when we accept, strict cbor2 must accept the same value
    (we decode a subset of CBOR, never something else)."""
    try:
        ours = loads(data, **opts)
    except DecodeError as exc:
        assert template(exc) in TEMPLATES, str(exc)
        return exc
    ref = from_cbor2(strict_cbor2(data))
    assert same(ours, ref), (ours, ref)
    if not has_float(ours):  # one value, one encoding (floats may take any width)
        assert cbor.dumps(ours) == bytes(data)
    return ours


def has_float(v) -> bool:
    if isinstance(v, float):
        return True
    if isinstance(v, Tag):
        return has_float(v.value)
    if isinstance(v, list):
        return any(has_float(x) for x in v)
    if isinstance(v, dict):
        return any(has_float(x) for x in v.values())
    return False


# --- the accepted subset: hypothesis ------------------------------------------------------

keys = st.integers(-(2**32), 2**32 - 1) | st.text(max_size=12)
scalars = (
    st.integers(-(2**64), 2**64 - 1)
    | st.floats()
    | st.floats(width=32)
    | st.floats(width=16)
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.booleans()
    | st.none()
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
TAGS = (18, 61, 98, 2**32 - 1)
tagged = st.builds(Tag, st.sampled_from(TAGS), values)
nested_tags = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(keys, inner, max_size=4)
        | st.builds(Tag, st.sampled_from(TAGS), inner)
    ),
    max_leaves=15,
)


def tags_below_the_top(v, top=True) -> bool:
    if isinstance(v, Tag):
        return not top or tags_below_the_top(v.value, False)
    if isinstance(v, list):
        return any(tags_below_the_top(x, False) for x in v)
    if isinstance(v, dict):
        return any(tags_below_the_top(x, False) for x in v.values())
    return False


@given(values)
@example(float("nan"))
@example([-0.0, 0.0, float("inf"), float("-inf"), 5e-324])
@example({0: "bme280/temperature/mean", 1: "Cel", 2: 21.5})
@example([{0: "x" * 24, 1: "count", 2: 60}, {0: "y", 1: "z", 2: 3}])
def test_cbor2_encodings_round_trip(v):
    for data in (cbor2.dumps(v), cbor2.dumps(v, canonical=True)):
        assert same(loads(data, max_depth=DEPTH_LIMIT), v)


@given(values)
def test_our_encoder_round_trips(v):
    assert same(loads(cbor.dumps(v), max_depth=DEPTH_LIMIT), v)


@given(tagged)
def test_an_allowed_tag_on_the_outermost_item_round_trips(v):
    data = cbor2.dumps(to_cbor2(v))
    assert same(loads(data, tags=TAGS, max_depth=DEPTH_LIMIT), v)
    assert same(loads(cbor.dumps(v), tags=TAGS, max_depth=DEPTH_LIMIT), v)
    refuse(data, f"tag {v.tag} at byte 0 is not allowed here", max_depth=DEPTH_LIMIT)
    refuse(data, f"tag {v.tag} at byte 0", tags=tuple(t for t in TAGS if t != v.tag))


@given(nested_tags)
def test_a_tag_inside_anything_is_refused_even_when_allowed(v):
    data = cbor2.dumps(to_cbor2(v))
    if tags_below_the_top(v):
        refuse(data, "is not allowed here", tags=TAGS, max_depth=DEPTH_LIMIT)
    else:
        assert same(loads(data, tags=TAGS, max_depth=DEPTH_LIMIT), v)


@given(st.binary(max_size=400))
@example(b"")
@example(b"\xff")
@example(b"\x9b" + b"\xff" * 8)
def test_any_bytes_are_decoded_or_refused(data):
    decode_or_refuse(data)
    decode_or_refuse(data, tags=(18,), max_depth=4)


# Bytes a fuzzer rarely finds by chance: heads of every width and type.
HEADS = [0x00, 0x17, 0x18, 0x19, 0x1A, 0x1B, 0x1F, 0x20, 0x38, 0x3B, 0x40, 0x58, 0x5B, 0x5F]
HEADS += [0x60, 0x61, 0x62, 0x78, 0x79, 0x7B, 0x7F, 0x80, 0x81, 0x83, 0x98, 0x9F, 0xA0, 0xA1]
HEADS += [0xA3, 0xB8, 0xBF, 0xC0, 0xC2, 0xD2, 0xD8, 0xDC, 0xF4, 0xF5, 0xF6, 0xF7, 0xF8, 0xF9]
HEADS += [0xFA, 0xFB, 0xFF, 0xC0, 0xED, 0xF0, 0xF4, 0xA0, 0x80]
heady = st.lists(st.sampled_from(HEADS) | st.integers(0, 255), max_size=60).map(bytes)


@given(heady)
def test_head_soup_is_decoded_or_refused(data):
    decode_or_refuse(data)
    decode_or_refuse(data, tags=(18,))


MUTATIONS = (0x00, 0x01, 0x17, 0x18, 0x1B, 0x5B, 0x7F, 0x9F, 0xA3, 0xBF, 0xD8, 0xF7, 0xFF)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(values, st.booleans())
@example([{0: "bme280/temperature/mean", 1: "Cel", 2: 21.5}, {0: "n", 1: "count", 2: 7}], False)
def test_every_truncation_and_single_byte_mutation(v, canonical):
    data = cbor2.dumps(v, canonical=canonical)
    for i in range(len(data)):
        assert isinstance(decode_or_refuse(data[:i]), DecodeError), i  # CBOR is prefix-free
    for i in range(len(data)):
        for b in {*MUTATIONS, data[i] ^ 0x01, data[i] ^ 0x20, data[i] ^ 0x80}:
            decode_or_refuse(data[:i] + bytes((b,)) + data[i + 1 :])
    decode_or_refuse(data + b"\x00")


def test_every_mutation_of_the_vectors():
    """Exhaustively: each byte of each fixed vector replaced by each of the 256 values."""
    count = 0
    for _name, h, opts, _want in V.ACCEPT:
        data = bytes.fromhex(h)
        if len(data) > 200:
            continue
        for i in range(len(data)):
            for b in range(256):
                decode_or_refuse(data[:i] + bytes((b,)) + data[i + 1 :], **opts)
                count += 1
    assert count > 50_000


# --- the fixed vectors, the same ones MicroPython checks ------------------------------------


def test_fixed_vectors_match_cpython_and_cbor2():
    for name, h, opts, want in V.ACCEPT:
        data = bytes.fromhex(h)
        got = loads(data, **opts)
        assert V.canonical_hex(got) == want, name
        assert same(got, from_cbor2(strict_cbor2(data))), name
    for name, h, opts, want in V.REFUSE:
        assert V.refusal(bytes.fromhex(h), opts) == want, name
        assert template(DecodeError(want)) in TEMPLATES, name


def test_micropython_test_functions_pass_on_cpython():
    ran = [f for f in dir(V) if f.startswith("test_")]
    for name in ran:
        getattr(V, name)()
    assert len(ran) >= 6


# --- one test per hostile class --------------------------------------------------------------


def laughs(levels: int) -> bytes:
    return bytes.fromhex(V._laughs(levels))


def test_value_sharing_bomb_is_refused_at_the_first_tag():
    data = laughs(64)  # 2**64 leaves once resolved; 700 bytes
    assert len(data) < 1000
    refuse(data, "tag 28 at byte 2 is not allowed")
    refuse(bytes.fromhex("d81d00"), "tag 29 at byte 0")
    refuse(bytes.fromhex("d81c8100"), "tag 28", tags=(18,))
    # cbor2 resolves the references (the whole graph in a few bytes)
    assert len(cbor2.loads(laughs(4))) == 4


@pytest.mark.parametrize(
    "hexdata, tag",
    [
        ("d82363612b62", 35),  # regular expression
        ("c249010000000000000000", 2),  # positive bignum
        ("c349010000000000000000", 3),  # negative bignum
        ("c074323031332d30332d32315432303a30343a30305a", 0),  # date/time text
        ("c11a514b67b0", 1),  # epoch date
        ("c48221196ab3", 4),  # decimal fraction
        ("c58220196ab3", 5),  # bigfloat
        ("d81843a10102", 24),  # embedded CBOR
        ("d82076687474703a2f2f782e6f7267", 32),  # URI
        ("d9d9f700", 55799),  # self-described CBOR
        ("d9010280", 258),  # set
        ("d28400a0f6f6", 18),  # COSE_Sign1 where the format did not ask for it
    ],
)
def test_semantic_tags_are_refused(hexdata, tag):
    refuse(bytes.fromhex(hexdata), f"tag {tag} at byte 0 is not allowed here")
    refuse(bytes.fromhex("81" + hexdata), f"tag {tag} at byte 1 is not allowed here")
    refuse(bytes.fromhex("a100" + hexdata), f"tag {tag} at byte 2")


def test_only_the_callers_tags_pass():
    v = loads(bytes.fromhex("d28440a0f64100"), tags=(18,))
    assert isinstance(v, Tag) and v.tag == 18 and v.value == [b"", {}, None, b"\x00"]
    refuse(bytes.fromhex("d2d200"), "tag 18 at byte 1 is not allowed here", tags=(18,))
    refuse(bytes.fromhex("d2" * 10_000 + "00"), "tag 18 at byte 1 is not", tags=(18,))
    refuse(bytes.fromhex("d2" + "81" * 10_000 + "80"), "nested deeper", tags=(18,))
    refuse(bytes.fromhex("d2" + "81" * 15 + "80"), "nested deeper", tags=(18,))
    assert loads(bytes.fromhex("d2" + "81" * 14 + "80"), tags=(18,)).tag == 18
    refuse(bytes.fromhex("d2d200"), "nested deeper", tags=(18,), max_depth=0)
    for inner in ("8200d200", "a100d200", "81a30060016002d200"):
        refuse(bytes.fromhex("d2" + inner), "tag 18 at byte", tags=(18,))
    refuse(bytes.fromhex("db000000010000001200"), "a tag at byte 0", tags=(18,))
    refuse(bytes.fromhex("d2"), "truncated: tag 18", tags=(18,))


@pytest.mark.parametrize(
    "unit, inner",
    [("81", "80"), ("a100", "a0"), ("a16161", "80"), ("8200", "80"), ("a200f601", "80")],
)
def test_deep_nesting_is_refused_without_recursion_error(unit, inner):
    opts: dict = {}
    nest = bytes.fromhex(unit * 10_000 + inner)
    refuse(nest, "nested deeper than the limit", **opts)
    refuse(nest, "nested deeper than the limit", max_depth=DEPTH_LIMIT, **opts)
    for depth in (1, 16, 17, 40):
        data = bytes.fromhex(unit * (depth - 1) + inner)
        if depth <= 16:
            loads(data, **opts)
        else:
            refuse(data, "nested deeper than the limit", **opts)


def test_max_depth_beyond_the_limit_is_the_callers_mistake():
    for bad in (DEPTH_LIMIT + 1, 10_000, -1):
        with pytest.raises(ValueError) as info:
            loads(b"\x80", max_depth=bad)
        assert not isinstance(info.value, DecodeError)


def test_a_shallow_stack_ends_in_decode_error_not_recursion_error():
    """Called with little stack left (deep in the caller's own recursion), the decoder runs
    out of stack before its depth limit: that is still a refusal, never RecursionError."""
    nest = bytes.fromhex("81a100" * 15 + "80")
    assert loads(nest, max_depth=31)
    saved = sys.getrecursionlimit()

    def at_depth(k):
        if k:
            return at_depth(k - 1)
        sys.setrecursionlimit(len(_frames()) + 12)
        try:
            return loads(nest, max_depth=31)
        finally:
            sys.setrecursionlimit(saved)

    with pytest.raises(DecodeError, match="interpreter's stack"):
        at_depth(5)


def _frames():
    f, out = sys._getframe(), []
    while f:
        out.append(f)
        f = f.f_back
    return out


@pytest.mark.parametrize("major", [2, 3, 4, 5])
@pytest.mark.parametrize("length", [2**63, 2**64 - 1, 2**32 - 1, 65535, 256, 24])
def test_huge_declared_lengths_are_refused_before_allocating(major, length):
    """The head is refused as it is read: what is allocated is the error and its traceback
    (a few KiB, whatever the declared length; 256 elements would already be 2 KiB)."""
    data = cbor.head(major, length)
    for prefix in (b"", b"\x81", b"\xa1\x00", b"\x82\x00"):
        msg = refuse(prefix + data + b"\x00", "exceeds the message")
        assert str(length) in msg
        peak = peak_of(prefix + data + b"\x00")
        assert peak < 8192, (msg, peak)


def test_lengths_exactly_at_the_end_are_accepted():
    assert loads(b"\x58\x18" + b"\x00" * 24) == b"\x00" * 24
    assert loads(b"\x98\x18" + b"\x00" * 24) == [0] * 24
    refuse(b"\x58\x18" + b"\x00" * 23, "declared length 24 at byte 0")
    refuse(b"\x98\x18" + b"\x00" * 23, "array of 24 elements")
    refuse(b"\xb8\x18" + b"\x00" * 47, "map of 24 pairs")


@pytest.mark.parametrize(
    "hexdata",
    [
        "a2000000f6",  # int key twice, first position
        "a300000100000f",  # the first key again, last
        "a3000001000100",  # later keys repeated
        "a2200020f6",  # negative
        "a2182000182001",  # one-byte head
        "a219010000190100f6",  # two-byte head
        "a21affffffff001affffffff01",  # 32-bit
        "a26161006161f6",  # text
        "a2" + ("7818" + "6b" * 24 + "00") * 2,  # long text, the general path
        "a3616100616200616101",  # text, first and last
    ],
)
def test_duplicate_keys_are_refused(hexdata):
    data = bytes.fromhex(hexdata)
    refuse(data, "duplicate key in the map at byte 0")
    refuse(b"\x81" + data, "duplicate key in the map at byte 1")
    refuse(b"\xa1\x00" + data, "duplicate key in the map at byte 2")
    with pytest.raises(cbor2.CBORDecodeError):
        strict_cbor2(data)


def test_duplicate_keys_in_the_senml_fast_path_are_refused():
    rec = "a3 00 6161 %s 6162 02 %s"
    for k1, value in (("00", "f6"), ("00", "00"), ("00", "fb3ff8000000000000"), ("02", "00")):
        refuse(bytes.fromhex(("81" + rec % (k1, value)).replace(" ", "")), "duplicate key")
    ok = loads(bytes.fromhex(("81" + rec % ("01", "00")).replace(" ", "")))
    assert ok == [{0: "a", 1: "b", 2: 0}]
    assert loads(bytes.fromhex("a2006130613000")) == {0: "0", "0": 0}


@pytest.mark.parametrize(
    "hexdata",
    ["5f4100ff", "7f6161ff", "9f00ff", "bf0000ff", "1f", "3f", "df00", "ff", "5fff", "9fff"],
)
def test_indefinite_lengths_are_refused(hexdata):
    data = bytes.fromhex(hexdata)
    reason = "break (0xff) outside" if data[0] == 0xFF else "indefinite length at byte 0"
    refuse(data, reason)
    refuse(b"\x82\x00" + data, reason.replace("byte 0", "byte 2"))
    refuse(b"\xa1\x00" + data, reason.replace("byte 0", "byte 2"))
    if data[0] in (0x7F, 0x1F, 0x3F):  # as a key (bytes are refused as keys first)
        refuse(b"\xa1" + data + b"\x00", reason.replace("byte 0", "byte 1"))


LONG_HEADS = {24: "17", 25: "00ff", 26: "0000ffff", 27: "00000000ffffffff"}


@pytest.mark.parametrize("major", range(7))
@pytest.mark.parametrize("ai", [24, 25, 26, 27])
def test_non_minimal_heads_are_refused(major, ai):
    head = bytes([major << 5 | ai]) + bytes.fromhex(LONG_HEADS[ai])
    opts = {"tags": (0xFF, 0xFFFF, 0xFFFFFFFF, 0x17)}
    refuse(head + b"\x00" * 300, "non-minimal head at byte 0", **opts)
    refuse(b"\x82\x00" + head + b"\x00" * 300, "non-minimal head at byte 2", **opts)
    refuse(b"\xa1\x00" + head + b"\x00" * 300, "non-minimal head at byte 2", **opts)
    if major < 2 or major == 3:
        refuse(b"\xa1" + head + b"\x00" * 300, "at byte 1", **opts)
    # the shortest form of the same argument is accepted
    minimal = cbor.head(major, int(LONG_HEADS[ai], 16))
    if major in (0, 1):
        assert loads(minimal) in (0x17, 0xFF, 0xFFFF, 0xFFFFFFFF, -0x18, -0x100, -0x10000, -(2**32))


def test_floats_take_any_width():
    for h in ("f93e00", "fa3fc00000", "fb3ff8000000000000"):
        assert same(loads(bytes.fromhex(h)), 1.5)
    assert same(loads(bytes.fromhex("f90000")), 0.0)
    assert same(loads(bytes.fromhex("fa80000000")), -0.0)


def test_every_half_float_is_exact():
    for h in range(0x10000):
        want = struct.unpack(">e", h.to_bytes(2, "big"))[0]
        got = _half(h)
        assert same(got, want), hex(h)
        assert same(loads(b"\xf9" + h.to_bytes(2, "big")), want)


@pytest.mark.parametrize("ai", [28, 29, 30])
@pytest.mark.parametrize("major", range(8))
def test_reserved_additional_information_is_refused(major, ai):
    ib = bytes([major << 5 | ai])
    refuse(ib, f"reserved additional information {ai} at byte 0")
    refuse(b"\x81" + ib, f"reserved additional information {ai} at byte 1")
    refuse(b"\xa1\x00" + ib, "at byte 2")


@pytest.mark.parametrize(
    "hexdata, reason",
    [
        ("f7", "undefined (simple value 23) "),
        ("e0", "simple value 0 "),
        ("f3", "simple value 19 "),
        ("f820", "simple value 32 "),
        ("f8ff", "simple value 255 "),
        ("f814", "simple value 20 "),  # false, in two bytes
        ("f818", "simple value 24 "),
    ],
)
def test_other_simple_values_are_refused(hexdata, reason):
    data = bytes.fromhex(hexdata)
    refuse(data, reason + "at byte 0")
    refuse(b"\x81" + data, reason + "at byte 1")
    refuse(b"\xa1\x00" + data, reason + "at byte 2")
    assert loads(b"\x83\xf4\xf5\xf6") == [False, True, None]


def test_trailing_bytes_are_refused():
    refuse(b"\x00\x00", "trailing bytes after the item that ends at byte 1")
    refuse(b"\x80\xff", "ends at byte 1")
    refuse(cbor.dumps({0: "x"}) + b"\x60", "ends at byte 4")


INVALID_UTF8 = [
    "c080",  # overlong NUL
    "c1bf",  # overlong
    "e08080",  # overlong, 3 bytes
    "e09fbf",
    "f0808080",  # overlong, 4 bytes
    "f08fbfbf",
    "eda080",  # surrogate D800
    "edbfbf",  # surrogate DFFF
    "f4908080",  # above U+10FFFF
    "f5808080",
    "f8888080",
    "ff",
    "80",  # lone continuation
    "e282",  # cut short
    "c328",  # bad continuation
    "e228a1",
    "f0908028",
]


@pytest.mark.parametrize("bad", INVALID_UTF8)
def test_invalid_utf8_is_refused_everywhere(bad):
    raw = bytes.fromhex(bad)
    with pytest.raises(UnicodeError):
        raw.decode("utf-8")
    with pytest.raises(UnicodeError):
        utf8_check(raw)
    short = cbor.head(3, len(raw)) + raw
    long = cbor.head(3, len(raw) + 30) + b"a" * 30 + raw
    for text in (short, long):
        refuse(text, "text at byte 0 is not valid UTF-8")
        refuse(b"\x81" + text, "UTF-8")  # an array element
        refuse(b"\xa1" + text + b"\x00", "UTF-8")  # a key
        refuse(b"\xa1\x00" + text, "UTF-8")  # a value
        refuse(b"\x81\xa3\x00" + text + b"\x01\x60\x02\x00", "UTF-8")  # a record's name
        refuse(b"\x81\xa3\x00\x60\x01" + text + b"\x02\xf6", "UTF-8")  # a record's unit
        refuse(b"\x81\xa3\x00\x60\x01" + text + b"\x02\x00", "UTF-8")


@pytest.mark.parametrize(
    "key",
    ["fb3ff0000000000000", "f93c00", "fa3f800000", "4100", "40", "80", "a0", "c100", "f5", "f4"]
    + ["f6", "f7", "8100"],
)
def test_map_keys_of_other_types_are_refused(key):
    data = bytes.fromhex("a1" + key + "00")
    refuse(data, f"map key at byte 1 is not an integer or text (major type {data[1] >> 5})")
    refuse(b"\x81" + data, "map key at byte 2 is not an integer or text", tags=(1,))


def test_integer_keys_beyond_32_bits_are_refused():
    refuse(bytes.fromhex("a11b000000010000000000"), "map key at byte 1 is a 64-bit integer")
    refuse(bytes.fromhex("a13bffffffffffffffff00"), "map key at byte 1 is a 64-bit integer")
    refuse(bytes.fromhex("a1c249010000000000000000f6"), "map key at byte 1 is not an integer")
    edges = {2**32 - 1: 0, -(2**32): 1, 0: 2, -1: 3}
    assert loads(cbor2.dumps(edges)) == edges


def test_oversize_input_is_refused_before_decoding():
    refuse(b"\x00" * (MAX_SIZE + 1), f"{MAX_SIZE + 1} bytes is over the {MAX_SIZE}-byte limit")
    refuse(bytearray(10), "10 bytes is over the 9-byte limit", max_size=9)
    refuse(memoryview(bytes(10)), "10 bytes is over the 9-byte limit", max_size=9)
    # len() of a memoryview counts items: 2 items of 8 bytes are 16 bytes
    refuse(memoryview(array.array("Q", [0, 0])), "16 bytes is over the 9-byte limit", max_size=9)
    assert loads(b"\x40", max_size=1) == b""


def test_empty_and_truncated_input():
    refuse(b"", "empty: no item")
    for data in (b"\x18", b"\x19\x01", b"\x1a\x00\x01", b"\x1b\x00", b"\xf9\x3c", b"\xfb\x3f"):
        refuse(data, "truncated head at byte 0")
    refuse(b"\x81\xfb\x3f", "truncated: the message ends inside an item")
    refuse(b"\xa1\x00\xfb\x3f", "truncated: the message ends inside an item")
    refuse(b"\x82\x00\x18", "truncated head at byte 2")


def test_input_types():
    data = bytes.fromhex("824361626363636465")
    for buf in (bytearray(data), memoryview(data), memoryview(bytearray(data))[0:]):
        v = loads(buf)
        assert v == [b"abc", "cde"] and type(v[0]) is bytes
    assert loads(memoryview(b"\x00\x82\x01\x02")[1:]) == [1, 2]
    assert loads(memoryview(b"\x82x\x01x\x02")[::2]) == [1, 2]  # not contiguous
    for bad in ("a0", [0], None, 0, bytearray):
        with pytest.raises(DecodeError, match="expected bytes, got "):
            loads(bad)


def test_a_bytearray_changed_after_the_call_changes_nothing():
    buf = bytearray(cbor.dumps([b"abc", {0: b"x"}]))
    v = loads(buf)
    buf[:] = b"\x00" * len(buf)
    assert v == [b"abc", {0: b"x"}]


MARK = "SECRET-\u00e9-MARK"


@pytest.mark.parametrize(
    "data",
    [
        cbor.dumps([MARK, {MARK: MARK}]) + b"\x00",
        cbor.dumps({MARK: 1, "k": 2})[:-1],
        b"\xa2" + cbor.dumps(MARK) + b"\x00" + cbor.dumps(MARK) + b"\x00",
        cbor.dumps([MARK]) + cbor.dumps(MARK),
        b"\xd8\x23" + cbor.dumps(MARK),
        b"\x81" + cbor.dumps(MARK)[:-1] + b"\xff",
        b"\x7f" + cbor.dumps(MARK) + b"\xff",
        b"\xa1" + cbor.dumps(MARK.encode()) + b"\x00",
        cbor.dumps(MARK)[:-1] + b"\xc0",  # invalid UTF-8, each path
        cbor.dumps([MARK])[:-2] + b"\xed\xa0",
        cbor.dumps({0: MARK})[:-1] + b"\xff",
        cbor.dumps({MARK: 0})[:-2] + b"\xff\x00",
        cbor.dumps([{0: MARK, 1: "u", 2: 0.5}])[:-14] + b"\xff" + b"\x01\x61u\x02\xf6",
        cbor.dumps([1.5])[:-3],  # truncated: struct.error inside
        cbor.dumps([1000, 0])[:-1],  # truncated: IndexError inside
    ],
)
def test_errors_never_quote_the_input(data):
    with pytest.raises(DecodeError) as info:
        loads(data)
    msg = str(info.value)
    assert "SECRET" not in msg and "MARK" not in msg and "\\x" not in msg
    assert template(info.value) in TEMPLATES
    # nor carry them along: a UnicodeDecodeError as __context__ would hold the bytes
    assert info.value.__context__ is None and info.value.__cause__ is None


# --- UTF-8 on MicroPython: the check that stands in for CPython's strict decoder -------------


@given(st.binary(max_size=12))
@example(b"\xed\x9f\xbf\xee\x80\x80")
def test_utf8_check_agrees_with_cpython_on_any_bytes(b):
    try:
        b.decode("utf-8")
        ok = True
    except UnicodeError:
        ok = False
    try:
        utf8_check(b)
        assert ok, b.hex()
    except UnicodeError:
        assert not ok, b.hex()


@given(st.text(max_size=20))
def test_utf8_check_accepts_all_text(s):
    utf8_check(s.encode("utf-8"))


def test_utf8_check_agrees_on_every_short_sequence():
    """All 2-byte sequences, and every 3- and 4-byte one whose lead byte has a special range
    (E0 overlong, ED surrogates, F0 overlong, F4 above U+10FFFF)."""

    def agree(b):
        try:
            b.decode("utf-8")
            ok = True
        except UnicodeError:
            ok = False
        try:
            utf8_check(b)
            return ok
        except UnicodeError:
            return not ok

    conts = [0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xFF]
    for a in range(256):
        for b in range(256):
            assert agree(bytes((a, b))), (a, b)
            if a in (0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5):
                for c in conts:
                    assert agree(bytes((a, b, c))), (a, b, c)
                    if a >= 0xF0:
                        for d in conts:
                            assert agree(bytes((a, b, c, d))), (a, b, c, d)


# --- memory ------------------------------------------------------------------------------------

# Peak allocation per input byte. No input byte makes more than one Python object, and the
# densest shape is a chain of one-pair maps, {0: {0: ...}}: two bytes each, and each a
# dict with one entry (CPython 3.11: the object plus an 8-slot key table, ~220 bytes), so
# ~110 bytes per input byte. 128 leaves room for the allocator and for list growth; at
# the default max_size (64 KiB) that is 8 MiB, half of issue 13's 16 MiB per message.
PER_BYTE = 128


def _fill(item: bytes, size: int = MAX_SIZE) -> bytes:
    k = (size - 5) // len(item)
    return cbor.head(4, k) + item * k


def worst_inputs(size: int = MAX_SIZE) -> dict[str, bytes]:
    return {
        "empty arrays": _fill(b"\x80", size),
        "empty maps": _fill(b"\xa0", size),
        "[0]": _fill(b"\x81\x00", size),
        "{0: 0}": _fill(b"\xa1\x00\x00", size),
        "{0: {}}": _fill(b"\xa1\x00\xa0", size),
        "[[]]": _fill(b"\x81\x80", size),
        "nested arrays": _fill(b"\x81" * 14 + b"\x80", size),
        "nested maps": _fill(b"\xa1\x00" * 14 + b"\xa0", size),
        "records": _fill(b"\xa3\x00\x60\x01\x60\x02\x00", size),
        "half floats": _fill(b"\xf9\x3c\x01", size),
        "two-char texts": _fill(b"\x62ab", size),
        "empty bytes": _fill(b"\x40", size),
        "uint32": _fill(b"\x1a\xff\xff\xff\xff", size),
    }


def peak_of(data: bytes, **opts) -> int:
    tracemalloc.start()
    try:
        try:
            loads(data, **opts)
        except DecodeError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", sorted(worst_inputs(64)))
def test_peak_memory_is_a_small_multiple_of_the_input(name):
    data = worst_inputs()[name]
    assert len(data) <= MAX_SIZE
    loads(data, tags=(18,))
    peak = peak_of(data, tags=(18,))
    assert peak <= PER_BYTE * len(data), (name, peak, peak / len(data))
    assert peak < 16 * 1024 * 1024


def test_refused_inputs_cost_no_more_than_accepted_ones():
    for name, data in worst_inputs(16 * 1024).items():
        bad = data[:-1] + b"\xf7"  # all the work, then refused at the last byte
        assert peak_of(bad, tags=(18,)) <= PER_BYTE * len(bad), name


def test_container_lengths_are_bounded_at_their_heads():
    """max_len: an array or map declaring more than the format allows is refused at its
    head, before any element is decoded (the verifier's bound on records per pack)."""
    assert loads(cbor2.dumps([0] * 4), max_len=4) == [0] * 4
    assert loads(cbor2.dumps({i: 0 for i in range(4)}), max_len=4) == {i: 0 for i in range(4)}
    for value, what in (([0] * 5, "array of 5"), ({i: 0 for i in range(5)}, "map of 5")):
        with pytest.raises(DecodeError, match=what + r".* over the limit of 4"):
            loads(cbor2.dumps(value), max_len=4)
    nested = cbor2.dumps([[0] * 9])
    with pytest.raises(DecodeError, match="array of 9"):
        loads(nested, max_len=8)
