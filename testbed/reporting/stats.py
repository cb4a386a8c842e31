"""The statistics the verdicts rest on: 95% intervals of counts, and a rank test of samples.

Small and dependency-free on purpose: the report is rebuilt from results.json on any
machine with the project installed.
"""

from __future__ import annotations

import math
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


def mann_whitney_p(x: list[float] | tuple[float, ...], y: list[float] | tuple[float, ...]) -> float:
    """The two-sided p-value of the Mann-Whitney U test: how likely samples as far apart in
    rank as ``x`` and ``y`` are if both came from one distribution. Exact (ties count a
    half, which makes it a little conservative); for the few dozen samples of a comparison.

    It compares ranks only, so one sample that strayed far (a bench run that met a busy
    neighbour) weighs no more than one that strayed a little. With 3 samples each it can
    never go below 0.1; from 4 each it can reach 0.03.
    """
    n, m = len(x), len(y)
    if not n or not m:
        return 1.0
    u = sum((a < b) + 0.5 * (a == b) for a in x for b in y)
    low = math.floor(min(u, n * m - u))
    tail = sum(_arrangements(k, n, m) for k in range(low + 1))
    return min(1.0, 2 * tail / math.comb(n + m, n))
