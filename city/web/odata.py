"""The SensorThings query options (OData 4 subset): parsed strictly, evaluated safely.

Every query option arrives from outside and is hostile until parsed: a length and a
nesting depth are checked before any work, ``$top`` is capped (``MAX_TOP``) rather than
refused, unknown options and repeated ones are refused, and every error is a
``QueryError`` with one sentence that the service returns as the standard's 400
response. Nothing of the input is ever executed: ``$filter`` becomes a small tree
(``Node``) that ``evaluate`` walks in Python for the small entity sets and that
city/web/sta.py compiles to SQL with bound parameters for the Observations.

The grammar (SensorThings API 1.1, section 9.3.3.5): comparison ``eq ne gt ge lt le``,
logic ``and or not``, arithmetic ``add sub mul div mod``, parentheses, literals (strings
in single quotes, numbers, ``true``/``false``/``null``, ISO 8601 times, ``duration'P1D'``,
``geography'POINT(x y)'`` and ``POLYGON``), property paths through navigation properties
(``Datastream/Thing/name``), and the functions in ``FUNCTIONS``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

MAX_TOP = 1000  # a larger $top is capped to this; @iot.nextLink gives the rest
DEFAULT_TOP = 100
MAX_SKIP = 2**62
MAX_OPTION = 4000  # characters in one option's value
MAX_DEPTH = 32  # nesting of a filter expression
MAX_EXPAND_DEPTH = 4
MAX_GEO_POINTS = 1000

OPTIONS = ("$filter", "$top", "$skip", "$count", "$orderby", "$select", "$expand")
COMPARE = ("eq", "ne", "gt", "ge", "lt", "le")
ARITH = ("add", "sub", "mul", "div", "mod")
FUNCTIONS = {  # name: (fewest, most) arguments
    "substringof": (2, 2),
    "contains": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "length": (1, 1),
    "indexof": (2, 2),
    "substring": (2, 3),
    "tolower": (1, 1),
    "toupper": (1, 1),
    "trim": (1, 1),
    "concat": (2, 2),
    "year": (1, 1),
    "month": (1, 1),
    "day": (1, 1),
    "hour": (1, 1),
    "minute": (1, 1),
    "second": (1, 1),
    "now": (0, 0),
    "round": (1, 1),
    "floor": (1, 1),
    "ceiling": (1, 1),
    "geo.distance": (2, 2),
    "geo.intersects": (2, 2),
    "st_intersects": (2, 2),
    "st_disjoint": (2, 2),
    "st_within": (2, 2),
    "st_contains": (2, 2),
    "st_equals": (2, 2),
}


class QueryError(ValueError):
    """A query option the service cannot accept: 400 Bad Request, with this sentence."""


@dataclasses.dataclass(frozen=True)
class Geo:
    """A geometry literal: a point (x, y) or a polygon's outer ring."""

    kind: str  # "Point", "Polygon", "LineString"
    coords: tuple  # Point: (x, y); others: ((x, y), ...)


@dataclasses.dataclass(frozen=True)
class Interval:
    """A time interval (phenomenonTime of a window)."""

    start: dt.datetime
    end: dt.datetime


Node = tuple  # ("lit", v) | ("path", (seg, ...)) | ("call", name, args) | ("bin", op, a, b)
#               | ("not", a) | ("neg", a)


# -- tokens ---------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\dT]))
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<typed>(?:geography|geometry|duration)'(?:[^']|'')*')
  | (?P<str>'(?:[^']|'')*')
  | (?P<name>[A-Za-z_@][A-Za-z0-9_@.]*(?:/[A-Za-z_@][A-Za-z0-9_@.]*)*)
  | (?P<punct>[(),-])
    """,
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise QueryError(f"$filter: unexpected character at position {pos + 1}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time with an offset (or a date: midnight UTC) as an aware datetime."""
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError("not a valid ISO 8601 time") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


