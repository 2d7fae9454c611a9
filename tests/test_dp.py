"""Differential privacy: the noise is integer, symmetric and of the right scale; the
ledger refuses over-budget and repeated releases, across restarts."""

from __future__ import annotations

import math
from collections import Counter

from edge.dp import discrete_laplace, epsilon_ratio
from edge.ledger import BudgetLedger

N = 20_000


def sample(eps: float) -> list[int]:
    s, t = epsilon_ratio(eps)
    return [discrete_laplace(s, t) for _ in range(N)]


def test_noise_matches_the_two_sided_geometric():
    for eps in (0.5, 1.0):
        xs = sample(eps)
        assert all(isinstance(x, int) for x in xs)
        a = math.exp(-eps)
        var = 2 * a / (1 - a) ** 2
        p0 = (1 - a) / (1 + a)
        mean = sum(xs) / N
        assert abs(mean) < 4 * math.sqrt(var / N)
        emp_var = sum(x * x for x in xs) / N - mean * mean
        assert abs(emp_var - var) < 0.08 * var, (eps, emp_var, var)
        c = Counter(xs)
        assert abs(c[0] / N - p0) < 4 * math.sqrt(p0 * (1 - p0) / N)
        for j in (1, 2, 3):  # symmetric
            assert abs(c[j] - c[-j]) < 5 * math.sqrt(c[j] + c[-j] + 1)


def test_scales_are_distinguishable():
    v_half = sum(x * x for x in sample(0.5)) / N
    v_one = sum(x * x for x in sample(1.0)) / N
    assert v_half > 2.5 * v_one  # theory: 7.84 vs 1.84


def test_ledger_refuses_over_budget_and_double_release(tmp_path):
    led = BudgetLedger(tmp_path / "l.sqlite", daily_epsilon=3.0)
    assert led.spend("2026-11-28", 0, "radar/people", 1.0)
    assert not led.spend("2026-11-28", 0, "radar/people", 1.0)  # never the same bin twice
    assert led.spend("2026-11-28", 900, "radar/people", 1.0)
    assert led.spend("2026-11-28", 900, "radar/bicycles", 1.0)
    assert not led.spend("2026-11-28", 1800, "radar/people", 1.0)  # over the day's budget
    assert led.remaining("2026-11-28") == 0.0
    assert led.spend("2026-11-29", 86400, "radar/people", 1.0)
    led.close()
    again = BudgetLedger(tmp_path / "l.sqlite", daily_epsilon=3.0)
    assert not again.spend("2026-11-28", 2700, "radar/people", 0.5)
    assert again.remaining("2026-11-29") == 2.0
