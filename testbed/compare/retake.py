"""Retakes: the runs whose deciding step the host disturbed, measured once more.

On a shared machine the hypervisor takes some of the CPU time (steal, :mod:`testbed.steal`),
in spells of seconds to minutes. A locust step measured under such a spell is slowed as a
whole: in the quick sets of 2026-12-02 from 03:45 and 04:06, every verdict of the cpu and
denial scenarios that one run gave and the others did not came from a deciding step
measured while the host took 16-51% of the CPU time (threadpool's 84 req/s at 10 users
under 51%, against 177 and 187 in the other runs under 3% and 0.3%).

So once every planned run is done, each run whose deciding step (the scenario's top) was
measured while the host took :data:`RETAKE_STEAL` or more is run once more on a fresh
server, the most disturbed first, and under a budget only as many as fit; then the calmer
of the two, by that step's steal, is the run the report reads (:func:`fold_retakes`), and
the other stays in results.json under its ``set_aside``. The choice looks at the host's
steal, never at what the server did. The scenarios that the server's CPU per request
decides (under the bench or wrk) are left to the median of their windows and to the settling
rounds (:mod:`testbed.compare.settle`); :mod:`testbed.compare.afterwards` sets the order
of the two.
"""

from __future__ import annotations

from typing import Any

from testbed.compare.plan import ComparisonPlan, PlannedRun
from testbed.compare.scenarios import Scenario

#: A deciding step measured while the host took this share of the CPU time or more is
#: taken again. 10%, not 15% as at first: in the quick set of 2026-12-02 14:17, a step
#: whose server uses one core ran 12-20% slow under 10-14% of the machine's CPU time
#: stolen (sequential's cpu, 148 req/s at 10 users under 12.8%, against 188 and 181 under
#: 0.0% and 1.3%), as the host's spells fall on one core more than the other, and that
#: one step changed cpu's loser; under 8% the same steps ran 0-7% slow.
RETAKE_STEAL = 0.10


def retaken(scenario: Scenario) -> bool:
    """Whether the scenario's runs may be retaken: the figure that decides it (its
    ``metric``) is a locust step's, not the server's CPU per request under the bench or
    wrk, nor the scale scenario's connections held."""
    return scenario.metric in ("rps", "served_share")


def top_steal(scenario_steps: tuple[int, ...], record: dict[str, Any]) -> float | None:
    """The host's share of the CPU time in the record's top step, if it was counted."""
    top = max(scenario_steps)
    for found in (record.get("summary") or {}).get("steps") or ():
        if found.get("users") == top:
            share = found.get("host_steal")
            return float(share) if isinstance(share, (int, float)) else None
    return None


def retakes(plan: ComparisonPlan, index: int, records: list[dict[str, Any]],
            elapsed: float, overhead: float) -> list[PlannedRun]:
    """The runs to take after ``plan.runs[index]``, just done: when it is the last one so
    far and nothing was retaken yet, one more run of each disturbed run (most steal
    first) that fits in the budget; none otherwise."""
    if index != len(plan.runs) - 1 or any(run.retake for run in plan.runs):
        return []
    planned = {(run.model, run.scenario.name, run.repeat): run for run in plan.runs
               if not run.sample and retaken(run.scenario)}
    disturbed = []
    for record in records:
        run = planned.get((record["model"], record["scenario"], record.get("repeat", 0)))
        if run is None or record.get("status") != "ok":
            continue  # a crash is a result, not a disturbance
        share = top_steal(run.scenario.steps, record)
        if share is not None and share >= RETAKE_STEAL:
            disturbed.append((share, run))
    disturbed.sort(key=lambda found: -found[0])
    extra = [PlannedRun(run.model, run.scenario, run.repeat, retake=1) for _, run in disturbed]
    return plan.fitting(extra, elapsed, overhead)


def fold_retakes(plan: ComparisonPlan, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each retaken run and its retake as one record: the calmer by its top step's steal
    (the first run when they tie or one was not counted), with the other under
    ``set_aside`` (its ``top_host_steal`` beside it), in the place of the first run."""
    steps = {scenario.name: scenario.steps for scenario in plan.scenarios}
    again = {(r["model"], r["scenario"], r.get("repeat", 0)): r for r in records
             if r.get("retake")}
    folded = []
    for record in records:
        if record.get("retake"):
            continue
        key = (record["model"], record["scenario"], record.get("repeat", 0))
        retake = again.get(key)
        if retake is None:
            folded.append(record)
            continue
        first, second = (top_steal(steps[record["scenario"]], found)
                         for found in (record, retake))
        calmer = (second is not None and first is not None and second < first
                  and retake.get("status") == "ok")
        kept, other = (retake, record) if calmer else (record, retake)
        folded.append({**kept, "set_aside": [
            {**other, "top_host_steal": first if calmer else second}]})
    return folded
