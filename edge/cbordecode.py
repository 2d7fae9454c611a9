"""The one strict CBOR decoder for bytes from outside (RFC 8949), portable to MicroPython.

Every byte that arrives from elsewhere (a pole's message at the city, a registration
file, a signed configuration at the pole) is decoded here and nowhere else, because a
general-purpose decoder is an attack surface: cbor2 resolves value sharing (tags 28/29,
a few bytes that expand into an exponential object graph), compiles regular
expressions (tag 35), builds big integers, decimal fractions and dates, accepts
indefinite lengths, keeps the last of duplicate map keys (so two readers of the same
bytes can disagree) and ignores trailing bytes. None of our formats needs any of that.

What this decoder accepts, and nothing else:
- unsigned and negative integers, byte and text strings (valid UTF-8: no overlong forms,
  no surrogates, nothing above U+10FFFF), arrays, maps, false, true, null, and half,
  single and double floats;
- definite lengths only, with shortest-form heads for integers, lengths and tags
  (deterministic encoding, RFC 8949 §4.2.1: one value, one encoding); floats may take
  any width;
- map keys that are text strings or integers within 32 bits (a big integer key could
  be chosen to collide in a hash table), each at most once;
- a tag only on the outermost item, and only a number the caller allows (COSE_Sign1's
  envelope is tag 18), as ``edge.cbor.Tag``; none inside anything (our formats need
  none, and 10,000 nested Tag objects are dearer than anything else a byte can buy);
- at most ``max_depth`` levels of nesting (arrays, maps and tags; ``max_depth`` itself
  at most ``DEPTH_LIMIT``) and ``max_size`` bytes in all, exactly one item with no
  trailing bytes. Should the interpreter's stack run out first (a microcontroller's, or
  a caller's that is already deep), that too is a ``DecodeError``.

Costs are bounded before anything is allocated: a declared length or element count
larger than the bytes that remain is refused at the head, so a 9-byte message cannot
make us allocate gigabytes. The work is linear in the message's size, and no input
byte makes more than one Python object: the densest shape, a chain of one-pair maps,
costs ~110 bytes of CPython heap per input byte (the tests hold every shape under 128),
so a message of ``max_size`` = 64 KiB costs at most 8 MiB. Errors (``DecodeError``)
describe the problem by position, count, type or tag number; they never quote the
attacker's bytes.

Speed: the loops over array elements and map pairs decode the common items in line
(small integers, short text, float64, byte strings, nested maps and arrays without the
general head parser, and a SenML record {0: name, 1: unit, 2: value} as one dict
display), because a call per item would cost more than the decoding itself; duplicate
keys are found by the map's final size. Truncation inside those loops surfaces as the
interpreter's IndexError or struct error, turned into ``DecodeError`` by ``loads``.
"""

import builtins
import struct

from edge.cbor import Tag

MAX_DEPTH = 16
MAX_SIZE = 64 * 1024
# At most two interpreter frames a level: far below CPython's recursion limit. The
# MicroPython WebAssembly port's stack ends at ~35-45 levels (a DecodeError, tested).
DEPTH_LIMIT = 100

_INF = float("inf")
_NAN = float("nan")


class DecodeError(ValueError):
    """The bytes are not one well-formed item of the accepted subset."""


# --- one decision per platform, at import time ----------------------------------------

# struct.Struct skips the format cache on CPython; MicroPython (and its stubs) have none.
if hasattr(struct, "Struct"):
    _f64 = getattr(struct, "Struct")(">d").unpack_from  # noqa: B009
else:  # MicroPython

    def _f64(buf, pos):
        return struct.unpack_from(">d", buf, pos)


# IEEE 754 binary16: struct's "e" on CPython, arithmetic on MicroPython (no "e" there).
try:
    _F16 = struct.unpack(">e", b"\x3c\x00")[0] == 1.0
except (ValueError, TypeError, getattr(struct, "error", ValueError)):  # MicroPython
    _F16 = False

