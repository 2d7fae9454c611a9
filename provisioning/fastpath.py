"""The verifier's fast path: per-pole templates of the message bytes, learned from a
message the full path accepted. The mirror of the pole's encoder (edge/senml.py).

A pole's data messages have the same shape every window: the same protected header
but for iat and cti, the same record names and units, the same value encodings
(doubles for statistics, small integers for counts). Only the values change. So after
one message has passed every check the slow way, its bytes are split into constant
chunks and value slots, compiled into one ``struct`` format. A later message on the
same topic is parsed with one ``unpack_from``; its constant chunks must equal the
learned ones exactly and each one-byte slot must hold the same kind of item (a small
unsigned integer stays one). Anything else (a length, a byte of a name, an encoding
width) falls back to the full path, which may learn a new template.

Why this is as strict as the full path: every byte outside a value slot is identical
to a message the full path accepted, so the CBOR structure, labels, names, units,
algorithm, kid and iss are the same; every value slot decodes to a value of the same
CBOR major type and width, so SenML's rules give the same records with the new
values. The checks that depend on values or state (key still active, signature,
topic, iat skew, replay window) run on every message as before; see
``Verifier._check_fast``. Tests compare both paths on random and mutated messages
(tests/test_verifier_fastpath.py).
"""

from __future__ import annotations

import struct
from itertools import chain, repeat
from operator import itemgetter

from provisioning.senml_decode import BN, BT, VB, VS, N, Record, U, V

MAX_TEMPLATES_PER_TOPIC = 3
_SIG1_PREFIX = b"\x84\x6aSignature1"


class _Node:
    __slots__ = ("start", "head_end", "end", "major", "arg", "children", "ai")

    def __init__(self, start: int, head_end: int, major: int, ai: int, arg: int) -> None:
        self.start = start
        self.head_end = head_end
        self.end = head_end
        self.major = major
        self.ai = ai
        self.arg = arg
        self.children: list[_Node] = []


class _Unsupported(Exception):
    pass


def _parse(buf: bytes, off: int, end: int) -> _Node:
    """One CBOR item at ``off`` with byte offsets (definite lengths only)."""
    if off >= end:
        raise _Unsupported("truncated")
    ib = buf[off]
    major, ai = ib >> 5, ib & 0x1F
    p = off + 1
    if ai < 24:
        arg = ai
    elif ai in (24, 25, 26, 27):
        width = 1 << (ai - 24)
        arg = int.from_bytes(buf[p : p + width], "big")
        p += width
    else:
        raise _Unsupported("indefinite or reserved")
    node = _Node(off, p, major, ai, arg)
    if major in (2, 3):
        node.end = p + arg
    elif major == 4:
        for _ in range(arg):
            child = _parse(buf, p, end)
            node.children.append(child)
            p = child.end
        node.end = p
    elif major == 5:
        for _ in range(2 * arg):
            child = _parse(buf, p, end)
            node.children.append(child)
            p = child.end
        node.end = p
    elif major == 6:
        child = _parse(buf, p, end)
        node.children.append(child)
        node.end = child.end
    if node.end > end:
        raise _Unsupported("truncated")
    return node


def _head(buf: bytes, off: int, major: int) -> tuple[int, int]:
    """(offset after the head, count) of a definite-length array or map head at ``off``."""
    ib = buf[off]
    if ib >> 5 != major:
        raise _Unsupported("not the expected container")
    ai = ib & 0x1F
    if ai < 24:
        return off + 1, ai
    if ai < 28:
        w = 1 << (ai - 24)
        return off + 1 + w, int.from_bytes(buf[off + 1 : off + 1 + w], "big")
    raise _Unsupported("indefinite or reserved")


