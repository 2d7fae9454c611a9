"""Differential privacy for near-real-time counts: exact integer noise and a budget.

``discrete_laplace(s, t)`` samples the two-sided geometric distribution
P(k) ∝ exp(-ε|k|) with ε = s/t, using only integer arithmetic and the operating
system's secure random bytes (Canonne, Kamath, Steinke 2020, Algorithm 2): no floating
point, so none of the leaks of floating-point Laplace (Mironov 2012). Sensitivity 1:
one person changes a count by at most one. Portable to MicroPython (``os.urandom``).

``BudgetLedger`` (CPython, SQLite) records every release: it refuses a release that
would take the day over its ε budget, and never releases the same bin of the same
series twice. Budgets add up over releases; that is what the ledger is for.
"""

import os


def randbelow(n):
    """Uniform integer in [0, n) from the OS's secure source, by rejection."""
    if n <= 1:
        return 0
    nbytes = 1  # (n.bit_length() + 7) // 8, which MicroPython lacks
    while n >= 256**nbytes:
        nbytes += 1
    limit = (256**nbytes // n) * n
    while True:
        r = int.from_bytes(os.urandom(nbytes), "big")
        if r < limit:
            return r % n


def bernoulli(num, den):
    """True with probability num/den."""
    return randbelow(den) < num


def bernoulli_exp(num, den):
    """True with probability exp(-num/den), for num/den >= 0."""
    if num <= den:
        k = 1
        while bernoulli(num, den * k):
            k += 1
        return k % 2 == 1
    for _ in range(num // den):
        if not bernoulli_exp(1, 1):
            return False
    return bernoulli_exp(num % den, den)


def discrete_laplace(s, t):
    """An integer with P(k) ∝ exp(-(s/t)|k|): two-sided geometric noise, ε = s/t."""
    while True:
        u = randbelow(t)
        if not bernoulli_exp(u, t):
            continue
        v = 0
        while bernoulli_exp(1, 1):
            v += 1
        y = (u + t * v) // s
        negative = bernoulli(1, 2)
        if negative and y == 0:
            continue
        return -y if negative else y


def epsilon_ratio(epsilon, precision=1000):
    """ε as a reduced fraction s/t (the sampler needs it exact)."""
    s, t = round(epsilon * precision), precision
    a, b = s, t
    while b:
        a, b = b, a % b
    return s // a, t // a
