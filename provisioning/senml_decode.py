"""Resolve SenML packs (RFC 8428 §4.6): apply base name, time, unit and value to records.

The city side uses cbor2 to decode; this module only applies SenML's rules, and
rejects what the RFC forbids (bad names, more than one value, unknown labels
ending in '_' that must be understood).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9\-:./_]*$")
ABSOLUTE_TIME = 2**28

BVER, BN, BT, BU, BV, BS = -1, -2, -3, -4, -5, -6
N, U, V, VS, VB, S, T, UT, VD = 0, 1, 2, 3, 4, 5, 6, 7, 8
VALUE_LABELS = (V, VS, VB, VD)


class SenMLError(ValueError):
    """The pack breaks a SenML rule; the message names the record and the rule."""


class Record:
    __slots__ = ("name", "unit", "value", "time", "sum")

    def __init__(self, name: str, unit: str | None, value, time: float, sum_=None) -> None:
        self.name = name
        self.unit = unit
        self.value = value
        self.time = time
        self.sum = sum_

    def as_dict(self) -> dict:
        d = {"n": self.name, "t": self.time, "v": self.value}
        if self.unit:
            d["u"] = self.unit
        return d

    def __repr__(self) -> str:
        return f"Record({self.name!r}, {self.value!r} {self.unit or ''} @ {self.time})"


def resolve(pack, now: float | None = None) -> list[Record]:
    """Resolved records. Relative times stay relative unless ``now`` is given."""
    if not isinstance(pack, (list, tuple)) or not pack:
        raise SenMLError("a SenML pack is a non-empty array of records")
    bn, bt, bu, bv, bs = "", 0, None, 0, None
    out = []
    for i, rec in enumerate(pack):
        if not isinstance(rec, Mapping):
            raise SenMLError(f"record {i} is not a map")
        for k in rec:
            if isinstance(k, str) and k.endswith("_"):
                raise SenMLError(f"record {i}: must-understand label {k!r} is not supported")
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
        name = bn + _typed(rec.get(N, ""), str, i, "n")
        if not name or not NAME_RE.match(name):
            raise SenMLError(f"record {i}: name {name!r} is not a valid SenML name")
        values = [lbl for lbl in VALUE_LABELS if lbl in rec]
        if len(values) > 1:
            raise SenMLError(f"record {i}: more than one value field")
        if values and values[0] == V:
            value = bv + _num(rec[V], i, "v")
        elif values and values[0] == VS:
            value = _typed(rec[VS], str, i, "vs")
        elif values and values[0] == VB:
            value = _typed(rec[VB], bool, i, "vb")
        elif values and values[0] == VD:
            value = _typed(rec[VD], bytes, i, "vd")
        elif S in rec or bs is not None:
            value = None
        elif BV in rec:
            value = bv
        else:
            raise SenMLError(f"record {i}: no value and no sum")
        t = bt + _num(rec.get(T, 0), i, "t")
        if now is not None and t < ABSOLUTE_TIME:
            t = now + t
        unit = _typed(rec[U], str, i, "u") if U in rec else bu
        s = rec.get(S)
        out.append(Record(name, unit, value, t, (bs or 0) + s if s is not None else None))
    return out


def _typed(x, typ, i: int, label: str):
    if not isinstance(x, typ) or (typ is not bool and isinstance(x, bool)):
        raise SenMLError(f"record {i}: {label} must be {typ.__name__}")
    return x


def _num(x, i: int, label: str):
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise SenMLError(f"record {i}: {label} must be a number")
    return x
