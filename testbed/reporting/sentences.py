"""One plain sentence per scenario, derived from the figures: the winner, the loser, and why.

The winner and the loser are ranked on the scenario's own figure at its
highest user count (throughput, or for the denial scenario the share of
attempts served; p99 breaks ties). The "why" is read off the data, never
assumed from a model's name: a throughput that stays flat while the users
grow, the failure classes of the attempts that were not served, the number
of cores the server kept busy, the p99 latency, the generator-bound flag.
"""

from __future__ import annotations

from testbed.reporting.data import Results, Run, ScenarioInfo, Step
from testbed.reporting.tables import fmt, human_ms

#: Winner and loser closer than this (relative) are called a tie.
CLOSE_RPS = 0.10
#: ... or closer than this many percentage points of attempts served.
CLOSE_SHARE_POINTS = 2.0


def _primary(scenario: ScenarioInfo, step: Step) -> float:
    value = step.served_share if scenario.metric == "served_share" else step.rps
    return value if value is not None else float("-inf")


def _rank_key(scenario: ScenarioInfo, step: Step) -> tuple[float, float, float]:
    """Higher is better: the scenario's figure, then throughput, then a lower p99."""
    p99 = step.p99_ms if step.p99_ms is not None else float("inf")
    return (_primary(scenario, step), step.rps or 0.0, -p99)


def _figure(scenario: ScenarioInfo, step: Step) -> str:
    if not step.requests:
        return "no attempt that ended inside the measured window"
    if scenario.metric == "served_share":
        share = fmt("pct", None if step.served_share is None else step.served_share * 100)
        return f"{share}% of attempts served"
    return f"{fmt('rps', step.rps)} req/s"


def _failures(step: Step, limit: int = 2) -> str:
    """``connect_timeout (340) and io_timeout (52)``: the biggest failure classes."""
    top = sorted(((count, kind) for kind, count in step.failures.items() if count),
                 reverse=True)[:limit]
    return " and ".join(f"{kind} ({count})" for count, kind in top)


def _flat(run: Run, step: Step, winner: tuple[Run, Step] | None) -> str | None:
    """'throughput stayed flat' when users grew at least 5-fold and req/s did not follow."""
    first = min(run.steps, key=lambda s: s.users, default=None)
    if first is None or first.users <= 0 or not first.rps or not step.rps:
        return None
    if step.users < 5 * first.users or step.rps > 1.5 * first.rps:
        return None
    if winner is not None:  # only telling if the winner did scale
        w_run, w_step = winner
        w_first = min(w_run.steps, key=lambda s: s.users)
        if not w_first.rps or (w_step.rps or 0) < 2 * w_first.rps:
            return None
    return (f"its throughput stayed flat from {first.users} to {step.users} users "
            f"({fmt('rps', first.rps)} → {fmt('rps', step.rps)} req/s), as if it served one "
            f"client at a time")


def _cores(step: Step) -> str | None:
    busy = step.cores_busy
    return None if busy is None else f"{busy:.1f} cores busy"


def _why_loser(scenario: ScenarioInfo, results: Results, loser: tuple[Run, Step],
               winner: tuple[Run, Step]) -> str:
    run, step = loser
    w_step = winner[1]
    if not step.requests:
        window = f" {round(step.window_s, 1):g} s" if step.window_s else ""
        return (f"at {step.users} users none of its clients finished an exchange within the"
                f"{window} window, they were all still waiting")
    parts: list[str] = []
    flat = _flat(run, step, winner)
    if flat:
        parts.append(f"{flat}: p99 {human_ms(step.p99_ms)}")
    if (scenario.raw.get("work_ms") and step.cores_busy is not None
            and (w_step.cores_busy or 0) - step.cores_busy >= 0.3):
        cores = f" of {results.cores}" if results.cores else ""
        parts.append(f"it kept {step.cores_busy:.1f}{cores} cores busy against "
                     f"{(w_step.cores_busy or 0):.1f} for the winner")
    if step.served_share is not None and step.failed:
        pct = fmt("pct", step.served_share * 100)
        parts.append(f"it served {pct}% of attempts and the rest failed as {_failures(step)}")
    if not parts:
        parts.append(f"p99 {human_ms(step.p99_ms)} against {human_ms(w_step.p99_ms)}")
        if step.cpu_us_per_request is not None and w_step.cpu_us_per_request is not None:
            parts.append(f"{fmt('us', step.cpu_us_per_request)} µs of server CPU per request "
                         f"against {fmt('us', w_step.cpu_us_per_request)}")
    elif not flat:
        parts.append(f"p99 {human_ms(step.p99_ms)}")
    return "; ".join(parts)


