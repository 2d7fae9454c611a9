"""The strict decoder under MicroPython: the same values, and the same refusals message for
message, as under CPython (tests/test_cbordecode.py checks these very vectors there, and
the accepted ones against cbor2).

MicroPython's own bytes.decode() accepts overlong forms, surrogates and code points
above U+10FFFF; the UTF-8 vectors prove the decoder refuses them here too. A value is
compared by its canonical CBOR (maps sorted, because MicroPython's dicts keep no order).
"""

from edge import cbor
from edge.cbor import Tag
from edge.cbordecode import DEPTH_LIMIT, DecodeError, loads, utf8_check

T18 = {"tags": (18,)}


def _f64(x):
    return "fb" + cbor.encode_float(x)[1:].hex() if x == x else "f97e00"


def _pack():
    """A SenML pack: the first record with bn and bt, records in the fast path's shape
    (float64, small and one-byte counts, a 24-byte name), and others that are not (a
    two-byte count, keys in another order, a text value, a fourth key)."""
    m = cbor.Map
    return cbor.dumps(
        [
            m([(-2, "nl-ex-0001/"), (-3, 1800000000), (0, "window"), (1, "s"), (2, 60)]),
            m([(0, "bme280/temperature/mean"), (1, "Cel"), (2, 21.5)]),
            m([(0, "bme280/temperature/count"), (1, "count"), (2, 7)]),
            m([(0, "bme280/humidity/count"), (1, "count"), (2, 60)]),
            m([(0, "radar/people/count"), (1, "count"), (2, 1000)]),
            m([(1, "Cel"), (0, "x"), (2, -0.0)]),
            m([(0, "lamp/state"), (3, "on")]),
            m([(0, "u"), (1, ""), (2, 1.5), (4, True)]),
        ]
    ).hex()


def _laughs(levels):
    """The value-sharing bomb: level k holds two references to level k-1 (2**k leaves)."""
    out = "d81c8200" + "00"
    for k in range(1, levels):
        ref = "d81d" + cbor.encode_int(k - 1).hex()
        out += "d81c82" + ref + ref
    return cbor.head(4, levels).hex() + out


def _nest(head, inner, k):
    return head * k + inner


