"""The lamp-state heuristic: thresholds, settling after a switch, debounce."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.lamp import STATES, LampMonitor


def feed(mon, commanded, current, t0, t1, dt=0.5):
    state, t = None, t0
    while t <= t1 + 1e-9:
        state = mon.update(commanded, current, t)
        t += dt
    return state


@pytest.mark.parametrize(
    "commanded,current,state",
    [
        (True, 1.0, "burning"),
        (True, 0.8, "burning"),
        (True, 0.79, "degraded"),
        (True, 0.1, "degraded"),
        (True, 0.099, "failed"),
        (True, 0.0, "failed"),
        (False, 0.0, "off"),
        (False, 0.099, "off"),
        (False, 0.1, "day_burner"),
        (False, 1.0, "day_burner"),
    ],
)
def test_classification_thresholds(commanded, current, state):
    mon = LampMonitor(1.0, debounce_s=1.0)
    assert mon.classify(commanded, current) == state
    assert feed(mon, commanded, current, 0.0, 10.0) == state


def test_settling_after_switch_then_debounced():
    mon = LampMonitor(0.5, debounce_s=3.0, settle_s=2.0)
    assert mon.update(True, 0.0, 0.0) == "settling"  # inrush / soft start ignored
    assert mon.update(True, 0.5, 1.9) == "settling"
    assert mon.update(True, 0.5, 2.0) == "settling"  # candidate burning from t=2
    assert mon.update(True, 0.5, 4.9) == "settling"
    assert mon.update(True, 0.5, 5.0) == "burning"
    assert mon.update(False, 0.5, 6.0) == "settling"  # switched off: driver discharging
    assert mon.update(False, 0.0, 8.0) == "settling"
    assert mon.update(False, 0.0, 11.0) == "off"


def test_short_glitch_is_not_reported():
    mon = LampMonitor(1.0, debounce_s=5.0)
    assert feed(mon, True, 1.0, 0.0, 20.0) == "burning"
    assert feed(mon, True, 0.0, 20.5, 24.0) == "burning"  # 3.5 s dropout: debounced away
    assert feed(mon, True, 1.0, 24.5, 40.0) == "burning"
    assert feed(mon, True, 0.0, 40.5, 44.5) == "burning"
    assert mon.update(True, 0.0, 45.5) == "failed"  # persisted 5 s


def test_day_burner_and_failure_are_found():
    mon = LampMonitor(0.3, debounce_s=10.0)
    assert feed(mon, False, 0.3, 0.0, 30.0) == "day_burner"
    assert feed(mon, True, 0.0, 31.0, 60.0) == "failed"
    assert feed(mon, True, 0.15, 61.0, 90.0) == "degraded"


def test_clock_going_back_restarts_settling():
    mon = LampMonitor(1.0, debounce_s=1.0)
    assert feed(mon, True, 1.0, 100.0, 110.0) == "burning"
    assert mon.update(True, 1.0, 50.0) == "settling"


def test_bad_parameters():
    with pytest.raises(ValueError):
        LampMonitor(0.0)
    with pytest.raises(ValueError):
        LampMonitor(1.0, on_threshold=0.1, fail_threshold=0.2)


@given(
    commanded=st.booleans(),
    current=st.floats(min_value=-1.0, max_value=10.0),
    debounce=st.floats(min_value=0.0, max_value=30.0),
)
def test_steady_input_always_ends_in_its_class(commanded, current, debounce):
    mon = LampMonitor(2.0, debounce_s=debounce, settle_s=2.0)
    state = feed(mon, commanded, current, 0.0, 2.0 + debounce + 1.0)
    assert state in STATES
    assert state == mon.classify(commanded, current)
