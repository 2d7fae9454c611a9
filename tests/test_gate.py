"""Counts leave only as clock-aligned bins; small counts are indistinguishable."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.gate import CountBins, encode_bin, protect, sum_protected


def test_small_counts_are_byte_identical():
    packs = {
        encode_bin("nl-ex-0001", 1_800_000_000, 900, [(("radar", "people"), protect(c))])
        for c in range(10)
    }
    assert len(packs) == 1
    assert (
        encode_bin("nl-ex-0001", 1_800_000_000, 900, [(("radar", "people"), protect(10))])
        not in packs
    )


@given(st.integers(0, 100_000))
def test_rounding(c):
    p = protect(c, k=10, round_to=5)
    if c < 10:
        assert p == "<10"
    else:
        assert p % 5 == 0 and p >= 10 and abs(p - c) <= 2


def test_bins_emit_every_series_every_bin_and_totals_sum_bins():
    b = CountBins([("radar", "people"), ("radar", "bicycles")], bin_s=900)
    b.start = 0
    for _ in range(23):
        b.add(("radar", "people"), 1, 10)
    start, values = b.close(900)
    assert start == 0 and values == [(("radar", "people"), 25), (("radar", "bicycles"), "<10")]
    start2, values2 = b.close(1800)  # nothing detected: the same message shape
    assert start2 == 900 and values2 == [
        (("radar", "people"), "<10"),
        (("radar", "bicycles"), "<10"),
    ]
    assert sum_protected([v for _, v in values + values2]) == 25


def test_bins_never_below_a_minute():
    with pytest.raises(ValueError):
        CountBins([("r", "p")], bin_s=30)
    with pytest.raises(ValueError):
        CountBins([("r", "p")], bin_s=120, min_bin_s=300)