# A short buffer makes struct raise struct.error on CPython, ValueError on MicroPython
# (loads lets DecodeError, itself a ValueError, through first).
_STRUCT_ERROR = getattr(struct, "error", ValueError)
# MicroPython has no RecursionError: RuntimeError("maximum recursion depth exceeded").
_RECURSION_ERROR = getattr(builtins, "RecursionError", RuntimeError)


def utf8_check(b):
    """Raise UnicodeError unless ``b`` is well-formed UTF-8 (RFC 3629): no overlong
    forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no stray or
    missing continuation bytes. CPython's decoder does all this; MicroPython's only
    checks the byte pattern, so there this runs on every non-ASCII text."""
    i = 0
    n = len(b)
    while i < n:
        c = b[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif c == 0xE0:
            need, lo, hi = 2, 0xA0, 0xBF  # below: overlong
        elif c == 0xED:
            need, lo, hi = 2, 0x80, 0x9F  # above: surrogates
        elif 0xE1 <= c <= 0xEF:
            need, lo, hi = 2, 0x80, 0xBF
        elif c == 0xF0:
            need, lo, hi = 3, 0x90, 0xBF  # below: overlong
        elif c == 0xF4:
            need, lo, hi = 3, 0x80, 0x8F  # above: beyond U+10FFFF
        elif 0xF1 <= c <= 0xF3:
            need, lo, hi = 3, 0x80, 0xBF
        else:  # continuation byte, C0/C1 (always overlong), F5..FF
            raise UnicodeError("invalid start byte")
        if i + need >= n:
            raise UnicodeError("truncated sequence")
        if not lo <= b[i + 1] <= hi:
            raise UnicodeError("invalid continuation byte")
        for j in range(i + 2, i + need + 1):
            if not 0x80 <= b[j] <= 0xBF:
                raise UnicodeError("invalid continuation byte")
        i += need + 1


def _strict_platform_utf8():
    for bad in (b"\xed\xa0\x80", b"\xc0\x80", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"\xc2"):
        try:
            bad.decode()
        except UnicodeError:
            continue
        return False
    return True


def _utf8_checked(b):
    if b and max(b) > 0x7F:  # max() runs in C; the check only when not ASCII
        utf8_check(b)
    return b.decode()


# CPython's own decoder is strict; MicroPython's gets the check in front of it.
_utf8 = bytes.decode if _strict_platform_utf8() else _utf8_checked


def _half(h):
    """IEEE 754 binary16 to float, without struct's 'e' (absent on MicroPython)."""
    e = (h >> 10) & 0x1F
    m = h & 0x3FF
    if e == 0:
        v = m * 5.960464477539063e-08  # 2**-24
    elif e == 31:
        v = _NAN if m else _INF
    else:
        v = (m + 1024) * (2.0 ** (e - 25))
    return -v if h & 0x8000 else v


# --- the decoder ------------------------------------------------------------------------
#
# Plain functions, not methods: the state travels in arguments (locals are the fastest
# names on both interpreters). ``room`` is the number of nesting levels still allowed;
# each returns (value, position after it).


def _item(buf, pos, n, room, tags, cap):
    """The item whose head is at ``pos``: the general path (every head width, every type)."""
    at = pos
    ib = buf[pos]
    if 0xF9 <= ib <= 0xFB:  # floats: any width (exempt from the shortest-form rule)
        end = pos + (9 if ib == 0xFB else 5 if ib == 0xFA else 3)
        if end > n:
            raise DecodeError("truncated head at byte %d" % at)
        if ib == 0xFB:
            return _f64(buf, pos + 1)[0], end
        if ib == 0xFA:
            return struct.unpack_from(">f", buf, pos + 1)[0], end
        if _F16:
            return struct.unpack_from(">e", buf, pos + 1)[0], end
        return _half((buf[pos + 1] << 8) | buf[pos + 2]), end
    major = ib >> 5
    ai = ib & 0x1F
    pos += 1
    if ai < 24:
        arg = ai
    elif ai == 24:
        if pos >= n:
            raise DecodeError("truncated head at byte %d" % at)
        arg = buf[pos]
        pos += 1
        if arg < 24 and major != 7:
            raise DecodeError("non-minimal head at byte %d" % at)
    elif ai == 25:
        if pos + 2 > n:
            raise DecodeError("truncated head at byte %d" % at)
        arg = (buf[pos] << 8) | buf[pos + 1]
        pos += 2
        if arg < 0x100 and major != 7:
            raise DecodeError("non-minimal head at byte %d" % at)
    elif ai == 26:
        if pos + 4 > n:
            raise DecodeError("truncated head at byte %d" % at)
        arg = struct.unpack_from(">I", buf, pos)[0]
        pos += 4
        if arg < 0x10000 and major != 7:
            raise DecodeError("non-minimal head at byte %d" % at)
    elif ai == 27:
        if pos + 8 > n:
            raise DecodeError("truncated head at byte %d" % at)
        arg = struct.unpack_from(">Q", buf, pos)[0]
        pos += 8
        if arg < 0x100000000 and major != 7:
            raise DecodeError("non-minimal head at byte %d" % at)
    elif ai == 31:
        if ib == 0xFF:
            raise DecodeError("break (0xff) outside an indefinite item at byte %d" % at)
        raise DecodeError("indefinite length at byte %d" % at)
    else:
        raise DecodeError("reserved additional information %d at byte %d" % (ai, at))

    if major == 0:
        return arg, pos
    if major == 1:
        return -1 - arg, pos
    if major == 3 or major == 2:
        end = pos + arg
        if end > n:
            raise DecodeError("declared length %d at byte %d exceeds the message" % (arg, at))
        if major == 2:
            return buf[pos:end], end
        try:
            return _utf8(buf[pos:end]), end
        except UnicodeError:
            pass  # raised below, outside the handler: no __context__ holding the bytes
        raise DecodeError("text at byte %d is not valid UTF-8" % at)
    if major == 5:
        return _map(buf, pos, n, arg, room, at, cap)
    if major == 4:
        return _array(buf, pos, n, arg, room, at, cap)
    if major == 6:
        if arg not in tags:
            if arg < 0x100000000:
                raise DecodeError("tag %d at byte %d is not allowed here" % (arg, at))
            raise DecodeError("a tag at byte %d is not allowed here" % at)
        if room <= 0:
            raise DecodeError("nested deeper than the limit at byte %d" % at)
        if pos >= n:
            raise DecodeError("truncated: tag %d at byte %d has no content" % (arg, at))
        v, pos = _item(buf, pos, n, room - 1, (), cap)  # no tag inside a tag
        return Tag(arg, v), pos
    # major 7: simple values (floats are above)
    if ai == 20:
        return False, pos
    if ai == 21:
        return True, pos
    if ai == 22:
        return None, pos
    if ai == 23:
        raise DecodeError("undefined (simple value 23) at byte %d is not allowed" % at)
    raise DecodeError("simple value %d at byte %d is not allowed" % (arg, at))


def _array(buf, pos, n, count, room, at, cap):
    if count > n - pos:  # every element takes at least one byte
        raise DecodeError("array of %d elements at byte %d exceeds the message" % (count, at))
    if count > cap:
        raise DecodeError(
            "array of %d elements at byte %d is over the limit of %d" % (count, at, cap)
        )
    if room <= 0:
        raise DecodeError("nested deeper than the limit at byte %d" % at)
    room -= 1
    out = []
    append = out.append
    utf8 = _utf8
    f64 = _f64
    try:
        for _ in range(count):
            ib = buf[pos]
            if ib == 0xA3 and room > 0 and buf[pos + 1] == 0:
                # A SenML record {0: name, 1: unit, 2: value}, the shape of nearly every
                # record a pole sends, without a call; any other shape goes to _map.
                h = buf[pos + 2]
                if 0x60 <= h < 0x78:
                    a = pos + 3
                    p = a + h - 0x60
                elif h == 0x78 and buf[pos + 3] > 23:
                    a = pos + 4
                    p = a + buf[pos + 3]
                else:
                    p = n
                if p < n and buf[p] == 1:
                    h = buf[p + 1]
                    if 0x60 <= h < 0x78:
                        b = p + 2
                        q = b + h - 0x60
                        if q < n and buf[q] == 2:
                            h = buf[q + 1]
                            if h == 0xFB:
                                append(
                                    {0: utf8(buf[a:p]), 1: utf8(buf[b:q]), 2: f64(buf, q + 2)[0]}
                                )
                                pos = q + 10
                                continue
                            if h < 0x18:
                                append({0: utf8(buf[a:p]), 1: utf8(buf[b:q]), 2: h})
                                pos = q + 2
                                continue
                            if h == 0x18 and buf[q + 2] > 23:
                                append({0: utf8(buf[a:p]), 1: utf8(buf[b:q]), 2: buf[q + 2]})
                                pos = q + 3
                                continue
                v, pos = _map(buf, pos + 1, n, 3, room, pos, cap)
                append(v)
            elif ib < 0x18:
                append(ib)
                pos += 1
            elif 0x80 <= ib < 0x98:
                if ib == 0x80 and room > 0:
                    append([])
                    pos += 1
                else:
                    v, pos = _array(buf, pos + 1, n, ib - 0x80, room, pos, cap)
                    append(v)
            elif 0x60 <= ib < 0x78:
                end = pos + ib - 0x5F
                if end > n:
                    raise DecodeError(
                        "declared length %d at byte %d exceeds the message" % (ib - 0x60, pos)
                    )
                append(utf8(buf[pos + 1 : end]))
                pos = end
            elif 0xA0 <= ib < 0xB8:
                if ib == 0xA0 and room > 0:
                    append({})
                    pos += 1
                else:
                    v, pos = _map(buf, pos + 1, n, ib - 0xA0, room, pos, cap)
                    append(v)
            elif ib == 0xFB:
                append(f64(buf, pos + 1)[0])
                pos += 9
            elif 0x40 <= ib < 0x5A:  # byte strings up to 64 KiB (COSE's fields)
                if ib < 0x58:
                    start = pos + 1
                    end = start + ib - 0x40
                elif ib == 0x58:
                    start = pos + 2
                    end = start + buf[pos + 1]
                    if end - start < 24:
                        raise DecodeError("non-minimal head at byte %d" % pos)
                else:
                    start = pos + 3
                    end = start + ((buf[pos + 1] << 8) | buf[pos + 2])
                    if end - start < 0x100:
                        raise DecodeError("non-minimal head at byte %d" % pos)
                if end > n:
                    raise DecodeError(
                        "declared length %d at byte %d exceeds the message" % (end - start, pos)
                    )
                append(buf[start:end])
                pos = end
            else:
                v, pos = _item(buf, pos, n, room, (), cap)
                append(v)
    except UnicodeError:
        pass
    else:
        return out, pos
    raise DecodeError("invalid UTF-8 in the item at byte %d" % pos)


def _map(buf, pos, n, count, room, at, cap):
    if count > (n - pos) >> 1:  # every pair takes at least two bytes
        raise DecodeError("map of %d pairs at byte %d exceeds the message" % (count, at))
    if count > cap:
        raise DecodeError("map of %d pairs at byte %d is over the limit of %d" % (count, at, cap))
    if room <= 0:
        raise DecodeError("nested deeper than the limit at byte %d" % at)
    room -= 1
    m = {}
    utf8 = _utf8
    f64 = _f64
    try:
        for _ in range(count):
            # The key: a small integer or short text in line, else through _item, but
            # only for types a key may have (nothing nested is decoded to be refused).
            ib = buf[pos]
            if ib < 0x18:
                k = ib
                pos += 1
            elif 0x60 <= ib < 0x78:
                end = pos + ib - 0x5F
                if end > n:
                    raise DecodeError(
                        "declared length %d at byte %d exceeds the message" % (ib - 0x60, pos)
                    )
                k = utf8(buf[pos + 1 : end])
                pos = end
            elif 0x20 <= ib < 0x38:
                k = 0x1F - ib
                pos += 1
            elif ib < 0x40 or 0x60 <= ib < 0x80:
                if ib == 0x1B or ib == 0x3B:
                    raise DecodeError("map key at byte %d is a 64-bit integer (over 32 bits)" % pos)
                k, pos = _item(buf, pos, n, 0, (), cap)
            else:
                raise DecodeError(
                    "map key at byte %d is not an integer or text (major type %d)" % (pos, ib >> 5)
                )
            # The value.
            ib = buf[pos]
            if ib == 0xFB:
                m[k] = f64(buf, pos + 1)[0]
                pos += 9
            elif 0x60 <= ib < 0x78:
                end = pos + ib - 0x5F
                if end > n:
                    raise DecodeError(
                        "declared length %d at byte %d exceeds the message" % (ib - 0x60, pos)
                    )
                m[k] = utf8(buf[pos + 1 : end])
                pos = end
            elif ib < 0x18:
                m[k] = ib
                pos += 1
            elif ib == 0x78:
                ln = buf[pos + 1]
                end = pos + 2 + ln
                if ln < 24:
                    raise DecodeError("non-minimal head at byte %d" % pos)
                if end > n:
                    raise DecodeError(
                        "declared length %d at byte %d exceeds the message" % (ln, pos)
                    )
                m[k] = utf8(buf[pos + 2 : end])
                pos = end
            elif 0xA0 <= ib < 0xB8:  # nested: one frame a level, not two
                m[k], pos = _map(buf, pos + 1, n, ib - 0xA0, room, pos, cap)
            elif 0x80 <= ib < 0x98:
                m[k], pos = _array(buf, pos + 1, n, ib - 0x80, room, pos, cap)
            else:
                m[k], pos = _item(buf, pos, n, room, (), cap)
    except UnicodeError:
        pass
    else:
        if len(m) != count:
            raise DecodeError("duplicate key in the map at byte %d" % at)
        return m, pos
    raise DecodeError("invalid UTF-8 in the item at byte %d" % pos)


def loads(data, tags=(), max_depth=MAX_DEPTH, max_size=MAX_SIZE, max_len=MAX_SIZE):
    """Decode exactly one item from ``data`` (bytes, bytearray or memoryview, which is
    copied once its size is checked); raises ``DecodeError``.

    ``tags``: the tag numbers the format allows on the outermost item (e.g. ``(18,)``
    for a COSE_Sign1 envelope); every other tag, and every tag inside, is refused.
    ``max_size`` is checked before anything else. ``max_depth`` counts arrays, maps and
    tags, at most ``DEPTH_LIMIT`` (a larger one is the caller's mistake: ``ValueError``).
    ``max_len``: the most elements an array, or pairs a map, may declare, checked at its
    head: a format whose containers are small (a SenML record has a few labels) bounds
    the work a message can cause well below its size.
    """
    if not 0 <= max_depth <= DEPTH_LIMIT:
        raise ValueError("max_depth must be within 0..%d" % DEPTH_LIMIT)
    if type(data) is not bytes:
        if isinstance(data, memoryview):
            size = getattr(data, "nbytes", None)  # len() counts items, not bytes
            if size is None:  # MicroPython: no nbytes, one-byte items
                size = len(data)
        elif isinstance(data, (bytes, bytearray)):
            size = len(data)
        else:
            raise DecodeError("expected bytes, got " + type(data).__name__)
        if size > max_size:
            raise DecodeError("%d bytes is over the %d-byte limit" % (size, max_size))
        data = bytes(data)  # a snapshot: nothing can change under us, values are bytes
    n = len(data)
    if n > max_size:
        raise DecodeError("%d bytes is over the %d-byte limit" % (n, max_size))
    if n == 0:
        raise DecodeError("empty: no item")
    # Errors are raised outside the handlers, so none carries the interpreter's error as
    # its __context__ (a UnicodeDecodeError holds the bytes it failed on).
    try:
        value, pos = _item(data, 0, n, max_depth, tags, max_len)
    except DecodeError:
        raise
    except (IndexError, _STRUCT_ERROR):
        pos = n + 1  # truncated
    except _RECURSION_ERROR:
        pos = -1
    if pos == n:
        return value
    if pos < 0:
        raise DecodeError("nested too deep for the interpreter's stack")
    if pos > n:
        raise DecodeError("truncated: the message ends inside an item")
    raise DecodeError("trailing bytes after the item that ends at byte %d" % pos)
