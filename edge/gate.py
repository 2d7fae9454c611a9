"""The privacy gate for counts: people, bicycles and devices leave only as clock-aligned
bins with small counts made indistinguishable. Portable to MicroPython.

- Bins are aligned to the clock (default 15 minutes; never shorter than ``min_bin_s``,
  itself never below 60 s). Every count series of the pole is published in every bin,
  also when nothing was detected, so the number of messages says nothing about the
  number of detections, and no per-detection record or timestamp ever leaves.
- Small counts: every true count below ``k`` (default 10) is published identically, as
  the SenML string value ``"<k"`` (``vs``), so the bytes for 0 … k-1 are the same; larger
  counts are rounded to a multiple of ``round_to`` (default 5), never below ``k``.
- Longer-period totals are only ever sums of these published bin values.
- Optional differential privacy (``edge.dp``): integer noise added to the true count
  before the same rounding, within a per-day budget.
"""

from edge import cbor, senml


def protect(count, k=10, round_to=5):
    """The published form of a true count: the string '<k' below k, else a rounded int."""
    if count < k:
        return "<%d" % k
    r = ((count + round_to // 2) // round_to) * round_to
    return r if r >= k else k


def sum_protected(values):
    """A longer-period total from published bin values only (suppressed bins add 0)."""
    return sum(v for v in values if not isinstance(v, str))


def bin_start(now, length):
    return int(now // length) * length


class CountBins:
    """True counts per series for the current bin; closed bins come out protected."""

    def __init__(self, series, bin_s=900, min_bin_s=60, k=10, round_to=5, noise=None):
        floor = min_bin_s if min_bin_s > 60 else 60
        if bin_s < floor:
            raise ValueError("count bins must be at least %d s long" % floor)
        self.series = list(series)  # [(sensor, field)] in a fixed order
        self.bin_s = bin_s
        self.k = k
        self.round_to = round_to
        self.noise = noise  # callable(series_key, bin_start, count) -> count, or None
        self.start = None
        self._counts = {}

    def add(self, key, n, now):
        if self.start is None:
            self.start = bin_start(now, self.bin_s)
        if key in self._counts or key in self.series:
            self._counts[key] = self._counts.get(key, 0) + n

    def due(self, now):
        return self.start is not None and now >= self.start + self.bin_s

    def close(self, now):
        """(bin_start, [(key, published value)]) for the finished bin; counts are reset
        and the true values forgotten."""
        start = self.start if self.start is not None else bin_start(now, self.bin_s) - self.bin_s
        out = []
        for key in self.series:
            true = self._counts.get(key, 0)
            if self.noise is not None:
                true = self.noise(key, start, true)
            out.append((key, protect(true, self.k, self.round_to)))
        self._counts = {}
        self.start = bin_start(now, self.bin_s)
        return start, out


def encode_bin(pole_id, start, length, values):
    """A SenML pack for one bin: bt = bin end, one record per series."""
    records = [
        [(senml.BN, pole_id + "/"), (senml.BT, start + length), (0, "bin"), (1, "s"), (2, length)]
    ]
    for (sensor, field), v in values:
        name = sensor + "/" + field + "/count"
        if isinstance(v, str):
            records.append([(0, name), (1, "count"), (3, v)])
        else:
            records.append([(0, name), (1, "count"), (2, v)])
    return cbor.dumps([cbor.Map(r) for r in records])
