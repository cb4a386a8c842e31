"""One plain sentence per scenario, derived from the figures: the winner, the loser, and why.

The winner and the loser are ranked on the scenario's own figure at its
highest user count (throughput, or for the denial scenario the share of
attempts served; p99 breaks ties). Models level with the winner or the loser
are named with them. The "why" is read off the data, never assumed from a
model's name: a throughput that stays flat (or falls) while the users grow,
the failure classes of the attempts that were not served, clients that got
nothing at all within the window, the number of cores the server kept busy,
the p99 latency, the generator-bound flag.
"""

from __future__ import annotations

from testbed.reporting.data import Results, Run, ScenarioInfo, Step
from testbed.reporting.tables import fmt, human_ms

#: Winner and loser closer than this (relative) are called a tie.
CLOSE_RPS = 0.10
#: ... or closer than this many percentage points of attempts served.
CLOSE_SHARE_POINTS = 2.0
#: Models this close (relative throughput, or points of share) to the winner or loser are level.
LEVEL_RPS, LEVEL_SHARE_POINTS = 0.02, 0.5

Pair = tuple[Run, Step]


def _primary(scenario: ScenarioInfo, step: Step) -> float:
    if scenario.metric == "served_share":
        return step.served_share if step.served_share is not None else 0.0
    return step.rps if step.rps is not None else 0.0


def _clean(scenario: ScenarioInfo, step: Step) -> bool:
    """Every attempt served. Where throughput decides, a model that left clients waiting
    (any failed attempt) ranks below those that served them all, whatever its req/s."""
    return scenario.metric == "served_share" or step.failed == 0


def _rank_key(scenario: ScenarioInfo, step: Step) -> tuple[bool, float, float, float]:
    """Higher is better: no failures, the scenario's figure, throughput, a lower p99."""
    p99 = step.p99_ms if step.p99_ms is not None else float("inf")
    return (_clean(scenario, step), _primary(scenario, step), step.rps or 0.0, -p99)


def _level(scenario: ScenarioInfo, a: Step, b: Step) -> bool:
    if _clean(scenario, a) != _clean(scenario, b):
        return False
    x, y = _primary(scenario, a), _primary(scenario, b)
    if scenario.metric == "served_share":
        return abs(x - y) * 100 <= LEVEL_SHARE_POINTS
    return abs(x - y) <= LEVEL_RPS * max(x, y) or x == y


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


def _names(runs: list[Run]) -> str:
    names = [run.model for run in runs]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _scaling(run: Run, step: Step, winner: Pair) -> str | None:
    """Throughput that stayed flat, or fell, while the users grew at least 5-fold."""
    first = min(run.steps, key=lambda s: s.users, default=None)
    if first is None or first.users <= 0 or not first.rps or not step.rps:
        return None
    if step.users < 5 * first.users or step.rps > 1.5 * first.rps:
        return None
    w_run, w_step = winner
    w_first = min(w_run.steps, key=lambda s: s.users)
    if not w_first.rps or (w_step.rps or 0) < 2 * w_first.rps:
        return None  # only telling if the winner did scale
    peak = max(run.steps, key=lambda s: s.rps or 0)
    if peak.users < step.users and (peak.rps or 0) > 1.5 * first.rps and step.rps < 0.67 * peak.rps:
        return (f"its throughput peaked at {fmt('rps', peak.rps)} req/s with {peak.users} users, "
                f"then fell to {fmt('rps', step.rps)} req/s with {step.users}")
    span = (f"from {first.users} to {step.users} users "
            f"({fmt('rps', first.rps)} → {fmt('rps', step.rps)} req/s)")
    if step.rps < 0.67 * first.rps:
        return f"its throughput fell {span}"
    return f"its throughput stayed flat {span}, as if it served one client at a time"


def _why_loser(scenario: ScenarioInfo, results: Results, loser: Pair, winner: Pair) -> str:
    run, step = loser
    w_step = winner[1]
    if not step.requests:
        window = f" {round(step.window_s, 1):g} s" if step.window_s else ""
        return (f"at {step.users} users none of its clients finished an exchange within the"
                f"{window} window, they were all still waiting")
    parts: list[str] = []
    scaling = _scaling(run, step, winner)
    if scaling:
        parts.append(scaling)
    if (scenario.raw.get("work_ms") and step.cores_busy is not None
            and (w_step.cores_busy or 0) - step.cores_busy >= 0.3):
        cores = f" of {results.cores}" if results.cores else ""
        parts.append(f"it kept {step.cores_busy:.1f}{cores} cores busy against "
                     f"{(w_step.cores_busy or 0):.1f} for the winner")
    if step.failed:
        if not step.served:
            parts.append(f"every attempt failed, as {_failures(step)}")
        elif scenario.metric == "served_share":
            parts.append(f"the other attempts failed as {_failures(step)}")
        else:
            pct = fmt("pct", (step.served_share or 0.0) * 100)
            parts.append(f"it served {pct}% of attempts and the rest failed as {_failures(step)}")
    if step.p99_ms is not None:
        if parts:
            parts.append(f"p99 {human_ms(step.p99_ms)}")
        else:
            parts.append(f"p99 {human_ms(step.p99_ms)} against {human_ms(w_step.p99_ms)}")
            if step.cpu_us_per_request is not None and w_step.cpu_us_per_request is not None:
                parts.append(f"{fmt('us', step.cpu_us_per_request)} µs of server CPU per "
                             f"request against {fmt('us', w_step.cpu_us_per_request)}")
    return "; ".join(parts) if parts else "no figure says more"


