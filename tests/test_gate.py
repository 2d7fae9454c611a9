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
    value, suppressed = protect(c, k=10, round_to=5)
    assert isinstance(value, int) and isinstance(suppressed, bool)  # one value kind always
    if c < 10:
        assert (value, suppressed) == (0, True)
    else:
        assert value % 5 == 0 and value >= 10 and abs(value - c) <= 2 and not suppressed


def test_bins_emit_every_series_every_bin_and_totals_sum_bins():
    b = CountBins([("radar", "people"), ("radar", "bicycles")], bin_s=900)
    b.open(0)
    for _ in range(23):
        b.add(("radar", "people"), 1, 10)
    end, covered, values = b.close(900)
    assert (end, covered) == (900, 900)
    assert values == [(("radar", "people"), (25, False)), (("radar", "bicycles"), (0, True))]
    end2, covered2, values2 = b.close(1800)  # nothing detected: the same message shape
    assert (end2, covered2) == (1800, 900) and values2 == [
        (("radar", "people"), (0, True)),
        (("radar", "bicycles"), (0, True)),
    ]
    assert sum_protected([v for _, v in values + values2]) == 25


def test_first_bin_covers_from_the_start_and_is_never_shorter_than_min_bin():
    b = CountBins([("radar", "people")], bin_s=900, min_bin_s=60)
    b.open(1000.4)  # 799.6 s before the boundary at 1800: a partial first bin
    assert b.end == 1800 and b.covered(1800) == 800
    b = CountBins([("radar", "people")], bin_s=900, min_bin_s=120)
    b.open(1750)  # only 50 s left: merged into the next bin, which then says so
    assert b.end == 2700
    end, covered, _ = b.close(2700)
    assert (end, covered) == (2700, 950)
    assert (b.opened, b.end) == (2700, 3600)


def test_a_bin_closed_early_at_a_stop_says_so():
    b = CountBins([("radar", "people")], bin_s=900)
    b.open(0)
    end, covered, _ = b.close(600.2)
    assert (end, covered) == (600, 600)


def test_bins_never_below_a_minute():
    with pytest.raises(ValueError):
        CountBins([("r", "p")], bin_s=30)
    with pytest.raises(ValueError):
        CountBins([("r", "p")], bin_s=120, min_bin_s=300)