# (name, input hex, options, canonical CBOR of the value, as canonical_hex gives it)
ACCEPT = (
    (
        "uint heads",
        cbor.dumps(
            [0, 23, 24, 255, 256, 65535, 65536, 4294967295, 4294967296, 18446744073709551615]
        ).hex(),
        {},
        "8a0017181818ff19010019ffff1a000100001affffffff1b00000001000000001bffffffffffffffff",
    ),
    (
        "negative heads",
        cbor.dumps([-1, -24, -25, -256, -257, -65537, -18446744073709551616]).hex(),
        {},
        "872037381838ff3901003a000100003bffffffffffffffff",
    ),
    (
        "float64",
        "88" + "".join(_f64(x) for x in (0.0, -0.0, 1.5, 1e300, 5e-324, -2.5e-10, 21.515, 0.1)),
        {},
        "88fb0000000000000000fb8000000000000000fb3ff8000000000000fb7e37e43c8800759cfb0000000000000001fbbdf12e0be826d695fb403583d70a3d70a4fb3fb999999999999a",
    ),
    (
        "float16",
        "89f93c00f90001f903fff97bfff9fc00f97c00f97e00f98000f9c500",
        {},
        "89fb3ff0000000000000fb3e70000000000000fb3f0ff80000000000fb40effc0000000000f9fc00f97c00f97e00fb8000000000000000fbc014000000000000",
    ),
    (
        "float32",
        "85fa47c35000fa7f800000fa00000001fa3dcccccdfaff7fffff",
        {},
        "85fb40f86a0000000000f97c00fb36a0000000000000fb3fb99999a0000000fbc7efffffe0000000",
    ),
    ("float NaN payloads", "83f97e01fa7fc00001fb7ff8000000000001", {}, "83f97e00f97e00f97e00"),
    ("simple", "83f5f4f6", {}, "83f5f4f6"),
    (
        "text",
        cbor.dumps(
            [
                "",
                "a",
                "\u00b5g/m\u00b3",
                "x" * 24,
                "y" * 300,
                "\u20ac",
                "\uffff",
                "\U0001f4a1",
                "\U0010ffff",
                "\u0000",
            ]
        ).hex(),
        {},
        "8a60616167c2b5672f6dc2b3781878787878787878787878787878787878787878787878787879012c79797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797979797963e282ac63efbfbf64f09f92a164f48fbfbf6100",
    ),
    (
        "bytes",
        cbor.dumps([b"", b"\x00\xff", b"\x01" * 24, b"\x02" * 256]).hex(),
        {},
        "84404200ff581801010101010101010101010101010101010101010101010159010002020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202020202",
    ),
    (
        "senml pack",
        _pack(),
        {},
        "88a5221a6b49d200216b6e6c2d65782d303030312f006677696e646f7701617302183ca30077626d653238302f74656d70657261747572652f6d65616e016343656c02fb4035800000000000a3007818626d653238302f74656d70657261747572652f636f756e740165636f756e740207a30075626d653238302f68756d69646974792f636f756e740165636f756e7402183ca3007272616461722f70656f706c652f636f756e740165636f756e74021903e8a3006178016343656c02fb8000000000000000a2006a6c616d702f737461746503626f6ea4006175016002fb3ff800000000000004f5",
    ),
    (
        "map keys at the 32-bit edges",
        "a41affffffff013affffffff0261300300a0",
        {},
        "a43affffffff0200a01affffffff01613003",
    ),
    ("key 0 and key '0' differ", "a2006130613000", {}, "a2006130613000"),
    (
        "24 pairs",
        "b818" + "".join(cbor.encode_int(i).hex() + "80" for i in range(24)),
        {},
        "b81800800180028003800480058006800780088009800a800b800c800d800e800f8010801180128013801480158016801780",
    ),
    ("24 elements", "9818" + "00" * 24, {}, "9818000000000000000000000000000000000000000000000000"),
    (
        "cose sign1",
        cbor.dumps(Tag(18, [b"\xa1\x01\x27", cbor.Map([]), b"p" * 300, b"s" * 64])).hex(),
        T18,
        "d28443a10127a059012c707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070584073737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373737373",
    ),
    ("16 levels", _nest("81", "80", 15), {}, "81818181818181818181818181818180"),
    (
        "16 levels of maps",
        _nest("a100", "a0", 15),
        {},
        "a100a100a100a100a100a100a100a100a100a100a100a100a100a100a100a0",
    ),
    ("a tag is a level", "d2" + _nest("81", "80", 14), T18, "d2818181818181818181818181818180"),
    ("depth 1", "8300f66161", {"max_depth": 1}, "8300f66161"),
    ("depth 0, a scalar", "6161", {"max_depth": 0}, "6161"),
)

_LONG_HEADS = {24: "17", 25: "00ff", 26: "0000ffff", 27: "00000000ffffffff"}
NON_MINIMAL = tuple(
    (
        "non-minimal %d/%d" % (major, ai),
        "%02x" % (major << 5 | ai) + _LONG_HEADS[ai],
        {},
        "non-minimal head at byte 0",
    )
    for major in range(7)
    for ai in (24, 25, 26, 27)
)