def _why_winner(scenario: ScenarioInfo, step: Step) -> str:
    parts = [f"p99 {human_ms(step.p99_ms)}"]
    if scenario.metric == "served_share":
        parts.insert(0, f"{fmt('rps', step.rps)} req/s")
    if scenario.raw.get("work_ms") and step.cores_busy is not None:
        parts.append(f"{step.cores_busy:.1f} cores busy")
    if step.generator_bound:
        parts.append("generator-bound, so the server may do better still")
    return ", ".join(parts)


def _close(scenario: ScenarioInfo, best: Step, worst: Step) -> bool:
    if not best.requests or not worst.requests or _clean(scenario, best) != _clean(scenario,
                                                                                   worst):
        return False
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
    return (f" {_names(crashed)} crashed during the run and "
            f"{'is' if len(crashed) == 1 else 'are'} not ranked.")


def _p99_range(ranked: list[Pair]) -> str:
    values = [step.p99_ms for _, step in ranked if step.p99_ms is not None]
    if not values:
        return ""
    return f"; p99 from {human_ms(min(values))} to {human_ms(max(values))}"


#: The costliest server per request is named only this much above the leanest (relative).
CLEAR_CPU = 0.15


def _cpu_clause(scenario: ScenarioInfo, ranked: list[Pair], said: str) -> str:
    """Where requests neither wait nor compute, the leanest and the costliest server per
    request: with a load generator that cannot saturate the servers, throughput ties while
    this still tells the models apart. Not when they are close, nor when ``said`` (the
    sentence so far) already compared the only two."""
    if scenario.metric != "rps" or scenario.raw.get("delay") or scenario.raw.get("work_ms"):
        return ""
    costs = sorted((step.cpu_us_per_request, run.model) for run, step in ranked
                   if step.cpu_us_per_request is not None and step.served)
    if len(costs) < 2 or (len(costs) == 2 and "µs of server CPU per request" in said):
        return ""
    (low, lean), (high, costly) = costs[0], costs[-1]
    if high < (1 + CLEAR_CPU) * low:
        return ""
    return (f" Server CPU per request, which the load generator does not cap: least for "
            f"{lean} ({fmt('us', low)} µs), most for {costly} ({fmt('us', high)} µs).")


def verdict(results: Results, scenario: ScenarioInfo) -> str:
    """The scenario's sentence: who won, who lost, and what in the figures says why."""
    top = scenario.top
    runs = results.runs_for(scenario.name)
    crashed = [run for run in runs if run.crashed]
    measured = [(run, step) for run in runs
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
        bound = [run for run, step in ranked if step.generator_bound]
        if len(bound) == len(ranked):
            limit = ", all generator-bound: the load generator, not the servers, set the pace"
        elif bound:
            limit = f", {_names(bound)} generator-bound"
        else:
            limit = ""
        return (f"{head} no clear winner, every model within a few percent "
                f"({_figure(scenario, loser[1])} for {loser[0].model} to "
                f"{_figure(scenario, winner[1])} for {winner[0].model}){limit}"
                f"{_p99_range(ranked)}.{_crash_clause(crashed)}{_cpu_clause(scenario, ranked, '')}")
    level = [(run, step) for run, step in ranked if _level(scenario, step, winner[1])]
    trailers = [run for run, step in ranked[::-1] if _level(scenario, step, loser[1])]
    if len(level) > 1:
        # Level on the scenario's figure: the lowest p99 among them leads.
        winner = min(level, key=lambda pair: (pair[1].p99_ms is None, pair[1].p99_ms or 0.0))
        extra = _why_winner(scenario, winner[1]).partition(", ")[2]
        lead = (f"{_names([run for run, _ in level])} were level at the top with "
                f"{_figure(scenario, ranked[0][1])}, {winner[0].model} with the lowest p99 "
                f"({human_ms(winner[1].p99_ms)}{', ' + extra if extra else ''})")
    else:
        lead = (f"{winner[0].model} won with {_figure(scenario, winner[1])} "
                f"({_why_winner(scenario, winner[1])})")
    also = f" (as did {_names(trailers[1:])})" if len(trailers) > 1 else ""
    faster = [(run, step) for run, step in ranked if not _clean(scenario, step)
              and (step.rps or 0) > (winner[1].rps or 0) and run is not loser[0]]
    if faster:
        run, step = max(faster, key=lambda pair: pair[1].rps or 0.0)
        lead += (f"; {run.model} pushed more ({fmt('rps', step.rps)} req/s) but left clients "
                 f"waiting: {step.failed} attempts failed as {_failures(step)}")
    outran = [step for _, step in ranked if (step.rps or 0) < (loser[1].rps or 0)]
    if not _clean(scenario, loser[1]) and outran:
        last = (f"{loser[0].model} came last{also} despite {_figure(scenario, loser[1])}, as it "
                f"left clients waiting: {_why_loser(scenario, results, loser, winner)}")
    else:
        last = (f"{loser[0].model} came last{also} with {_figure(scenario, loser[1])}: "
                f"{_why_loser(scenario, results, loser, winner)}")
    said = f"{head} {lead}; {last}.{_crash_clause(crashed)}"
    return said + _cpu_clause(scenario, ranked, said)


def verdicts(results: Results) -> list[tuple[str, str]]:
    """(scenario name, sentence) for every scenario, in order."""
    return [(scenario.name, verdict(results, scenario)) for scenario in results.scenarios]