def _scalar(buf: bytes, off: int, end: int) -> tuple[int, int, int, int, int, int]:
    """(start, head end, end, major, ai, arg) of one item at ``off`` that is not a
    container or tag (inside a SenML record)."""
    ib = buf[off]
    major, ai = ib >> 5, ib & 0x1F
    p = off + 1
    if ai < 24:
        arg = ai
    elif ai < 28:
        w = 1 << (ai - 24)
        arg = int.from_bytes(buf[p : p + w], "big")
        p += w
    else:
        raise _Unsupported("indefinite or reserved")
    if major >= 4 and major != 7:
        raise _Unsupported("nested item in a record")
    e = p + arg if major in (2, 3) else p
    if e > end:
        raise _Unsupported("truncated")
    return off, p, e, major, ai, arg


def _item(node: _Node) -> tuple[int, int, int, int, int, int]:
    return node.start, node.head_end, node.end, node.major, node.ai, node.arg


_UINT_CODES = {24: "B", 25: "H", 26: "I", 27: "Q"}
_FLOAT_CODES = {25: "e", 26: "f", 27: "d"}


# Slot kinds: how the bytes of a value slot become a value, and what they must look like.
# _NARROW_FLOAT: half and single floats; a NaN there goes to the full path, because
# cbor2 keeps a half float NaN's payload bits and ``struct`` does not (a test checks
# every half float; single floats agree, but NaNs are rare enough to not take chances).
_PLAIN, _SMALL_UINT, _SMALL_NINT, _BOOL, _WIDE_NINT, _NARROW_FLOAT = 0, 10, 11, 12, 13, 14
# A wide integer slot must keep its head minimal (deterministic encoding, as the full
# path's decoder requires): a 1-byte argument holds 24 or more, 2 bytes 256 or more, ...
_WIDE_UINT = 15
_WIDE_MIN = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}


class Template:
    """Constant chunks and value slots of one message shape on one topic."""

    __slots__ = (
        "unpack",
        "size",
        "consts",
        "checks",
        "kid",
        "pole",
        "iat_slot",
        "cti_slot",
        "bt_slot",
        "bt_const",
        "names",
        "units",
        "pick",
        "const_values",
        "n_records",
        "kind",
        "prot",
        "payload",
        "tbs_head",
        "tbs_mid",
        "sig_at",
    )


def _int_value(node: _Node) -> int:
    return node.arg if node.major == 0 else -1 - node.arg


def learn(data: bytes, records: list[Record]) -> Template | None:
    """A template from a message the full path accepted with ``records``; None when the
    shape is not one we template (then that topic always takes the full path)."""
    try:
        return _learn(data, records)
    except (_Unsupported, IndexError, KeyError, ValueError, struct.error):
        return None