# (name, input hex, options, the DecodeError's exact message)
REFUSE = (
    ("empty", "", {}, "empty: no item"),
    ("trailing byte", "0000", {}, "trailing bytes after the item that ends at byte 1"),
    ("trailing item", "a0a0", {}, "trailing bytes after the item that ends at byte 1"),
    ("lone break", "ff", {}, "break (0xff) outside an indefinite item at byte 0"),
    ("break in an array", "8200ff", {}, "break (0xff) outside an indefinite item at byte 2"),
    ("indefinite bytes", "5f4100ff", {}, "indefinite length at byte 0"),
    ("indefinite text", "7f6161ff", {}, "indefinite length at byte 0"),
    ("indefinite array", "9f00ff", {}, "indefinite length at byte 0"),
    ("indefinite map", "bf0000ff", {}, "indefinite length at byte 0"),
    ("indefinite uint", "1f", {}, "indefinite length at byte 0"),
    ("indefinite tag", "df00", T18, "indefinite length at byte 0"),
    ("indefinite in an array", "82009f", {}, "indefinite length at byte 2"),
    ("indefinite map value", "a1007fff", {}, "indefinite length at byte 2"),
    ("indefinite map key", "a17fff00", {}, "indefinite length at byte 1"),
    ("reserved 28", "1c", {}, "reserved additional information 28 at byte 0"),
    ("reserved 29", "3d", {}, "reserved additional information 29 at byte 0"),
    ("reserved 30", "5e", {}, "reserved additional information 30 at byte 0"),
    ("reserved in a map", "a100fc", {}, "reserved additional information 28 at byte 2"),
    ("reserved in an array", "81dd", {}, "reserved additional information 29 at byte 1"),
    ("non-minimal bytes in an array", "8158050000000000", {}, "non-minimal head at byte 1"),
    ("non-minimal bytes16 in an array", "815900050000000000", {}, "non-minimal head at byte 1"),
    ("non-minimal text map value", "a10078056161616161", {}, "non-minimal head at byte 2"),
    (
        "non-minimal text in a record",
        "81a3007805616161616101616102f6",
        {},
        "non-minimal head at byte 3",
    ),
    ("non-minimal key", "a11800f6", {}, "non-minimal head at byte 1"),
    ("non-minimal array in an array", "81980100", {}, "non-minimal head at byte 1"),
    ("non-minimal map in an array", "81b8010000", {}, "non-minimal head at byte 1"),
    ("non-minimal count", "a300616101616102" + "1805", {}, "non-minimal head at byte 8"),
    (
        "non-minimal count in a record",
        "81a300616101616102" + "1805",
        {},
        "non-minimal head at byte 9",
    ),
    ("non-minimal tag", "d81200", T18, "non-minimal head at byte 0"),
    ("undefined", "f7", {}, "undefined (simple value 23) at byte 0 is not allowed"),
    ("undefined in an array", "81f7", {}, "undefined (simple value 23) at byte 1 is not allowed"),
    (
        "undefined as a map value",
        "a100f7",
        {},
        "undefined (simple value 23) at byte 2 is not allowed",
    ),
    ("simple 16", "f0", {}, "simple value 16 at byte 0 is not allowed"),
    ("simple 0", "e0", {}, "simple value 0 at byte 0 is not allowed"),
    ("simple 32", "f820", {}, "simple value 32 at byte 0 is not allowed"),
    ("simple 255", "f8ff", {}, "simple value 255 at byte 0 is not allowed"),
    ("false in two bytes", "f814", {}, "simple value 20 at byte 0 is not allowed"),
    (
        "tag 0 date",
        "c074323031332d30332d32315432303a30343a30305a",
        {},
        "tag 0 at byte 0 is not allowed here",
    ),
    ("tag 1 epoch", "c11a514b67b0", {}, "tag 1 at byte 0 is not allowed here"),
    ("tag 2 bignum", "c249010000000000000000", {}, "tag 2 at byte 0 is not allowed here"),
    ("tag 3 bignum", "c349010000000000000000", {}, "tag 3 at byte 0 is not allowed here"),
    ("tag 4 decimal", "c48221196ab3", {}, "tag 4 at byte 0 is not allowed here"),
    ("tag 5 bigfloat", "c58220196ab3", {}, "tag 5 at byte 0 is not allowed here"),
    ("tag 24 embedded", "d81843a10102", {}, "tag 24 at byte 0 is not allowed here"),
    ("tag 28 shareable", "d81c8100", {}, "tag 28 at byte 0 is not allowed here"),
    ("tag 29 shared ref", "d81d00", {}, "tag 29 at byte 0 is not allowed here"),
    ("value-sharing bomb", _laughs(64), {}, "tag 28 at byte 2 is not allowed here"),
    ("tag 35 regex", "d82363612b62", {}, "tag 35 at byte 0 is not allowed here"),
    ("tag 55799 self-describe", "d9d9f700", {}, "tag 55799 at byte 0 is not allowed here"),
    ("tag 64-bit", "db000000010000000000", T18, "a tag at byte 0 is not allowed here"),
    ("tag 18 not allowed", "d28400a0f6f6", {}, "tag 18 at byte 0 is not allowed here"),
    ("tag 61 inside 18", "d281d83d00", T18, "tag 61 at byte 2 is not allowed here"),
    ("tag with no content", "d2", T18, "truncated: tag 18 at byte 0 has no content"),
    ("10000 arrays", _nest("81", "80", 9999), {}, "nested deeper than the limit at byte 16"),
    ("10000 maps", _nest("a100", "a0", 9999), {}, "nested deeper than the limit at byte 32"),
    ("10000 tags", _nest("d2", "00", 10000), T18, "tag 18 at byte 1 is not allowed here"),
    ("tag 18 inside 18", "d2d200", T18, "tag 18 at byte 1 is not allowed here"),
    ("tag 18 in an array", "8200d200", T18, "tag 18 at byte 2 is not allowed here"),
    ("tag 18 as a map value", "a100d200", T18, "tag 18 at byte 2 is not allowed here"),
    ("tag 18 in a record", "81a300600160" + "02d200", T18, "tag 18 at byte 7 is not allowed here"),
    (
        "10000 arrays, depth 32",
        _nest("81", "80", 9999),
        {"max_depth": 32},
        "nested deeper than the limit at byte 32",
    ),
    ("17 levels", _nest("81", "80", 16), {}, "nested deeper than the limit at byte 16"),
    ("17 levels of maps", _nest("a100", "a0", 16), {}, "nested deeper than the limit at byte 32"),
    (
        "17 levels with a tag",
        "d2" + _nest("81", "80", 15),
        T18,
        "nested deeper than the limit at byte 16",
    ),
    (
        "17 levels, an empty array last",
        "81" * 15 + "8180",
        {},
        "nested deeper than the limit at byte 16",
    ),
    (
        "17 levels, an empty map last",
        "81" * 15 + "81a0",
        {},
        "nested deeper than the limit at byte 16",
    ),
    (
        "17 levels, a record last",
        "81" * 15 + "81a300600160020" + "0",
        {},
        "nested deeper than the limit at byte 16",
    ),
    ("depth 0", "80", {"max_depth": 0}, "nested deeper than the limit at byte 0"),
    (
        "bytes 2**63",
        "5b8000000000000000",
        {},
        "declared length 9223372036854775808 at byte 0 exceeds the message",
    ),
    (
        "text 2**64-1",
        "7bffffffffffffffff",
        {},
        "declared length 18446744073709551615 at byte 0 exceeds the message",
    ),
    (
        "array 2**63",
        "9b8000000000000000",
        {},
        "array of 9223372036854775808 elements at byte 0 exceeds the message",
    ),
    (
        "map 2**63",
        "bb8000000000000000",
        {},
        "map of 9223372036854775808 pairs at byte 0 exceeds the message",
    ),
    ("bytes 2**32-1", "5affffffff", {}, "declared length 4294967295 at byte 0 exceeds the message"),
    ("array 65535", "99ffff00", {}, "array of 65535 elements at byte 0 exceeds the message"),
    ("map one pair short", "a20000", {}, "map of 2 pairs at byte 0 exceeds the message"),
    ("bytes one short", "44000000", {}, "declared length 4 at byte 0 exceeds the message"),
    (
        "text one short in an array",
        "8200636161",
        {},
        "declared length 3 at byte 2 exceeds the message",
    ),
    (
        "bytes16 past the end in an array",
        "8159ffff",
        {},
        "declared length 65535 at byte 1 exceeds the message",
    ),
    ("text key past the end", "a17761", {}, "declared length 23 at byte 1 exceeds the message"),
    ("text value past the end", "a10077", {}, "declared length 23 at byte 2 exceeds the message"),
    (
        "long text value past the end",
        "a10078ff",
        {},
        "declared length 255 at byte 2 exceeds the message",
    ),
    (
        "record name past the end",
        "81a3007761016002" + "00",
        {},
        "declared length 23 at byte 3 exceeds the message",
    ),
    ("duplicate int key", "a2000000f6", {}, "duplicate key in the map at byte 0"),
    ("first key again, later", "a300000100000f", {}, "duplicate key in the map at byte 0"),
    ("later keys repeated", "a3000001000100", {}, "duplicate key in the map at byte 0"),
    ("duplicate negative key", "a2200020f6", {}, "duplicate key in the map at byte 0"),
    ("duplicate one-byte key", "a2182000182001", {}, "duplicate key in the map at byte 0"),
    (
        "duplicate 32-bit key",
        "a21affffffff001affffffff01",
        {},
        "duplicate key in the map at byte 0",
    ),
    ("duplicate text key", "a26161006161f6", {}, "duplicate key in the map at byte 0"),
    (
        "duplicate long text key",
        "a2" + ("7818" + "6b" * 24 + "00") * 2,
        {},
        "duplicate key in the map at byte 0",
    ),
    ("duplicate key in a record", "81a300616100616202f6", {}, "duplicate key in the map at byte 1"),
    (
        "duplicate key 1 in a record",
        "81a300616101616201f6",
        {},
        "duplicate key in the map at byte 1",
    ),
    (
        "float key",
        "a1fb3ff000000000000000",
        {},
        "map key at byte 1 is not an integer or text (major type 7)",
    ),
    (
        "half float key",
        "a1f93c0000",
        {},
        "map key at byte 1 is not an integer or text (major type 7)",
    ),
    ("bytes key", "a1410000", {}, "map key at byte 1 is not an integer or text (major type 2)"),
    ("array key", "a18000", {}, "map key at byte 1 is not an integer or text (major type 4)"),
    ("map key", "a1a000", {}, "map key at byte 1 is not an integer or text (major type 5)"),
    ("tag key", "a1c10000", T18, "map key at byte 1 is not an integer or text (major type 6)"),
    ("true key", "a1f500", {}, "map key at byte 1 is not an integer or text (major type 7)"),
    ("null key", "a1f600", {}, "map key at byte 1 is not an integer or text (major type 7)"),
    (
        "64-bit key",
        "a11b000000010000000000",
        {},
        "map key at byte 1 is a 64-bit integer (over 32 bits)",
    ),
    (
        "64-bit negative key",
        "a13b000000010000000000",
        {},
        "map key at byte 1 is a 64-bit integer (over 32 bits)",
    ),
    ("bignum key", "a1c2410100", {}, "map key at byte 1 is not an integer or text (major type 6)"),
    ("overlong 2-byte", "62c080", {}, "text at byte 0 is not valid UTF-8"),
    ("overlong C1", "62c1bf", {}, "text at byte 0 is not valid UTF-8"),
    ("overlong 3-byte", "63e08080", {}, "text at byte 0 is not valid UTF-8"),
    ("overlong 3-byte max", "63e09fbf", {}, "text at byte 0 is not valid UTF-8"),
    ("overlong 4-byte", "64f0808080", {}, "text at byte 0 is not valid UTF-8"),
    ("overlong 4-byte max", "64f08fbfbf", {}, "text at byte 0 is not valid UTF-8"),
    ("surrogate high", "63eda080", {}, "text at byte 0 is not valid UTF-8"),
    ("surrogate low", "63edbfbf", {}, "text at byte 0 is not valid UTF-8"),
    ("above U+10FFFF", "64f4908080", {}, "text at byte 0 is not valid UTF-8"),
    ("F5 lead", "64f5808080", {}, "text at byte 0 is not valid UTF-8"),
    ("FF byte", "61ff", {}, "text at byte 0 is not valid UTF-8"),
    ("lone continuation", "6180", {}, "text at byte 0 is not valid UTF-8"),
    ("truncated sequence", "62e282", {}, "text at byte 0 is not valid UTF-8"),
    ("bad continuation", "62c328", {}, "text at byte 0 is not valid UTF-8"),
    ("surrogate in an array", "8263eda08000", {}, "invalid UTF-8 in the item at byte 1"),
    ("surrogate in a map key", "a163eda08000", {}, "invalid UTF-8 in the item at byte 1"),
    ("surrogate in a map value", "a10063eda080", {}, "invalid UTF-8 in the item at byte 2"),
    (
        "surrogate in a long key",
        "a17818" + "61" * 21 + "eda080" + "00",
        {},
        "text at byte 1 is not valid UTF-8",
    ),
    (
        "surrogate in a long value",
        "a1007818" + "61" * 21 + "eda080",
        {},
        "invalid UTF-8 in the item at byte 2",
    ),
    (
        "surrogate in a record name",
        "81a30063eda08001600200",
        {},
        "invalid UTF-8 in the item at byte 1",
    ),
    (
        "surrogate in a record name, other value",
        "81a30063eda080016002f6",
        {},
        "invalid UTF-8 in the item at byte 3",
    ),
    (
        "surrogate in a record unit",
        "81a300600163eda0800200",
        {},
        "invalid UTF-8 in the item at byte 1",
    ),
    (
        "surrogate in a long record name",
        "81a3007818" + "61" * 21 + "eda08001600200",
        {},
        "invalid UTF-8 in the item at byte 1",
    ),
    (
        "overlong in a long text",
        "7818" + "61" * 22 + "c080",
        {},
        "text at byte 0 is not valid UTF-8",
    ),
    ("truncated uint8", "18", {}, "truncated head at byte 0"),
    ("truncated uint16", "1901", {}, "truncated head at byte 0"),
    ("truncated uint32", "1a000100", {}, "truncated head at byte 0"),
    ("truncated uint64", "1b0000000100", {}, "truncated head at byte 0"),
    ("truncated array", "8200", {}, "array of 2 elements at byte 0 exceeds the message"),
    ("truncated map", "a100", {}, "map of 1 pairs at byte 0 exceeds the message"),
    ("truncated float64", "fb3ff0", {}, "truncated head at byte 0"),
    ("truncated float64 in an array", "81fb3ff0", {}, "truncated: the message ends inside an item"),
    ("truncated float64 in a map", "a100fb3ff0", {}, "truncated: the message ends inside an item"),
    (
        "truncated float64 in a record",
        "81a30060016002fb3ff0",
        {},
        "truncated: the message ends inside an item",
    ),
    ("truncated float16", "f93c", {}, "truncated head at byte 0"),
    ("truncated text", "6261", {}, "declared length 2 at byte 0 exceeds the message"),
    ("oversize", "4800000000000000" + "00", {"max_size": 8}, "9 bytes is over the 8-byte limit"),
) + NON_MINIMAL