def _why_winner(scenario: ScenarioInfo, step: Step) -> str:
    parts = [f"p99 {human_ms(step.p99_ms)}"]
    if scenario.metric == "served_share":
        parts.insert(0, f"{fmt('rps', step.rps)} req/s")
    if scenario.raw.get("work_ms"):
        cores = _cores(step)
        if cores:
            parts.append(cores)
    if step.generator_bound:
        parts.append("generator-bound, so the server may do better still")
    return ", ".join(parts)


def _close(scenario: ScenarioInfo, best: Step, worst: Step) -> bool:
    if scenario.metric == "served_share":
        if best.served_share is None or worst.served_share is None:
            return False
        return (best.served_share - worst.served_share) * 100 < CLOSE_SHARE_POINTS
    if not best.rps or worst.rps is None:
        return False
    return (best.rps - worst.rps) / best.rps < CLOSE_RPS


def _crash_clause(crashed: list[Run]) -> str:
    if not crashed:
        return ""
    names = ", ".join(run.model for run in crashed)
    return f" {names} crashed during the run and {'is' if len(crashed) == 1 else 'are'} not ranked."


def min_p99(ranked: list[tuple[Run, Step]]) -> float | None:
    return min((s.p99_ms for _, s in ranked if s.p99_ms is not None), default=None)


def max_p99(ranked: list[tuple[Run, Step]]) -> float | None:
    return max((s.p99_ms for _, s in ranked if s.p99_ms is not None), default=None)


def verdict(results: Results, scenario: ScenarioInfo) -> str:
    """The scenario's sentence: who won, who lost, and what in the figures says why."""
    top = scenario.top
    crashed = [run for run in results.runs_for(scenario.name) if run.crashed]
    measured = [(run, step) for run in results.runs_for(scenario.name)
                if not run.crashed and (step := run.at(top)) is not None]
    head = f"{scenario.name}, {top} users:"
    if not measured:
        return f"{head} no model completed a measurement.{_crash_clause(crashed)}"
    ranked = sorted(measured, key=lambda pair: _rank_key(scenario, pair[1]), reverse=True)
    winner, loser = ranked[0], ranked[-1]
    if len(ranked) == 1:
        return (f"{head} only {winner[0].model} was measured: {_figure(scenario, winner[1])} "
                f"({_why_winner(scenario, winner[1])}).{_crash_clause(crashed)}")
    if _close(scenario, winner[1], loser[1]):
        bound = [run.model for run, step in ranked if step.generator_bound]
        if len(bound) == len(ranked):
            limit = ", all generator-bound: the load generator, not the servers, set the pace"
        elif bound:
            limit = f", {', '.join(bound)} generator-bound"
        else:
            limit = ""
        return (f"{head} no clear winner, every model within a few percent "
                f"({_figure(scenario, loser[1])} for {loser[0].model} to "
                f"{_figure(scenario, winner[1])} for {winner[0].model}){limit}; p99 from "
                f"{human_ms(min_p99(ranked))} to {human_ms(max_p99(ranked))}."
                f"{_crash_clause(crashed)}")
    return (f"{head} {winner[0].model} won with {_figure(scenario, winner[1])} "
            f"({_why_winner(scenario, winner[1])}); {loser[0].model} came last with "
            f"{_figure(scenario, loser[1])}: {_why_loser(scenario, results, loser, winner)}."
            f"{_crash_clause(crashed)}")


def verdicts(results: Results) -> list[tuple[str, str]]:
    """(scenario name, sentence) for every scenario, in order."""
    return [(scenario.name, verdict(results, scenario)) for scenario in results.scenarios]