_DURATION = re.compile(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?")


def _duration(text: str) -> dt.timedelta:
    m = _DURATION.fullmatch(text)
    if m is None or text in ("P", "PT") or text.endswith("T"):
        raise QueryError("duration literal: use ISO 8601 such as duration'PT15M'")
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    if d > 100_000:
        raise QueryError("duration literal is too long")
    return dt.timedelta(days=d, hours=h, minutes=mi, seconds=s)


_WKT = re.compile(r"\s*(POINT|POLYGON|LINESTRING)\s*\((.*)\)\s*", re.IGNORECASE | re.DOTALL)


def _geo(text: str) -> Geo:
    m = _WKT.fullmatch(text)
    if m is None:
        raise QueryError("geography literal: use POINT(x y), LINESTRING(...) or POLYGON((...))")
    kind, body = m.group(1).upper(), m.group(2).strip()
    if kind == "POLYGON":
        if not (body.startswith("(") and body.endswith(")")) or body.count("(") != 1:
            raise QueryError("geography POLYGON: one ring, as POLYGON((x y, x y, ...))")
        body = body[1:-1]
    points = []
    for pair in body.split(","):
        parts = pair.split()
        if len(parts) != 2:
            raise QueryError("geography literal: each point is two numbers, x y")
        try:
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise QueryError("geography literal: coordinates must be numbers") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise QueryError("geography literal: coordinates must be finite")
        points.append((x, y))
        if len(points) > MAX_GEO_POINTS:
            raise QueryError(f"geography literal: at most {MAX_GEO_POINTS} points")
    if kind == "POINT":
        if len(points) != 1:
            raise QueryError("geography POINT: exactly one point")
        return Geo("Point", points[0])
    if len(points) < (4 if kind == "POLYGON" else 2):
        raise QueryError(f"geography {kind}: too few points")
    return Geo("Polygon" if kind == "POLYGON" else "LineString", tuple(points))


# -- the expression parser -------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        if len(text) > MAX_OPTION:
            raise QueryError(f"$filter is longer than {MAX_OPTION} characters")
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self, ahead: int = 0) -> tuple[str, str] | None:
        j = self.i + ahead
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        t = self.peek()
        if t is None:
            raise QueryError("$filter ends too early")
        self.i += 1
        return t

    def word(self, *words: str) -> str | None:
        t = self.peek()
        if t is not None and t[0] == "name" and t[1] in words:
            self.i += 1
            return t[1]
        return None

    def expect(self, punct: str) -> None:
        t = self.take()
        if t != ("punct", punct):
            raise QueryError(f"$filter: expected '{punct}'")

    def parse(self) -> Node:
        if not self.toks:
            raise QueryError("$filter is empty")
        node = self.or_()
        if self.peek() is not None:
            raise QueryError(f"$filter: unexpected {_show(self.peek())}")
        return node

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(f"$filter is nested more than {MAX_DEPTH} levels deep")

    def or_(self) -> Node:
        node = self.and_()
        while self.word("or"):
            node = ("bin", "or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.word("and"):
            node = ("bin", "and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.word("not"):
            self._nest()
            node = ("not", self.not_())
            self.depth -= 1
            return node
        return self.compare()

    def compare(self) -> Node:
        node = self.additive()
        op = self.word(*COMPARE)
        if op:
            node = ("bin", op, node, self.additive())
            if self.word(*COMPARE):
                raise QueryError("$filter: comparisons do not chain; use 'and'")
        return node

    def additive(self) -> Node:
        node = self.multiplicative()
        while op := self.word("add", "sub"):
            node = ("bin", op, node, self.multiplicative())
        return node

    def multiplicative(self) -> Node:
        node = self.unary()
        while op := self.word("mul", "div", "mod"):
            node = ("bin", op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.peek() == ("punct", "-"):
            self.take()
            self._nest()
            node = ("neg", self.unary())
            self.depth -= 1
            return node
        return self.primary()

    def primary(self) -> Node:
        kind, text = self.take()
        if kind == "punct" and text == "(":
            self._nest()
            node = self.or_()
            self.expect(")")
            self.depth -= 1
            return node
        if kind == "num":
            v = float(text) if any(c in text for c in ".eE") else int(text)
            if isinstance(v, float) and not math.isfinite(v):
                raise QueryError("$filter: a number out of range")
            if isinstance(v, int) and v.bit_length() > 63:
                raise QueryError("$filter: an integer out of range")
            return ("lit", v)
        if kind == "str":
            return ("lit", text[1:-1].replace("''", "'"))
        if kind in ("time", "date"):
            return ("lit", parse_time(text if kind == "time" else text + "T00:00:00Z"))
        if kind == "typed":
            prefix, _, rest = text.partition("'")
            body = rest[:-1].replace("''", "'")
            return ("lit", _duration(body) if prefix == "duration" else _geo(body))
        if kind == "name":
            if text in ("true", "false"):
                return ("lit", text == "true")
            if text == "null":
                return ("lit", None)
            if self.peek() == ("punct", "("):
                return self.call(text)
            if text in COMPARE + ARITH + ("and", "or", "not"):
                raise QueryError(f"$filter: '{text}' needs an operand before it")
            return ("path", tuple(_segment(s) for s in text.split("/")))
        raise QueryError(f"$filter: unexpected {_show((kind, text))}")

    def call(self, name: str) -> Node:
        fn = name.lower()
        if fn not in FUNCTIONS:
            raise QueryError(f"$filter: unknown function {_short(name)}")
        self.expect("(")
        self._nest()
        args: list[Node] = []
        if self.peek() != ("punct", ")"):
            args.append(self.or_())
            while self.peek() == ("punct", ","):
                self.take()
                args.append(self.or_())
        self.expect(")")
        self.depth -= 1
        lo, hi = FUNCTIONS[fn]
        if not lo <= len(args) <= hi:
            raise QueryError(f"$filter: {fn} takes {lo if lo == hi else f'{lo} to {hi}'} arguments")
        return ("call", fn, tuple(args))


def _segment(s: str) -> str:
    if s == "id":
        return "@iot.id"
    return s


def _short(text: str) -> str:
    """An input fragment safe to repeat in an error message."""
    return text if len(text) <= 40 and text.isascii() and text.isprintable() else "(name)"


def _show(tok: tuple[str, str] | None) -> str:
    if tok is None:
        return "end"
    return f"'{_short(tok[1])}'" if tok[0] in ("name", "punct") else tok[0]


def parse_filter(text: str) -> Node:
    return _Parser(text).parse()


# -- the other options -----------------------------------------------------------------------
@dataclasses.dataclass
class Expand:
    path: tuple[str, ...]
    options: Options


@dataclasses.dataclass
class Options:
    filter: Node | None = None
    orderby: list[tuple[tuple[str, ...], bool]] = dataclasses.field(default_factory=list)
    top: int = DEFAULT_TOP
    top_given: bool = False
    skip: int = 0
    count: bool = False
    select: list[str] | None = None
    expand: list[Expand] = dataclasses.field(default_factory=list)


def _integer(name: str, text: str) -> int:
    if not text or len(text) > 100 or not text.isdigit() or not text.isascii():
        raise QueryError(f"{name} must be a non-negative whole number")
    return int(text)


_PATH = re.compile(r"[A-Za-z_@][A-Za-z0-9_@.]*(?:/[A-Za-z_@][A-Za-z0-9_@.]*)*")


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside parentheses and quotes."""
    parts: list[str] = []
    buf: list[str] = []
    depth, quote = 0, False
    for c in text:
        if c == "'":
            quote = not quote
        elif not quote and c == "(":
            depth += 1
        elif not quote and c == ")":
            depth -= 1
            if depth < 0:
                raise QueryError("unbalanced parentheses in a query option")
        if c == sep and depth == 0 and not quote:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(c)
    if depth or quote:
        raise QueryError("unbalanced parentheses or quotes in a query option")
    parts.append("".join(buf))
    return parts


def parse_options(items: Sequence[tuple[str, str]], depth: int = 0) -> Options:
    """Options from (name, value) pairs; names not starting with ``$`` are left alone."""
    o = Options()
    seen: set[str] = set()
    for name, value in items:
        if not name.startswith("$"):
            continue
        if name not in OPTIONS:
            raise QueryError(f"unknown query option {_short(name)}; known: {', '.join(OPTIONS)}")
        if name in seen:
            raise QueryError(f"{name} is given twice")
        seen.add(name)
        if len(value) > MAX_OPTION:
            raise QueryError(f"{name} is longer than {MAX_OPTION} characters")
        if name == "$filter":
            o.filter = parse_filter(value)
        elif name == "$top":
            o.top, o.top_given = min(_integer(name, value), MAX_TOP), True
        elif name == "$skip":
            o.skip = min(_integer(name, value), MAX_SKIP)
        elif name == "$count":
            if value not in ("true", "false"):
                raise QueryError("$count must be true or false")
            o.count = value == "true"
        elif name == "$orderby":
            o.orderby = _orderby(value)
        elif name == "$select":
            o.select = _select(value)
        elif name == "$expand":
            o.expand = _expand(value, depth)
    return o


def _orderby(text: str) -> list[tuple[tuple[str, ...], bool]]:
    out = []
    for item in _split(text, ","):
        words = item.split()
        if not 1 <= len(words) <= 2 or not _PATH.fullmatch(words[0]):
            raise QueryError("$orderby: a property path, optionally followed by asc or desc")
        if len(words) == 2 and words[1] not in ("asc", "desc"):
            raise QueryError("$orderby: the direction is asc or desc")
        path = tuple(_segment(s) for s in words[0].split("/"))
        out.append((path, len(words) == 2 and words[1] == "desc"))
    if len(out) > 8:
        raise QueryError("$orderby: at most 8 properties")
    return out


def _select(text: str) -> list[str]:
    out = []
    for item in _split(text, ","):
        item = item.strip()
        if not re.fullmatch(r"[A-Za-z_@][A-Za-z0-9_@.]*", item):
            raise QueryError("$select: a comma-separated list of property names")
        out.append(_segment(item))
    return out


def _expand(text: str, depth: int) -> list[Expand]:
    if depth >= MAX_EXPAND_DEPTH:
        raise QueryError(f"$expand is nested more than {MAX_EXPAND_DEPTH} levels deep")
    out = []
    for item in _split(text, ","):
        item = item.strip()
        head, paren, rest = item.partition("(")
        head = head.strip()
        if not _PATH.fullmatch(head):
            raise QueryError("$expand: a navigation property path, e.g. Datastreams/Sensor")
        opts: list[tuple[str, str]] = []
        if paren:
            if not rest.endswith(")"):
                raise QueryError("$expand: options in parentheses, e.g. Datastreams($top=1)")
            for part in _split(rest[:-1], ";"):
                name, eq, value = part.strip().partition("=")
                if not eq:
                    raise QueryError("$expand: each option is $name=value")
                opts.append((name.strip(), value.strip()))
        out.append(Expand(tuple(head.split("/")), parse_options(opts, depth + 1)))
    return out


# -- evaluation in Python (the small entity sets) --------------------------------------------
Resolve = Callable[[tuple[str, ...]], list[Any]]


def evaluate(node: Node, resolve: Resolve) -> bool:
    """Whether an entity matches: ``resolve(path)`` gives the values a property path has
    for it (one, or several through a collection: any of them may match)."""
    return _truthy(_eval(node, resolve))


def _truthy(values: list) -> bool:
    return any(v is True for v in values)


def _eval(node: Node, resolve: Resolve) -> list:
    tag = node[0]
    if tag == "lit":
        return [node[1]]
    if tag == "path":
        return resolve(node[1])
    if tag == "not":
        return [not _truthy(_eval(node[1], resolve))]
    if tag == "neg":
        return [_neg(v) for v in _eval(node[1], resolve)]
    if tag == "call":
        args = [_eval(a, resolve) for a in node[2]]
        return [_call(node[1], combo) for combo in _product(args)]
    op, a, b = node[1], node[2], node[3]
    if op == "and":
        return [_truthy(_eval(a, resolve)) and _truthy(_eval(b, resolve))]
    if op == "or":
        return [_truthy(_eval(a, resolve)) or _truthy(_eval(b, resolve))]
    left, right = _eval(a, resolve), _eval(b, resolve)
    fn = compare if op in COMPARE else arith
    return [fn(op, x, y) for x in left for y in right]


def _product(lists: list[list]) -> list[tuple]:
    out: list[tuple] = [()]
    for values in lists:
        out = [t + (v,) for t in out for v in values][:10_000]
    return out


def _num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare(op: str, a: object, b: object) -> bool:
    """OData comparison: null equals only null; values of different types never match;
    an interval compares by its start (gt, ge), its end (lt, le) or both (eq)."""
    if isinstance(a, Interval) or isinstance(b, Interval):
        return _compare_interval(op, a, b)
    if a is None or b is None:
        if op == "eq":
            return a is None and b is None
        if op == "ne":
            return not (a is None and b is None)
        return False
    same = (
        (_num(a) and _num(b))
        or (isinstance(a, str) and isinstance(b, str))
        or (isinstance(a, dt.datetime) and isinstance(b, dt.datetime))
        or (isinstance(a, bool) and isinstance(b, bool))
        or (isinstance(a, dt.timedelta) and isinstance(b, dt.timedelta))
    )
    if not same:
        return op == "ne" and not (isinstance(a, Geo) and isinstance(b, Geo) and a == b)
    if op == "eq":
        return a == b
    if op == "ne":
        return a != b
    if isinstance(a, bool):
        return False
    return {"gt": a > b, "ge": a >= b, "lt": a < b, "le": a <= b}[op]  # type: ignore[operator]


def _compare_interval(op: str, a: object, b: object) -> bool:
    if isinstance(b, Interval) and not isinstance(a, Interval):
        flip = {"gt": "lt", "ge": "le", "lt": "gt", "le": "ge", "eq": "eq", "ne": "ne"}
        return _compare_interval(flip[op], b, a)
    assert isinstance(a, Interval)
    if not isinstance(b, dt.datetime):
        return op == "ne"
    if op == "eq":
        return a.start == b and a.end == b
    if op == "ne":
        return not (a.start == b and a.end == b)
    if op in ("gt", "ge"):
        return compare(op, a.start, b)
    return compare(op, a.end, b)


def arith(op: str, a: object, b: object) -> object:
    if isinstance(a, dt.datetime) and isinstance(b, dt.timedelta) and op in ("add", "sub"):
        try:
            return a + b if op == "add" else a - b
        except OverflowError:
            return None
    if not (_num(a) and _num(b)):
        return None
    x, y = float(a), float(b)  # type: ignore[arg-type]
    if op == "add":
        r = x + y
    elif op == "sub":
        r = x - y
    elif op == "mul":
        r = x * y
    elif y == 0:
        return None
    elif op == "div":
        r = x / y
    else:
        r = math.fmod(x, y)
    if isinstance(a, int) and isinstance(b, int) and op in ("add", "sub", "mul", "mod"):
        return int(r) if math.isfinite(r) and abs(r) < 2**63 else None
    return r if math.isfinite(r) else None


def _neg(v: object) -> object:
    return -v if _num(v) else None  # type: ignore[operator]


def _call(fn: str, args: tuple) -> object:
    s = [a if isinstance(a, str) else None for a in args]
    if fn in ("substringof", "contains", "startswith", "endswith", "indexof", "concat"):
        x, y = s[0], s[1]
        if x is None or y is None:
            return None
        if fn == "substringof":
            return x in y
        if fn == "contains":
            return y in x
        if fn == "startswith":
            return x.startswith(y)
        if fn == "endswith":
            return x.endswith(y)
        if fn == "indexof":
            return x.find(y)
        return (x + y)[:MAX_OPTION]
    if fn in ("length", "tolower", "toupper", "trim"):
        x = s[0]
        if x is None:
            return None
        return {"length": len, "tolower": str.lower, "toupper": str.upper, "trim": str.strip}[fn](x)
    if fn == "substring":
        x = s[0]
        if x is None or not all(isinstance(a, int) and not isinstance(a, bool) for a in args[1:]):
            return None
        start = max(0, args[1])
        return x[start : start + args[2]] if len(args) == 3 else x[start:]
    if fn in ("year", "month", "day", "hour", "minute", "second"):
        t = args[0].start if isinstance(args[0], Interval) else args[0]
        return getattr(t.astimezone(dt.UTC), fn) if isinstance(t, dt.datetime) else None
    if fn == "now":
        return dt.datetime.now(dt.UTC)
    if fn in ("round", "floor", "ceiling"):
        x = args[0]
        if not _num(x):
            return None
        if fn == "round":
            return round(x)  # type: ignore[call-overload]
        return math.floor(x) if fn == "floor" else math.ceil(x)  # type: ignore[arg-type]
    return _geo_call(fn, args)


def _geo_call(fn: str, args: tuple) -> object:
    a, b = args
    if not (isinstance(a, Geo) and isinstance(b, Geo)):
        return None
    if fn == "geo.distance":
        if a.kind == b.kind == "Point":
            return math.dist(a.coords, b.coords)  # in the units of the coordinates (degrees)
        raise QueryError("geo.distance: between two points only")
    if fn == "st_equals":
        return a == b
    if fn == "st_contains":
        return _within(b, a)
    if fn == "st_within":
        return _within(a, b)
    hit = _within(a, b) or _within(b, a) or a == b
    return not hit if fn == "st_disjoint" else hit


def _within(inner: Geo, outer: Geo) -> bool:
    if outer.kind != "Polygon":
        return inner == outer if inner.kind == "Point" else False
    points = [inner.coords] if inner.kind == "Point" else list(inner.coords)
    return all(_in_ring(p, outer.coords) for p in points)


def _in_ring(p: tuple, ring: tuple) -> bool:
    x, y = p
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside
