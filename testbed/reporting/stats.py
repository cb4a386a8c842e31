"""The statistics the verdicts rest on: 95% intervals of counts, and of the ratio of two
samples' typical values (the interval of a rank test).

Small and dependency-free on purpose: the report is rebuilt from results.json on any
machine with the project installed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cache

#: The normal quantile of the 95% intervals the verdicts compare.
Z95 = 1.96


def wilson(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval of a share: sound at 0 and 1, where the normal one is not."""
    share = successes / trials
    centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
    half = (z / (1 + z * z / trials)) * math.sqrt(share * (1 - share) / trials
                                                  + z * z / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def poisson(count: float, z: float = Z95) -> tuple[float, float]:
    """The interval of a count of independent events (normal approximation, with the
    square-root transform that keeps it positive)."""
    root = math.sqrt(count)
    return max(0.0, root - z / 2) ** 2, (root + z / 2) ** 2


@cache
def _arrangements(u: int, n: int, m: int) -> int:
    """Orderings of n values of one sample among m of another that give U = u."""
    if u < 0:
        return 0
    if n == 0 or m == 0:
        return 1 if u == 0 else 0
    return _arrangements(u - m, n - 1, m) + _arrangements(u, n, m - 1)


def _lower_tail(n: int, m: int, alpha: float) -> int | None:
    """The largest U whose lower tail holds at most ``alpha`` of the arrangements of n and
    m values (the Mann-Whitney test's critical value); None when even U = 0 holds more."""
    total, cumulative, u = math.comb(n + m, n), 0, 0
    while True:
        cumulative += _arrangements(u, n, m)
        if cumulative > alpha * total:
            return u - 1 if u else None
        u += 1


def ratio_interval(x: Sequence[float], y: Sequence[float], alpha: float = 0.05) -> tuple[float, float] | None:
    """The 95% interval of how many times ``y``'s typical value is ``x``'s: the
    distribution-free interval of the shift between their logarithms (Moses' interval,
    from the ratios of every pair of values), the one the two-sided Mann-Whitney test
    inverts: it holds 1 when the test cannot tell x and y apart at ``alpha``.

    None when a value is not positive or the samples are too few to reach ``alpha``
    (3 each cannot: the test never goes below 0.1; from 4 each it can)."""
    n, m = len(x), len(y)
    if not n or not m or min(x) <= 0 or min(y) <= 0:
        return None
    critical = _lower_tail(n, m, alpha / 2)
    if critical is None:
        return None
    ratios = sorted(b / a for a in x for b in y)
    return ratios[critical], ratios[n * m - critical - 1]