def canonical_hex(v):
    return cbor.dumps(_canon(v)).hex()


def _canon(v):
    if isinstance(v, dict):
        return cbor.Map([(k, _canon(v[k])) for k in sorted(v, key=_key_order)])
    if isinstance(v, list):
        return [_canon(x) for x in v]
    if isinstance(v, Tag):
        return Tag(v.tag, _canon(v.value))
    return v


def _key_order(k):
    return (1, k) if isinstance(k, str) else (0, k)


def refusal(data, opts):
    """The DecodeError's message, or an AssertionError when ``data`` is accepted."""
    try:
        loads(data, **opts)
    except DecodeError as exc:
        return str(exc)
    raise AssertionError("accepted")


def test_accepted_vectors():
    for name, h, opts, want in ACCEPT:
        got = canonical_hex(loads(bytes.fromhex(h), **opts))
        assert got == want, "%s: %s" % (name, got)


def test_refused_vectors_with_cpythons_messages():
    bad = []
    for name, h, opts, want in REFUSE:
        got = refusal(bytes.fromhex(h), opts)
        if got != want:
            bad.append("%s: %s" % (name, got))
    assert not bad, bad


def test_bytearray_and_memoryview():
    data = bytes.fromhex("824361626363636465")
    for buf in (bytearray(data), memoryview(data), memoryview(bytearray(data))):
        v = loads(buf)
        assert v == [b"abc", "cde"] and type(v[0]) is bytes, v
    assert refusal(bytearray(9), {"max_size": 8}) == "9 bytes is over the 8-byte limit"


