"""The privacy gate for counts: people, bicycles and devices leave only as clock-aligned
bins with small counts made indistinguishable. Portable to MicroPython.

- Bins are aligned to the clock (default 15 minutes; never shorter than ``min_bin_s``,
  itself never below 60 s). Every count series of the pole is published in every bin,
  also when nothing was detected, so the number of messages says nothing about the
  number of detections, and no per-detection record or timestamp ever leaves.
- Small counts: every true count below ``k`` (default 10) is published identically: the
  count reads 0 and ``suppressed`` is true, so the bytes for 0 … k-1 are the same.
  Larger counts are rounded to a multiple of ``round_to`` (default 5), never below ``k``.
  One value kind per series (an integer count, a boolean flag), so a consumer can type
  them; a total over bins is the plain sum of published counts.
- Coverage: a bin says how many seconds it covers. The first bin after a start runs
  from the start to the next aligned boundary, or to the one after if that would be
  shorter than ``min_bin_s``: a short bin would tell more precisely when people passed.
- Longer-period totals are only ever sums of these published bin values.
- Optional differential privacy (``edge.dp``): integer noise added to the true count
  before the same rounding, within a per-day budget.
"""

from edge import messages


def protect(count, k=10, round_to=5):
    """The published form of a true count: (value, suppressed). Below k: (0, True), the
    same for every such count; else the count rounded to round_to, never below k."""
    if count < k:
        return 0, True
    r = ((count + round_to // 2) // round_to) * round_to
    return (r if r >= k else k), False


def sum_protected(values):
    """A longer-period total from published (value, suppressed) pairs only."""
    return sum(v for v, _ in values)


def bin_start(now, length):
    return int(now // length) * length


class CountBins:
    """True counts per series for the current bin; closed bins come out protected.

    ``open(now)`` starts counting (the daemon calls it when it starts); ``end`` is when
    the current bin closes, ``opened`` when it began collecting."""

    def __init__(self, series, bin_s=900, min_bin_s=60, k=10, round_to=5, noise=None):
        floor = min_bin_s if min_bin_s > 60 else 60
        if bin_s < floor:
            raise ValueError("count bins must be at least %d s long" % floor)
        self.series = list(series)  # [(sensor, field)] in a fixed order
        self.bin_s = bin_s
        self.min_bin_s = floor
        self.k = k
        self.round_to = round_to
        self.noise = noise  # callable(series_key, bin_start, count) -> count, or None
        self.opened = None
        self.end = None
        self._counts = {}

    def open(self, now):
        """Start the first bin at ``now``: it ends at the next boundary, or the one after
        if fewer than min_bin_s seconds would be left."""
        self.opened = now
        self.end = bin_start(now, self.bin_s) + self.bin_s
        if self.end - now < self.min_bin_s:
            self.end += self.bin_s
        self._counts = {}

    def add(self, key, n, now):
        if self.end is None:
            self.open(now)
        if key in self._counts or key in self.series:
            self._counts[key] = self._counts.get(key, 0) + n

    def due(self, now):
        return self.end is not None and now >= self.end

    def covered(self, now):
        """Whole seconds the current bin has covered by ``now`` (at most its length)."""
        end = now if now < self.end else self.end
        span = end - self.opened
        return int(span + 0.5) if span > 0 else 0

    def close(self, now):
        """(bin end, covered seconds, [(key, (value, suppressed))]) for the finished bin:
        counts are reset and the true values forgotten. Closing before ``end`` (a clean
        stop) gives a partial bin that says so in its coverage."""
        if self.end is None:
            self.open(now)
        end = int(now) if now < self.end else self.end
        covered = self.covered(now)
        out = []
        for key in self.series:
            true = self._counts.get(key, 0)
            if self.noise is not None:
                true = self.noise(key, end - covered, true)
            out.append((key, protect(true, self.k, self.round_to)))
        self._counts = {}
        # After a clock jump the next bin starts at the current boundary, not in between.
        self.opened = end if now < end + self.bin_s else bin_start(now, self.bin_s)
        self.end = bin_start(self.opened, self.bin_s) + self.bin_s
        return end, covered, out


def encode_bin(pole_id, end, covered, values):
    """A SenML pack for one bin (edge/messages.py COUNTS): bt = bin end, ``bin`` = the
    seconds it covers, then a count and a suppressed flag for every series."""
    items = [("bin", covered)]
    for (sensor, field), (value, suppressed) in values:
        base = sensor + "/" + field + "/"
        items.append((base + "count", value))
        items.append((base + "suppressed", suppressed))
    return messages.pack(messages.COUNTS, pole_id, end, items)
