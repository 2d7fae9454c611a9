"""A small CBOR encoder (RFC 8949) for what the pole emits, portable to MicroPython.

Why our own: the on-device core must run where cbor2 does not, and our messages use
a handful of types. Output is byte-identical to ``cbor2.dumps`` for the same input
(definite lengths, shortest integer heads, floats as float64 like cbor2's default,
NaN/inf as half floats), which a property test checks. Maps are encoded in the
order given; callers that need a fixed order pass a list of pairs (``Map``)
because MicroPython's dicts do not keep insertion order.
"""

import struct


class Tag:
    """A tagged value, e.g. ``Tag(18, [...])`` for COSE_Sign1."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value


class Map:
    """A CBOR map given as an ordered list of (key, value) pairs."""

    def __init__(self, pairs):
        self.pairs = pairs


def head(major, n):
    """The initial bytes of a data item: major type and shortest-form argument."""
    mt = major << 5
    if n < 24:
        return bytes((mt | n,))
    if n < 0x100:
        return bytes((mt | 24, n))
    if n < 0x10000:
        return struct.pack(">BH", mt | 25, n)
    if n < 0x100000000:
        return struct.pack(">BI", mt | 26, n)
    return struct.pack(">BQ", mt | 27, n)


def encode_int(n):
    if n >= 0:
        return head(0, n)
    return head(1, -1 - n)


def encode_bytes(b):
    return head(2, len(b)) + bytes(b)


def encode_text(s):
    b = s.encode("utf-8")
    return head(3, len(b)) + b


def encode_float(f):
    if f != f:
        return b"\xf9\x7e\x00"
    if f == float("inf"):
        return b"\xf9\x7c\x00"
    if f == float("-inf"):
        return b"\xf9\xfc\x00"
    return b"\xfb" + struct.pack(">d", f)


def _encode(obj, out):
    # bool before int: bool is a subclass of int on CPython.
    if obj is True:
        out.append(b"\xf5")
    elif obj is False:
        out.append(b"\xf4")
    elif obj is None:
        out.append(b"\xf6")
    elif isinstance(obj, int):
        out.append(encode_int(obj))
    elif isinstance(obj, float):
        out.append(encode_float(obj))
    elif isinstance(obj, str):
        out.append(encode_text(obj))
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        out.append(encode_bytes(bytes(obj)))
    elif isinstance(obj, (list, tuple)):
        out.append(head(4, len(obj)))
        for item in obj:
            _encode(item, out)
    elif isinstance(obj, Map):
        out.append(head(5, len(obj.pairs)))
        for k, v in obj.pairs:
            _encode(k, out)
            _encode(v, out)
    elif isinstance(obj, dict):
        out.append(head(5, len(obj)))
        for k in obj:
            _encode(k, out)
            _encode(obj[k], out)
    elif isinstance(obj, Tag):
        out.append(head(6, obj.tag))
        _encode(obj.value, out)
    else:
        raise TypeError("cannot CBOR-encode " + type(obj).__name__)


def dumps(obj):
    """Encode ``obj``; raises TypeError for types the pole never emits."""
    out = []
    _encode(obj, out)
    return b"".join(out)