def _learn(data: bytes, recs: list[Record]) -> Template | None:
    root = _parse(data, 0, len(data))
    if root.end != len(data) or root.major != 6 or root.arg != 18:
        return None
    arr = root.children[0]
    if arr.major != 4 or arr.arg != 4:
        return None
    prot, unprot, payload, sig = arr.children
    if unprot.major != 5 or unprot.arg != 0 or sig.major != 2 or sig.arg != 64:
        return None
    if prot.major != 2 or payload.major != 2 or prot.arg == 0:
        return None
    slots: list[tuple[int, int, str, int]] = []  # (start, end, struct code, kind)
    cti_at = iat_at = bt_at = None

    def slot(item: tuple[int, int, int, int, int, int]) -> int:
        """Make the item's value bytes a slot; returns its index among the slots."""
        start, head_end, end, major, ai, arg = item
        if major in (0, 1) and ai < 24:
            slots.append((start, end, "B", _SMALL_UINT if major == 0 else _SMALL_NINT))
        elif major in (0, 1):
            kind = (_WIDE_UINT if major == 0 else _WIDE_NINT, _WIDE_MIN[ai])
            slots.append((start + 1, head_end, _UINT_CODES[ai], kind))  # after the initial byte
        elif major == 7 and ai in (20, 21):
            slots.append((start, end, "B", _BOOL))
        elif major == 7 and ai in (25, 26, 27):
            code = _FLOAT_CODES[ai]
            slots.append((start + 1, head_end, code, _PLAIN if code == "d" else _NARROW_FLOAT))
        elif major == 2:
            slots.append((head_end, end, f"{arg}s", _PLAIN))
        else:
            raise _Unsupported("slot type")
        return len(slots) - 1

    # Protected header: {1: alg, 4: kid, 15: {1: iss, 6: iat, 7: cti}}; iat and cti vary.
    hdr = _parse(data, prot.head_end, prot.end)
    if hdr.major != 5 or hdr.end != prot.end:
        return None
    kid = None
    kv = hdr.children
    for k, v in zip(kv[0::2], kv[1::2], strict=True):
        if k.major == 0 and k.arg == 4 and v.major == 2:
            kid = data[v.head_end : v.end]
        if k.major == 0 and k.arg == 15 and v.major == 5:
            ckv = v.children
            for ck, cv in zip(ckv[0::2], ckv[1::2], strict=True):
                if ck.major == 0 and ck.arg == 6 and cv.major in (0, 1):
                    iat_at = slot(_item(cv))
                elif ck.major == 0 and ck.arg == 7 and cv.major == 2 and cv.arg == 8:
                    cti_at = slot(_item(cv))
    if kid is None or cti_at is None:
        return None
    # Payload: a SenML pack of records with only bn, bt, n, u, v, vb, vs. Scanned flat
    # (array of maps of scalars), not as a tree: learning is part of every pole's first
    # message after a restart, and a node object per item cost ~300 us per pack.
    end = payload.end
    pos, n_recs = _head(data, payload.head_end, 4)
    if n_recs != len(recs):
        return None
    plan = []
    for i, rec in enumerate(recs):
        pos, n_pairs = _head(data, pos, 5)
        value_slot = None
        for _ in range(n_pairs):
            kb = data[pos]  # SenML labels are small integers: a one-byte head
            if kb < 0x18:
                label = kb
            elif 0x20 <= kb < 0x38:
                label = 0x1F - kb
            else:
                return None
            if label in (BN, N, U, VS):
                vb = data[pos + 1]  # short text, skipped inline (the common case)
                if 0x60 <= vb < 0x78:
                    pos += 2 + vb - 0x60
                    continue
                if vb == 0x78:
                    pos += 3 + data[pos + 2]
                    continue
            v = _scalar(data, pos + 1, end)
            pos = v[2]
            if label in (BN, N, U, VS):
                continue
            if label == BT:
                if v[3] not in (0, 1) or i != 0:
                    return None  # a base time later in the pack: records before keep 0
                bt_at = slot(v)
            elif label in (V, VB):
                value_slot = slot(v)
            else:
                return None  # bv, bu, bs, t, s, ut, vd: not templated
        plan.append((rec.name, rec.unit, value_slot, rec.value))
    if pos != end:
        return None
    # Compile: const chunk, slot, const chunk, slot, ..., const chunk.
    fmt, consts, checks, pos = [">"], [], [], 0
    for start, end, code, kind in slots:
        fmt.append(f"{start - pos}s{code}")
        consts.append(data[pos:start])
        checks.append(kind)
        pos = end
    fmt.append(f"{len(data) - 64 - pos}s64s")  # the tail up to the signature, the signature
    consts.append(data[pos : len(data) - 64])
    s = struct.Struct("".join(fmt))
    if s.size != len(data):
        return None
    t = Template()
    t.unpack = s.unpack_from
    t.size = s.size
    t.consts = tuple(consts)
    t.checks = tuple((i, kind) for i, kind in enumerate(checks) if kind != _PLAIN)
    t.kid = kid
    t.pole = ""  # set by the verifier: the key's pole when the template was learned
    t.iat_slot = iat_at
    t.cti_slot = cti_at
    t.bt_slot = bt_at
    t.bt_const = recs[0].time if bt_at is None else 0
    # Record values: slot values, then each constant value appended after the slots, so
    # one itemgetter picks all of them in record order.
    picks, const_values = [], []
    for _name, _unit, s_idx, const in plan:
        if s_idx is None:
            picks.append(len(slots) + len(const_values))
            const_values.append(const)
        else:
            picks.append(s_idx)
    t.names = tuple(p[0] for p in plan)
    t.units = tuple(p[1] for p in plan)
    t.pick = itemgetter(*picks) if len(picks) > 1 else (lambda v, i=picks[0]: (v[i],))
    t.const_values = tuple(const_values)
    t.n_records = len(plan)
    t.prot = (prot.head_end, prot.end)
    t.payload = (payload.head_end, payload.end)
    # Sig_structure = ["Signature1", protected, h'', payload] with canonical heads.
    t.tbs_head = _SIG1_PREFIX + _bstr_head(prot.arg)
    t.tbs_mid = b"\x40" + _bstr_head(payload.arg)
    t.sig_at = len(data) - 64
    # Self-check: the template must read the learning message back as exactly the
    # records the full path resolved (a guard against a scanner that disagrees with cbor2).
    m = match(t, data)
    if m is None or not _same_records(records(t, m[0]), recs):
        return None
    return t


