"""Settling rounds: the models a scenario's runs left undecided, measured side by side.

Where the server's CPU per request decides (under testbed bench, or wrk in the HTTP
comparison), two models are level when the interval of the ratio of their windows holds
1, and apart when it lies away from it (:func:`testbed.reporting.sentences.undecided`).
An interval that holds 1 but reaches far beyond it says neither: the runs were too few to
tell. Called level there, the same two models come out level in one comparison and apart
in the next, as the machine's noise moves the interval's ends about 1. So once every
planned run is done, each model left undecided against the winner or the loser (in each
scenario and repeat) is measured again with that end, side by side: two fresh servers,
one bench (or wrk) run whose windows alternate between them (``testbed bench --versus``,
``testbed wrk --versus``, :func:`testbed.compare.runs.versus_sample`), so that a slow
spell of the machine, which moves one model's windows by 10-25% from one half second to
the next, falls on both. The ratio within each pair of windows is then
steadier than either figure, and the interval of those ratios decides the two
(:func:`testbed.stats.paired_ratio_interval`). In four runs of 20 pairs of select and
reuseport on 2026-12-02, the logarithms of the pair's two windows correlated 0.1-0.7;
the interval of the pairs' ratio left out 1 in all four (1.03-1.14, 1.05-1.22, 1.03-1.17,
1.005-1.09), that of the same windows taken as two samples in two (0.98-1.17,
1.03-1.24, 1.02-1.15, 1.00-1.11).

Up to :data:`MAX_ROUNDS` rounds, the pairs of each adding to the last's, and only while
the comparison's budget allows (the first round before the retakes, the others after
them: :mod:`testbed.compare.afterwards`). Looking again at data that did not decide makes
"apart" a little more likely by chance than its 5% (two looks instead of one); the rounds
are few, and the report names the models that had them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from testbed.compare.plan import ComparisonPlan, PlannedRun

if TYPE_CHECKING:
    from testbed.reporting.data import Results

#: Settling rounds per scenario and repeat, at most.
MAX_ROUNDS = 2


def _group(run: PlannedRun) -> tuple[str, int]:
    return run.scenario.name, run.repeat


def settling_runs(plan: ComparisonPlan, index: int, records: list[dict[str, Any]],
                  elapsed: float, overhead: float) -> list[PlannedRun]:
    """The runs to take after ``plan.runs[index]``, just done: when it is the last one so
    far, a settling round of every scenario and repeat whose records leave some models
    undecided (each at most MAX_ROUNDS times): one side-by-side run (``versus``) of each
    undecided pair; none otherwise. With ``plan.budget``, only as many of them as fit in
    it after ``elapsed`` seconds (:meth:`ComparisonPlan.fitting`), in order (the pairs
    of the winner before those of the loser).

    The rounds come after every scenario, not after their own: the preset's budget is
    spent by then, and what is left of it is known, not estimated; and a bench sample is
    taken on a fresh server whenever it is taken."""
    if index != len(plan.runs) - 1:
        return []
    extra: list[PlannedRun] = []
    groups: dict[tuple[str, int], list[PlannedRun]] = {}
    for run in plan.runs:
        groups.setdefault(_group(run), []).append(run)
    results = _read(plan, records)
    for runs in groups.values():
        first = runs[0]
        if not first.scenario.settles:
            continue
        settling = max(run.settling for run in runs) + 1
        if settling > MAX_ROUNDS:
            continue
        extra += [PlannedRun(end, first.scenario, first.repeat,
                             sample=first.scenario.capacity_samples - 1 + settling,
                             settling=settling, versus=model)
                  for end, model in undecided_pairs(results, first)]
    # the winners' pairs first, then the losers'
    return plan.fitting(extra, elapsed, overhead)


def _read(plan: ComparisonPlan, records: list[dict[str, Any]]) -> Results:
    """The records so far, read the way the report reads results.json."""
    from testbed.compare.runs import fold_records, results_document
    from testbed.reporting.data import parse

    return parse(results_document(plan, fold_records(plan, records), [],
                                  datetime.now().astimezone(), 0.0, False))


def undecided_pairs(results: Results, run: PlannedRun) -> list[tuple[str, str]]:
    """The (end, model) pairs that ``run``'s scenario and repeat leave undecided."""
    from testbed.reporting.sentences import undecided

    name, repeat = _group(run)
    scenario = next(info for info in results.scenarios if info.name == name)
    return undecided(results, scenario, [found for found in results.repeat_runs
                                         if found.scenario == name and found.repeat == repeat])
