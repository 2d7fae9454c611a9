"""SenML packs (RFC 8428) in CBOR with integer labels, fast and portable.

A window pack is encoded from precompiled byte prefixes: the labels, names and
units of each record are constant for a pole, so only the values are encoded per
message. That keeps encoding well below the cost of the Ed25519 signature, and the
output is byte-identical to ``cbor2.dumps`` of the equivalent list of dicts (a test
checks). Record naming, documented in docs/wire-format.md:

    record 0:  bn = "<pole_id>/", bt = window end (POSIX s, or relative if the clock is
               not valid), n = "window", u = "s", v = seconds the window covers
    then per series:  n = "<sensor>/<field>/<stat>", u = unit, v = value,
               stat in mean | min | max | count (count has u = "count")

The record names and units are those the message registry declares for data messages
(edge/messages.py, DATA); the prefixes are built from its patterns.

Portable to MicroPython.
"""

import struct
import sys

from edge import cbor

BVER = -1
BN = -2
BT = -3
BU = -4
BV = -5
BS = -6
N = 0
U = 1
V = 2
VS = 3
VB = 4
S = 5
T = 6
UT = 7
VD = 8

CONTENT_TYPE = "application/senml+cbor"
CONTENT_FORMAT = 112

_LABEL_N = cbor.encode_int(N)
_LABEL_U = cbor.encode_int(U)
_LABEL_V = cbor.encode_int(V)


def _decimals(resolution):
    d = 0
    while resolution < 1 and d < 9:
        resolution *= 10
        d += 1
    return d


def encode_value(value):
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return cbor.encode_int(value)
    return cbor.encode_float(value)


def record_prefix(name, unit, extra_pairs=0):
    """Bytes of a record map up to (and including) the value label."""
    n_pairs = 3 if unit else 2
    out = cbor.head(5, n_pairs + extra_pairs) + _LABEL_N + cbor.encode_text(name)
    if unit:
        out += _LABEL_U + cbor.encode_text(unit)
    return out + _LABEL_V


def _stats_packer(p_mean, p_min, p_max, p_count):
    """One struct call that lays out mean, min and max records and the count's prefix."""
    fmt = ">%dsBd%dsBd%dsBd%ds" % (len(p_mean), len(p_min), len(p_max), len(p_count))
    try:
        return struct.Struct(fmt).pack
    except AttributeError:  # MicroPython: no struct.Struct, same layout through struct.pack

        def pack(*args):
            return struct.pack(fmt, *args)

        return pack


def round_exact(x, ndigits):
    """CPython's ``round(x, ndigits)`` (0 <= ndigits <= 15): the exact binary value of
    ``x`` rounded half-to-even to ``ndigits`` decimals, then the nearest double.

    MicroPython's ``round`` scales by 10**ndigits in floating point first, so it differs
    in the last decimal for about one window mean in twenty (16.085 -> 16.08, where
    CPython gives 16.09) and the packs would no longer be byte-identical. Integers only.
    """
    bits = struct.unpack(">Q", struct.pack(">d", x))[0]
    exp = (bits >> 52) & 0x7FF
    if exp == 0x7FF:  # NaN and infinities round to themselves
        return x
    mant = bits & 0xFFFFFFFFFFFFF
    if exp:
        mant |= 1 << 52
    else:
        exp = 1  # subnormal
    shift = 1075 - exp  # |x| = mant / 2**shift
    if shift <= 0:  # already an integer
        return x
    scaled = mant * 10**ndigits
    q = scaled >> shift
    rem = scaled - (q << shift)
    half = 1 << (shift - 1)
    if rem > half or (rem == half and q & 1):
        q += 1
    if q > 1 << 53:  # finer than x's own precision: the nearest double is x itself
        return x
    r = float(q) / float(10**ndigits)  # both exact, so one correctly rounded division
    return -r if bits >> 63 else r


# CPython's round is already exact (and faster); elsewhere use the integer version.
_round = round if sys.implementation.name == "cpython" else round_exact

# Counts are almost always small: their CBOR heads, precomputed.
_SMALL_UINT = [cbor.encode_int(i) for i in range(256)]


class Series:
    """One aggregated series: its SenML names and the precompiled record prefixes."""

    __slots__ = ("key", "decimals", "p_mean", "p_min", "p_max", "p_count", "pack")

    def __init__(self, sensor, field, name, unit, resolution):
        from edge.messages import DATA, FIELD_UNIT  # here: messages imports this module

        self.key = (sensor, field)
        self.decimals = _decimals(resolution)
        p = {}
        for rec in DATA.records:
            if "<field>" in rec.name:
                full = rec.name.replace("<sensor>", sensor).replace("<field>", name)
                p[rec.name.rsplit("/", 1)[1]] = record_prefix(
                    full, unit if rec.unit == FIELD_UNIT else rec.unit
                )
        self.p_mean = p["mean"]
        self.p_min = p["min"]
        self.p_max = p["max"]
        self.p_count = p["count"]
        self.pack = _stats_packer(self.p_mean, self.p_min, self.p_max, self.p_count)


class WindowPackEncoder:
    """Encodes closed windows of one pole as SenML-CBOR packs."""

    def __init__(self, pole_id, series):
        self.base_name = pole_id + "/"
        self.series = series
        bn = cbor.encode_int(BN) + cbor.encode_text(self.base_name)
        self._first_head = cbor.head(5, 5) + bn + cbor.encode_int(BT)
        self._first_tail = _LABEL_N + cbor.encode_text("window") + _LABEL_U + cbor.encode_text("s")
        self._first_tail += _LABEL_V
        self._uptime_prefix = record_prefix("uptime", "s")

    def encode(self, window, base_time, uptime=None, covered=None):
        """One pack: ``base_time`` is the window end (absolute, or 0 = "now" when the clock
        is not valid, in which case ``uptime`` (s since start) is added for later correction).
        ``covered``: whole seconds the window covers, if less than its length (the first
        window after a start, the last before a stop).

        Hot path (once per window per pole): locals only, one ``struct`` call per value.
        Min and max are sample values; only the mean is rounded to the sensor's
        resolution, so no false precision leaves the pole, and kept within [min, max]
        (rounding, or float sums, could otherwise put it just outside).
        """
        enc_int = cbor.encode_int
        small = _SMALL_UINT
        chunks = [
            b"",
            self._first_head,
            encode_value(base_time),
            self._first_tail,
            encode_value(window.length if covered is None else covered),
        ]
        append = chunks.append
        records = 1
        if uptime is not None:
            append(self._uptime_prefix)
            append(encode_value(uptime))
            records += 1
        stats = window.series
        for s in self.series:
            st = stats.get(s.key)
            if st is None or st.count == 0:
                append(s.p_count)
                append(b"\x00")
                records += 1
                continue
            n = st.count
            lo = st.lo
            hi = st.hi
            mean = _round(st.total / n, s.decimals)
            if mean < lo:
                mean = lo
            elif mean > hi:
                mean = hi
            append(
                s.pack(
                    s.p_mean,
                    0xFB,
                    mean,
                    s.p_min,
                    0xFB,
                    lo,
                    s.p_max,
                    0xFB,
                    hi,
                    s.p_count,
                )
            )
            append(small[n] if n < 256 else enc_int(n))
            records += 4
        chunks[0] = cbor.head(4, records)
        return b"".join(chunks)


def encode_pack(records):
    """A general pack from records given as lists of (label, value) pairs (birth, health)."""
    return cbor.dumps([cbor.Map(r) for r in records])
