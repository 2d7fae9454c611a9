"""Spread windows (window_offset_s): a district's poles need not all publish in the same
second, and each window still covers exactly window_s seconds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.config import ConfigError, PoleConfig
from edge.window import window_start


@given(
    now=st.floats(min_value=1.7e9, max_value=2.0e9, allow_nan=False),
    length=st.integers(1, 3600),
    data=st.data(),
)
def test_window_start_with_offset_contains_now_and_is_shifted(now, length, data):
    offset = data.draw(st.integers(0, length - 1))
    start = window_start(now, length, offset)
    assert start <= now < start + length
    assert (start - offset) % length == 0
    assert window_start(now, length) == window_start(now, length, 0)


def test_auto_offset_is_stable_per_pole_and_within_the_window():
    offsets = {
        PoleConfig(
            {"pole_id": f"nl-x-{i:04d}", "window_s": 60, "window_offset_s": "auto"}
        ).window_offset_s
        for i in range(500)
    }
    assert offsets <= set(range(60)) and len(offsets) > 40  # spread, not bunched
    a = PoleConfig({"pole_id": "nl-x-0001", "window_offset_s": "auto"}).window_offset_s
    assert a == PoleConfig({"pole_id": "nl-x-0001", "window_offset_s": "auto"}).window_offset_s
    assert PoleConfig({"pole_id": "nl-x-0001"}).window_offset_s == 0


@pytest.mark.parametrize("bad", [-1, 60, 1.5, "soon"])
def test_bad_offsets_are_refused_with_the_valid_range(bad):
    with pytest.raises(ConfigError, match="0 to 59"):
        PoleConfig({"pole_id": "nl-x-0001", "window_s": 60, "window_offset_s": bad})


def test_a_pole_with_an_offset_opens_shifted_windows(tmp_path):
    from host_sim.pole import SimPole
    from host_sim.world import World

    sp = SimPole(
        "nl-x-0001",
        tmp_path / "state",
        "mqtt://127.0.0.1:1",
        World(seed=1).pole(0),
        window_s=10,
        config_overrides={"window_offset_s": 3},
    )
    try:
        w = sp.pole.window
        assert w.start % 10 == 3 and w.length == 10
        closed = sp.pole.window
        sp.pole.close_window()
        assert sp.pole.window.start == closed.end  # contiguous: nothing lost between windows
    finally:
        sp.pole.spool.close()
        for p in sp.ptys:
            p.close()
