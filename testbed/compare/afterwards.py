"""What runs after the planned runs, while the budget allows: the first settling round,
then the retakes, then the other settling rounds.

Settling rounds (:mod:`testbed.compare.settle`) bench again, side by side, the models that
the bench's windows left undecided; retakes (:mod:`testbed.compare.retake`) run again
the locust runs whose top step the host disturbed. Under the quick preset's budget,
what is left after the planned runs often holds one of them, not both. In the quick set
of 2026-12-02 06:54, run 1, the retake of slow-io threadpool (its top step's steal 29%,
then 25%; threadpool is neither first nor last there) took the 6 s that a round of select
and reuseport needed, and fast called the two level on 12 windows each. A round (then
two or three bench runs of about 3 s; since 2026-12-02 22:30 a side-by-side run of about
11 s for each pair) aims at a verdict the runs left open: of the 13
quick runs of 2026-12-02 before that one that took rounds for select and reuseport, the
rounds set them apart in 9 (5 after the first, 4 after the second). A retake is of a run
the host disturbed, whether or not its model is near a verdict's end. So the first round
comes first.
"""

from __future__ import annotations

from typing import Any

from testbed.compare.plan import ComparisonPlan, PlannedRun
from testbed.compare.retake import retakes
from testbed.compare.settle import settling_runs


def runs_after(plan: ComparisonPlan, index: int, records: list[dict[str, Any]],
               elapsed: float, overhead: float) -> list[PlannedRun]:
    """The runs to take after ``plan.runs[index]``, just done, when it is the last one so
    far: the first settling round until one was taken, then the retakes until they were
    (:func:`retakes` takes them once), then the other settling rounds; each only as far
    as the budget allows after ``elapsed`` seconds. None once nothing more is needed or
    fits."""
    if index != len(plan.runs) - 1:
        return []
    settling = settling_runs(plan, index, records, elapsed, overhead)  # the next round
    if settling and not any(run.settling for run in plan.runs):
        return settling  # the first round
    return retakes(plan, index, records, elapsed, overhead) or settling