def _same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)  # type: ignore[arg-type]
    return a == b


def _same_records(a: list[Record], b: list[Record]) -> bool:
    """Equal records of equal types; floats bit for bit where ``==`` cannot tell (NaN)."""
    if len(a) != len(b):
        return False
    if list(map(type, chain.from_iterable(a))) != list(map(type, chain.from_iterable(b))):
        return False
    if a == b:  # C-level; unequal only through NaN (or a real difference)
        return True
    return all(_same(p, q) for x, y in zip(a, b, strict=True) for p, q in zip(x, y, strict=True))


def _bstr_head(n: int) -> bytes:
    if n < 24:
        return bytes([0x40 | n])
    if n < 0x100:
        return bytes([0x58, n])
    if n < 0x10000:
        return b"\x59" + n.to_bytes(2, "big")
    return b"\x5a" + n.to_bytes(4, "big")


def match(t: Template, data: bytes) -> tuple | None:
    """(slot values, signature ‖ Sig_structure) when ``data`` has ``t``'s shape, else None."""
    if len(data) != t.size:
        return None
    parts = t.unpack(data)
    if parts[0:-1:2] != t.consts:
        return None
    values = list(parts[1:-1:2])
    for i, kind in t.checks:  # one-byte items must stay the same kind of item
        b = values[i]
        if kind.__class__ is tuple:  # a wide integer: minimal head, then its value
            if b < kind[1]:
                return None
            if kind[0] == _WIDE_NINT:
                values[i] = -1 - b
        elif kind == _SMALL_UINT:
            if b >= 24:
                return None
        elif kind == _SMALL_NINT:
            if not 0x20 <= b < 0x38:
                return None
            values[i] = 0x1F - b  # -1 - (b - 0x20)
        elif kind == _BOOL:
            if b == 0xF5:
                values[i] = True
            elif b == 0xF4:
                values[i] = False
            else:
                return None
        elif b != b:  # _NARROW_FLOAT holding a NaN
            return None
    p0, p1 = t.prot
    q0, q1 = t.payload
    # signature ‖ Sig_structure, as crypto_sign_open takes it, in one copy
    signed = b"".join((parts[-1], t.tbs_head, data[p0:p1], t.tbs_mid, data[q0:q1]))
    return values, signed


def records(t: Template, values: list) -> list[Record]:
    """The resolved records: names and units from the template, values from the slots
    (built by C-level map/zip: no Python call per record)."""
    bt = values[t.bt_slot] if t.bt_slot is not None else t.bt_const
    n = t.n_records
    return list(
        map(
            Record,
            zip(
                t.names,
                t.units,
                t.pick(values + list(t.const_values)),
                repeat(bt, n),
                repeat(None, n),
                strict=True,
            ),
        )
    )