def test_not_bytes():
    assert refusal("a0", {}) == "expected bytes, got str"
    assert refusal([0], {}) == "expected bytes, got list"


def test_every_prefix_of_the_pack_is_truncated():
    data = bytes.fromhex(_pack())
    for i in range(len(data)):
        msg = refusal(data[:i], {})
        assert any(
            msg.startswith(w) for w in ("truncated", "empty", "declared", "array of", "map of")
        ), i


def test_the_stack_never_ends_a_decode_with_anything_but_decode_error():
    # At DEPTH_LIMIT a microcontroller's stack may run out before the limit: still refused.
    for h in (_nest("81", "80", 9999), _nest("a100", "a0", 9999), _nest("81a100", "80", 5000)):
        msg = refusal(bytes.fromhex(h), {"max_depth": DEPTH_LIMIT})
        assert msg.startswith("nested"), msg


def test_utf8_check_matches_the_rules():
    for ok in (b"", b"a", b"\xc2\x80", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf"):
        utf8_check(ok)
    for ok in (b"\xee\x80\x80", b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf"):
        utf8_check(ok)
    for bad in (b"\xc0\x80", b"\xe0\x9f\xbf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"):
        try:
            utf8_check(bad)
        except UnicodeError:
            continue
        raise AssertionError("accepted %s" % bad.hex())
