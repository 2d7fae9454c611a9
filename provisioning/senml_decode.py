"""Resolve SenML packs (RFC 8428 §4.6): apply base name, time, unit and value to records.

The city side uses cbor2 to decode; this module only applies SenML's rules, and
rejects what the RFC forbids (bad names, more than one value, unknown labels
ending in '_' that must be understood).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from operator import itemgetter

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")  # fullmatch: "$" admits a "\n"
ABSOLUTE_TIME = 2**28

BVER, BN, BT, BU, BV, BS = -1, -2, -3, -4, -5, -6
N, U, V, VS, VB, S, T, UT, VD = 0, 1, 2, 3, 4, 5, 6, 7, 8
VALUE_LABELS = (V, VS, VB, VD)
_LABELS = frozenset((BVER, BN, BT, BU, BV, BS, N, U, V, VS, VB, S, T, UT, VD))


class SenMLError(ValueError):
    """The pack breaks a SenML rule; the message names the record and the rule."""


class Record(tuple):
    """One resolved record: (name, unit, value, time, sum), with attribute access.

    A tuple, so the verifier's template path builds a pack's records in one C-level
    ``map`` without a Python call per record."""

    __slots__ = ()
    name = property(itemgetter(0))
    unit = property(itemgetter(1))
    value = property(itemgetter(2))
    time = property(itemgetter(3))
    sum = property(itemgetter(4))

    def as_dict(self) -> dict:
        d = {"n": self.name, "t": self.time, "v": self.value}
        if self.unit:
            d["u"] = self.unit
        return d

    def __repr__(self) -> str:
        return f"Record({self.name!r}, {self.value!r} {self.unit or ''} @ {self.time})"


_NAME_OK: dict[str, bool] = {}  # names repeat in every pack of a pole: check each once
_NAME_CACHE_MAX = 50_000
_MISSING = object()


def _name_ok(name: str) -> bool:
    ok = _NAME_OK.get(name)
    if ok is None:
        ok = bool(name) and NAME_RE.fullmatch(name) is not None
        if len(_NAME_OK) < _NAME_CACHE_MAX:
            _NAME_OK[name] = ok
    return ok


def resolve(pack, now: float | None = None) -> list[Record]:
    """Resolved records. Relative times stay relative unless ``now`` is given.

    Hot path of the verifier: one pass per record with dict lookups, no helper calls
    for the common case; every rule of RFC 8428 that applies is still checked.
    """
    if not isinstance(pack, (list, tuple)) or not pack:
        raise SenMLError("a SenML pack is a non-empty array of records")
    bn, bt, bu, bv, bs = "", 0, None, 0, None
    out = []
    append = out.append
    for i, rec in enumerate(pack):
        if type(rec) is not dict and not isinstance(rec, Mapping):
            raise SenMLError(f"record {i} is not a map")
        for k in rec:
            if type(k) is int:
                if k not in _LABELS:  # RFC 8428 6: the integer labels are conclusive
                    raise SenMLError(f"record {i}: unknown integer label {k}")
            elif isinstance(k, str) and k[-1:] == "_":
                raise SenMLError(f"record {i}: a must-understand label is not supported")
        if len(rec) > 3 or BN in rec or BT in rec:  # base fields are rare: slow path
            if BN in rec:
                bn = _typed(rec[BN], str, i, "bn")
            if BT in rec:
                bt = _num(rec[BT], i, "bt")
            if BU in rec:
                bu = _typed(rec[BU], str, i, "bu")
            if BV in rec:
                bv = _num(rec[BV], i, "bv")
            if BS in rec:
                bs = _num(rec[BS], i, "bs")
        n = rec.get(N, "")
        if type(n) is not str:
            raise SenMLError(f"record {i}: n must be str")
        name = bn + n
        if not (_NAME_OK.get(name) or _name_ok(name)):
            raise SenMLError(f"record {i}: name {name!r} is not a valid SenML name")
        v = rec.get(V, _MISSING)
        n_values = (v is not _MISSING) + (VS in rec) + (VB in rec) + (VD in rec)
        if n_values > 1:
            raise SenMLError(f"record {i}: more than one value field")
        if v is not _MISSING:
            if type(v) is not float and type(v) is not int:
                _num(v, i, "v")
            value = bv + v if bv else v
        elif VS in rec:
            value = _typed(rec[VS], str, i, "vs")
        elif VB in rec:
            value = _typed(rec[VB], bool, i, "vb")
        elif VD in rec:
            value = _typed(rec[VD], bytes, i, "vd")
        elif S in rec or bs is not None:
            value = None
        elif BV in rec:
            value = bv
        else:
            raise SenMLError(f"record {i}: no value and no sum")
        t = rec.get(T)
        t = bt if t is None else bt + _num(t, i, "t")
        if now is not None and t < ABSOLUTE_TIME:
            t = now + t
        u = rec.get(U, _MISSING)
        if u is _MISSING:
            unit = bu
        elif type(u) is str:
            unit = u
        else:
            raise SenMLError(f"record {i}: u must be str")
        sm = rec.get(S)
        if sm is not None:
            sm = (bs or 0) + _num(sm, i, "s")
        append(Record((name, unit, value, t, sm)))
    return out


def _typed(x, typ, i: int, label: str):
    if not isinstance(x, typ) or (typ is not bool and isinstance(x, bool)):
        raise SenMLError(f"record {i}: {label} must be {typ.__name__}")
    return x


def _num(x, i: int, label: str):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise SenMLError(f"record {i}: {label} must be a number")
    return x
