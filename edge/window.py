"""Per-window aggregation: count, mean, min and max of every series, in O(1) memory.

Only these four numbers per series survive the window; individual samples are
never kept, which is also the first step of data minimisation.
Portable to MicroPython.
"""


class Stat:
    """Running statistics of one series within one window."""

    __slots__ = ("count", "total", "lo", "hi")

    def __init__(self):
        self.count = 0
        self.total = 0.0
        self.lo = 0.0
        self.hi = 0.0

    def add(self, value):
        if self.count == 0:
            self.lo = self.hi = value
        elif value < self.lo:
            self.lo = value
        elif value > self.hi:
            self.hi = value
        self.count += 1
        self.total += value

    def mean(self):
        return self.total / self.count if self.count else None


def window_start(now, length, offset=0):
    """The start of the clock-aligned window containing ``now``: whole multiples of
    ``length``, shifted by ``offset`` seconds (0 <= offset < length) when poles spread
    their windows so that a whole district does not publish in the same second."""
    return int((now - offset) // length) * length + offset


class Window:
    """Statistics for a set of series keyed by (sensor, field), over one aligned window.

    ``opened``: when collecting began, if after ``start`` (the first window after the
    daemon starts), so the window can say how much of its length it really covers."""

    def __init__(self, start, length, opened=None):
        self.start = start
        self.length = length
        self.opened = start if opened is None or opened < start else opened
        self.series = {}

    @property
    def end(self):
        return self.start + self.length

    def covered(self, until=None):
        """Whole seconds from ``opened`` to ``until`` (default: the window's end)."""
        end = self.end if until is None or until > self.end else until
        span = end - self.opened
        return int(span + 0.5) if span > 0 else 0

    def add(self, key, value):
        stat = self.series.get(key)
        if stat is None:
            stat = self.series[key] = Stat()
        stat.add(value)
