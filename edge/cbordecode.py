"""The one strict CBOR decoder for bytes from outside (RFC 8949), portable to MicroPython.

Every byte that arrives from elsewhere (a pole's message at the city, a registration
file, a signed configuration at the pole) is decoded here and nowhere else, because a
general-purpose decoder is an attack surface: cbor2 resolves value sharing (tags 28/29,
a few bytes that expand into an exponential object graph), compiles regular
expressions (tag 35), builds big integers, decimal fractions and dates, accepts
indefinite lengths, keeps the last of duplicate map keys (so two readers of the same
bytes can disagree) and ignores trailing bytes. None of our formats needs any of that.

What this decoder accepts, and nothing else:
- unsigned and negative integers, byte and text strings (valid UTF-8), arrays, maps,
  false, true, null, and half, single and double floats;
- definite lengths only, with shortest-form heads for integers and lengths
  (deterministic encoding, RFC 8949 §4.2.1: one value, one encoding);
- map keys that are integers or text strings, each at most once;
- tags only where the caller allows them (COSE_Sign1 is tag 18), as ``edge.cbor.Tag``;
- at most ``max_depth`` levels of nesting and ``max_size`` bytes in all, exactly one
  item with no trailing bytes.

Costs are bounded before anything is allocated: a declared length or element count
larger than the bytes that remain is refused at the head, so a 9-byte message cannot
make us allocate gigabytes, and the work done is linear in the message's size.
Errors (``DecodeError``) describe the problem by position and kind; they never quote
the attacker's bytes.
"""

import struct

from edge.cbor import Tag

MAX_DEPTH = 16
MAX_SIZE = 64 * 1024

_INF = float("inf")
_NAN = float("nan")


class DecodeError(ValueError):
    """The bytes are not one well-formed item of the accepted subset."""


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


def _text(buf, start, end):
    try:
        return buf[start:end].decode("utf-8")
    except UnicodeError:
        raise DecodeError("text at byte %d is not valid UTF-8" % start) from None


class _Decoder:
    __slots__ = ("buf", "n", "tags", "max_depth")

    def __init__(self, buf, tags, max_depth):
        self.buf = buf
        self.n = len(buf)
        self.tags = tags
        self.max_depth = max_depth

    def item(self, pos, depth):
        """(value, position after it) of the item at ``pos``."""
        buf = self.buf
        n = self.n
        if pos >= n:
            raise DecodeError("truncated: an item is missing at byte %d" % pos)
        ib = buf[pos]
        major = ib >> 5
        ai = ib & 0x1F
        pos += 1
        if ai < 24:
            arg = ai
        elif ai == 24:
            if pos >= n:
                raise DecodeError("truncated head at byte %d" % (pos - 1))
            arg = buf[pos]
            pos += 1
            if arg < 24 and major != 7:
                raise DecodeError("non-minimal head at byte %d" % (pos - 2))
        elif ai == 25:
            if pos + 2 > n:
                raise DecodeError("truncated head at byte %d" % (pos - 1))
            arg = (buf[pos] << 8) | buf[pos + 1]
            pos += 2
            if arg < 0x100 and major != 7:
                raise DecodeError("non-minimal head at byte %d" % (pos - 3))
        elif ai == 26:
            if pos + 4 > n:
                raise DecodeError("truncated head at byte %d" % (pos - 1))
            arg = struct.unpack_from(">I", buf, pos)[0]
            pos += 4
            if arg < 0x10000 and major != 7:
                raise DecodeError("non-minimal head at byte %d" % (pos - 5))
        elif ai == 27:
            if pos + 8 > n:
                raise DecodeError("truncated head at byte %d" % (pos - 1))
            arg = struct.unpack_from(">Q", buf, pos)[0]
            pos += 8
            if arg < 0x100000000 and major != 7:
                raise DecodeError("non-minimal head at byte %d" % (pos - 9))
        elif ai == 31:
            raise DecodeError("indefinite length at byte %d" % (pos - 1))
        else:
            raise DecodeError("reserved additional information at byte %d" % (pos - 1))

        if major == 0:
            return arg, pos
        if major == 1:
            return -1 - arg, pos
        if major == 2 or major == 3:
            end = pos + arg
            if end > n:
                raise DecodeError(
                    "declared length %d at byte %d exceeds the message" % (arg, pos - 1)
                )
            if major == 2:
                return buf[pos:end], end
            return _text(buf, pos, end), end
        if major == 4 or major == 5:
            if depth >= self.max_depth:
                raise DecodeError("nested deeper than %d levels" % self.max_depth)
            if major == 4:
                if arg > n - pos:  # every element takes at least one byte
                    raise DecodeError(
                        "array of %d elements at byte %d exceeds the message" % (arg, pos - 1)
                    )
                out = []
                append = out.append
                item = self.item
                unpack_from = struct.unpack_from
                for _ in range(arg):
                    # Inline the common scalars (small ints, short text, doubles): a call
                    # per item would cost more than the decoding itself.
                    ib = buf[pos] if pos < n else 0xFF
                    if ib < 0x18:
                        append(ib)
                        pos += 1
                    elif 0x60 <= ib < 0x78:
                        end = pos + ib - 0x5F
                        if end > n:
                            raise DecodeError("declared length at byte %d overruns" % pos)
                        append(buf[pos + 1 : end].decode())
                        pos = end
                    elif ib == 0xFB and pos + 9 <= n:
                        append(unpack_from(">d", buf, pos + 1)[0])
                        pos += 9
                    else:
                        v, pos = item(pos, depth + 1)
                        append(v)
                return out, pos
            if 2 * arg > n - pos:
                raise DecodeError("map of %d pairs at byte %d exceeds the message" % (arg, pos - 1))
            m = {}
            item = self.item
            unpack_from = struct.unpack_from
            for _ in range(arg):
                kpos = pos
                ib = buf[pos] if pos < n else 0xFF
                if ib < 0x18:
                    k = ib
                    pos += 1
                elif 0x20 <= ib < 0x38:
                    k = 0x1F - ib
                    pos += 1
                elif 0x60 <= ib < 0x78:
                    end = pos + ib - 0x5F
                    if end > n:
                        raise DecodeError("declared length at byte %d exceeds the message" % pos)
                    k = buf[pos + 1 : end].decode()
                    pos = end
                else:
                    k, pos = item(pos, depth + 1)
                    if type(k) is not int and type(k) is not str:
                        raise DecodeError("map key at byte %d is not an integer or text" % kpos)
                    if type(k) is int and not -0x100000000 <= k < 0x100000000:
                        # Big integer keys can be chosen to collide in a hash table.
                        raise DecodeError("map key at byte %d is out of range" % kpos)
                if k in m:
                    raise DecodeError("duplicate map key at byte %d" % kpos)
                ib = buf[pos] if pos < n else 0xFF
                if ib < 0x18:
                    m[k] = ib
                    pos += 1
                elif 0x60 <= ib < 0x78:
                    end = pos + ib - 0x5F
                    if end > n:
                        raise DecodeError("declared length at byte %d exceeds the message" % pos)
                    m[k] = buf[pos + 1 : end].decode()
                    pos = end
                elif ib == 0xFB and pos + 9 <= n:
                    m[k] = unpack_from(">d", buf, pos + 1)[0]
                    pos += 9
                else:
                    m[k], pos = item(pos, depth + 1)
            return m, pos
        if major == 6:
            if arg not in self.tags:
                if arg < 0x100000000:
                    raise DecodeError("tag %d at byte %d is not allowed here" % (arg, pos - 1))
                raise DecodeError("a tag at byte %d is not allowed here" % (pos - 1))
            if depth >= self.max_depth:
                raise DecodeError("nested deeper than %d levels" % self.max_depth)
            v, pos = self.item(pos, depth + 1)
            return Tag(arg, v), pos
        # major 7: simple values and floats
        if ai == 20:
            return False, pos
        if ai == 21:
            return True, pos
        if ai == 22:
            return None, pos
        if ai == 25:
            return _half(arg), pos
        if ai == 26:
            return struct.unpack_from(">f", buf, pos - 4)[0], pos
        if ai == 27:
            return struct.unpack_from(">d", buf, pos - 8)[0], pos
        raise DecodeError("simple value %d at byte %d is not allowed" % (arg, pos - 1))


def loads(data, tags=(), max_depth=MAX_DEPTH, max_size=MAX_SIZE):
    """Decode exactly one item from ``data`` (bytes); raises ``DecodeError``.

    ``tags``: the tag numbers the format needs (e.g. ``(18,)`` for COSE_Sign1); every
    other tag is refused. ``max_size`` is checked before anything else.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes, got " + type(data).__name__)
    if len(data) > max_size:
        raise DecodeError("%d bytes is over the %d-byte limit" % (len(data), max_size))
    if isinstance(data, memoryview):
        data = bytes(data)
    try:
        value, pos = _Decoder(data, tags, max_depth).item(0, 0)
    except UnicodeError:  # from the inlined short-text decodes
        raise DecodeError("text is not valid UTF-8") from None
    if pos != len(data):
        raise DecodeError("%d trailing bytes after the item" % (len(data) - pos))
    return value
