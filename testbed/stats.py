"""The statistics the verdicts rest on: 95% intervals of counts, of the ratio of two
samples' typical values (the interval of a rank test), and of the ratio within pairs
measured side by side (``testbed bench --versus``).

Small and dependency-free on purpose: the report is rebuilt from results.json on any
machine with the project installed, and the bench reports its head-to-head ratio with
the same interval the verdicts use.
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


@cache
def _signed_rank_counts(n: int) -> tuple[int, ...]:
    """How many of the 2**n sign patterns of n ranks give each sum of the positive ranks
    (the Wilcoxon signed-rank statistic's exact distribution, as counts)."""
    counts = [1]
    for rank in range(1, n + 1):
        longer = counts + [0] * rank
        for total, ways in enumerate(counts):
            longer[total + rank] += ways
        counts = longer
    return tuple(counts)


def signed_rank_critical(n: int, alpha: float) -> int | None:
    """The largest signed-rank sum whose lower tail holds at most ``alpha`` of the 2**n
    sign patterns of n pairs (the Wilcoxon test's critical value); None when even a sum
    of 0 holds more."""
    counts, total = _signed_rank_counts(n), 2 ** n
    critical, cumulative = None, 0
    for statistic, ways in enumerate(counts):
        cumulative += ways
        if cumulative > alpha * total:
            break
        critical = statistic
    return critical


def paired_ratio_interval(pairs: Sequence[tuple[float, float]],
                          alpha: float = 0.05) -> tuple[float, float] | None:
    """The 95% interval of how many times the second of each pair is the first, from
    pairs measured side by side (windows alternating on two servers, so that the machine's
    drift falls on both): the distribution-free interval of the median of the logarithms
    of their ratios (from the Walsh averages), the one the two-sided Wilcoxon signed-rank
    test inverts.

    None when a value is not positive or the pairs are too few to reach ``alpha``
    (5 cannot: the test never goes below 0.0625; from 6 it can)."""
    n = len(pairs)
    if not n or min(min(pair) for pair in pairs) <= 0:
        return None
    critical = signed_rank_critical(n, alpha / 2)
    if critical is None:
        return None
    logs = [math.log(b / a) for a, b in pairs]
    walsh = sorted((logs[i] + logs[j]) / 2 for i in range(n) for j in range(i, n))
    return math.exp(walsh[critical]), math.exp(walsh[len(walsh) - critical - 1])
