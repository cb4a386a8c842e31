"""One plain sentence per scenario, derived from the figures: the winner, the loser, and why.

The winner and the loser are ranked on the scenario's own figure at its
highest step (throughput; the share of attempts served for the denial
scenario; the server's CPU per request under ``testbed bench`` for the fast
one; p99 breaks ties). Models level with the winner or the loser are named
with them: level means that what was measured cannot tell them apart (their
spreads over the repeats overlap, or the 95% intervals of their counts do, or
they are within a tolerance: 10% of throughput, 2 points of share served, 20%
of CPU per request; CPU per request measured by 4 bench runs or more is told
apart by the 95% interval of the ratio of the runs instead, the interval of a rank
test). A figure the load generator limited never names a winner.
The "why" is read off the data, never assumed from a model's name: a
throughput that stays flat (or falls) while the users grow, the failure
classes of the attempts that were not served, clients that got no reply, the
connections the bench got served, the number of cores the server kept busy,
the p99 latency.
"""

from __future__ import annotations

from testbed.reporting.data import Capacity, Results, Run, ScenarioInfo, Step
from testbed.reporting.scale_sentences import scale_verdict
from testbed.reporting.tables import fmt, human_ms
from testbed.stats import paired_ratio_interval, ratio_interval

#: Winner and loser closer than this (relative) are called a tie.
CLOSE_RPS = 0.10
#: ... or closer than this many percentage points of attempts served.
CLOSE_SHARE_POINTS = 2.0
#: Models this close to the winner or the loser (relative throughput or CPU per request, or
#: points of share served) are level with it, as are those whose spreads over the repeats
#: overlap: differences within what one run varies from the next on a shared machine
#: do not rank models. CPU per request from a short bench run moves more than that: the
#: same model's median of three bench runs moved 8-19% between comparisons made minutes
#: apart on a quiet 2-core VM, so closer than 20% is level.
LEVEL_RPS, LEVEL_SHARE_POINTS, LEVEL_CPU = 0.10, 2.0, 0.20
#: With 4 bench runs or more each, two models' CPU per request are compared through the 95%
#: interval of the ratio of their runs (:func:`ratio_interval`, the interval of a two-sided
#: Mann-Whitney test): apart when it leaves out 1 (the runs tell them apart), however close
#: to 1 it lies; level when it holds 1. How far apart two models must be follows from how
#: much their own runs strayed, not from a fixed tolerance. An interval that holds 1 within
#: LEVEL_CPU_CLOSE of it shows them close (level, decided); one that holds 1 but reaches
#: beyond is undecided (level, until more runs say otherwise: the settling rounds). Until
#: 2026-12-03 an interval that left out 1 but lay within 10% of it was level too: a gap
#: near 10% (select and reuseport, 4-13% that day) then came out level in one comparison
#: and apart in the next, as its interval fell on one side of the line or the other,
#: where every one of those intervals said the same model used less CPU.
LEVEL_CPU_CLOSE = 0.10

Pair = tuple[Run, Step]


def _score(scenario: ScenarioInfo, run: Run, step: Step) -> float | None:
    """The scenario's deciding figure, higher is better (CPU per request negated)."""
    if scenario.metric == "served_share":
        return step.served_share
    if scenario.metric == "cpu_us_per_request":
        cpu = run.capacity.cpu_us_per_request if run.capacity else None
        return None if cpu is None else -cpu
    return step.rps


def _score_range(scenario: ScenarioInfo, run: Run, step: Step) -> tuple[float, float] | None:
    """The deciding figure's spread (min, max) over the repeats, as a score; None with a
    single repeat. For CPU per request, the spread of the repeats' medians: the spread of
    every bench sample (the tables show it) grows with the samples taken, and so would
    make more samples call more models level; a single repeat's medians are compared with
    the tolerance alone."""
    if scenario.metric == "cpu_us_per_request":
        found = run.capacity.repeat_spread.get("cpu_us_per_request") if run.capacity else None
        return None if found is None else (-found[1], -found[0])
    return step.range_of("served_share" if scenario.metric == "served_share" else "rps")


def _score_interval(scenario: ScenarioInfo, step: Step) -> tuple[float, float] | None:
    """The 95% counting interval of a window's share served or throughput (see
    :meth:`Step.interval`); None for CPU per request, whose samples give its spread."""
    if scenario.metric == "cpu_us_per_request":
        return None
    return step.interval("served_share" if scenario.metric == "served_share" else "rps")


def _overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def _primary(scenario: ScenarioInfo, pair: Pair) -> float:
    score = _score(scenario, *pair)
    return float("-inf") if score is None else score


def _clean(scenario: ScenarioInfo, pair: Pair) -> bool:
    """Every attempt served. Where throughput decides, a model that left clients waiting
    (any failed attempt) ranks below those that served them all, whatever its req/s;
    where CPU per request decides, likewise a model whose bench run had an error or left
    some of its connections unserved (saturated: one or two workers for ten connections)."""
    run, step = pair
    if scenario.metric == "served_share":
        return True
    if scenario.metric == "cpu_us_per_request":
        capacity = run.capacity
        return (capacity is not None and capacity.ok and not capacity.errors
                and not capacity.saturated and not _served_none(run))
    return step.failed == 0


def _bench_served(scenario: ScenarioInfo, pair: Pair) -> float:
    """Where CPU per request decides, the share of the bench's connections that got replies
    (1.0 where the generator does not say, as wrk): among saturated models, the one that
    served fewer ranks lower, whatever its CPU per request."""
    capacity = pair[0].capacity
    if (scenario.metric != "cpu_us_per_request" or capacity is None
            or capacity.served_connections is None or not capacity.connections):
        return 1.0
    return capacity.served_connections / capacity.connections


def _served_none(run: Run) -> bool:
    """The capacity run got no reply at all (a server whose queue idle connections filled):
    it has no CPU per request, and it ranks below every model that served."""
    return run.capacity is not None and run.capacity.rps == 0


def _rank_key(scenario: ScenarioInfo, pair: Pair) -> tuple[bool, float, float, float, float]:
    """Higher is better: no failures, the bench's connections served, the scenario's
    figure, throughput, a lower p99."""
    step = pair[1]
    p99 = step.p99_ms if step.p99_ms is not None else float("inf")
    return (_clean(scenario, pair), _bench_served(scenario, pair), _primary(scenario, pair),
            step.rps or 0.0, -p99)


def _side_by_side(x: Capacity, y: Capacity, a: str, b: str) -> list[tuple[float, float]]:
    """The pairs of windows settling rounds took of models a and b side by side (a's
    first), from a's record or else from b's."""
    return list(x.paired.get(b, ())) or [(that, this) for this, that in y.paired.get(a, ())]


def _cpu_interval(scenario: ScenarioInfo, a: Pair, b: Pair) -> tuple[float, float] | None:
    """The 95% interval of how many times b's bench runs' CPU per request is a's: from the
    windows a settling round took of the two side by side, where it took enough
    (:func:`paired_ratio_interval`: the machine's slow spells fell on both, and the
    interval of their ratio is the narrower for it), else from every bench run of each
    (:func:`ratio_interval`); None where the figure is not CPU per request or there are
    too few runs for either."""
    x, y = a[0].capacity, b[0].capacity
    if scenario.metric != "cpu_us_per_request" or x is None or y is None:
        return None
    side_by_side = paired_ratio_interval(_side_by_side(x, y, a[0].model, b[0].model))
    if side_by_side is not None:  # measured side by side: the steadier interval decides
        return side_by_side
    return ratio_interval(x.cpu_samples, y.cpu_samples)


def _interval_state(scenario: ScenarioInfo, a: Pair, b: Pair) -> str | None:
    """What the interval of the ratio of their bench runs says (see LEVEL_CPU_CLOSE):
    "apart" (it leaves out 1), "close" (it holds 1 and lies within LEVEL_CPU_CLOSE of it:
    level), or "undecided" (it holds 1 but reaches beyond: the runs cannot tell them apart,
    nor show them close; level, until more runs say otherwise); None where there is no
    interval."""
    interval = _cpu_interval(scenario, a, b)
    if interval is None:
        return None
    low, high = interval
    if not low <= 1 <= high:
        return "apart"
    if 1 / (1 + LEVEL_CPU_CLOSE) <= low and high <= 1 + LEVEL_CPU_CLOSE:
        return "close"
    return "undecided"


def _interval_level(scenario: ScenarioInfo, a: Pair, b: Pair) -> bool | None:
    """Level by the interval of the ratio of their bench runs; None where there is none."""
    state = _interval_state(scenario, a, b)
    return None if state is None else state != "apart"


def undecided(results: Results, scenario: ScenarioInfo, runs: list[Run]) -> list[tuple[str, str]]:
    """Of ``runs``, the winner (then the loser) and each model that its bench runs can
    neither call level with it nor apart from it (:func:`_interval_state`), as pairs
    (end, model): more bench runs of the two would decide, and ``testbed compare`` takes
    them side by side while its budget allows. Empty where CPU per request does not
    decide."""
    measured = _measured(results, scenario, runs)
    if scenario.metric != "cpu_us_per_request" or len(measured) < 2:
        return []
    ranked = _ranked(scenario, measured)
    chosen: list[tuple[str, str]] = []
    for end in (ranked[0], ranked[-1]):
        chosen += [(end[0].model, pair[0].model) for pair in ranked if pair[0] is not end[0]
                   and _level(scenario, end, pair)  # not told apart before the interval
                   and _interval_state(scenario, end, pair) == "undecided"
                   and (pair[0].model, end[0].model) not in chosen]
    return chosen


def _level(scenario: ScenarioInfo, a: Pair, b: Pair) -> bool:
    """Level: what was measured cannot tell them apart. For CPU per request from enough
    bench runs, the interval of the ratio of the runs says it (:func:`_interval_level`); otherwise their
    spreads over the repeats overlap, or the 95% intervals of their counts do (a window
    that served 360 replies could as well have served 400), or they are within the
    tolerance."""
    if _clean(scenario, a) != _clean(scenario, b):
        return False
    if _bench_served(scenario, a) != _bench_served(scenario, b):
        return False  # 1 of 10 connections served is not level with 2 of 10
    tested = _interval_level(scenario, a, b)
    if tested is not None:
        return tested
    if _overlap(_score_range(scenario, *a), _score_range(scenario, *b)):
        return True
    if _overlap(_score_interval(scenario, a[1]), _score_interval(scenario, b[1])):
        return True
    x, y = _primary(scenario, a), _primary(scenario, b)
    if x == y:
        return True
    if scenario.metric == "served_share":
        return abs(x - y) * 100 <= LEVEL_SHARE_POINTS
    tolerance = LEVEL_CPU if scenario.metric == "cpu_us_per_request" else LEVEL_RPS
    return abs(x - y) <= tolerance * max(abs(x), abs(y))


def _figure(scenario: ScenarioInfo, pair: Pair) -> str:
    run, step = pair
    if scenario.metric == "cpu_us_per_request":
        capacity = run.capacity
        if capacity is not None and _served_none(run):
            return f"no reply under testbed {capacity.generator} (0 req/s)"
        if capacity is None or capacity.cpu_us_per_request is None:
            return f"no CPU per request measured (testbed {capacity.generator if capacity else 'bench'})"
        return (f"{fmt('us', capacity.cpu_us_per_request)} µs of server CPU per request "
                f"({fmt('rps', capacity.rps)} req/s under testbed {capacity.generator})")
    if not step.requests:
        return "no attempt in the measured window"
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


def _clients(step: Step) -> str | None:
    """``2 of its 50 clients got any reply`` where persistent clients went unserved, or
    the replies went to few of them (Jain's index well under 1)."""
    if step.clients_users is None or step.clients_served is None:
        return None
    users, served = int(step.clients_users), int(step.clients_served)
    if served < users:
        return f"{served} of its {users} clients got any reply"
    if step.jain is not None and step.jain < 0.8:
        return f"its replies went to few clients (fairness {step.jain:.2f})"
    return None


def _why_loser(scenario: ScenarioInfo, results: Results, loser: Pair, winner: Pair,
               top: Pair) -> str:
    """Why ``loser`` came last, against ``winner`` (among models level at the top, the one
    with the lowest p99); the capacity's req/s against ``top``'s, the model whose figure
    the verdict quotes for the top."""
    run, step = loser
    w_run, w_step = winner
    parts: list[str] = []
    if scenario.metric == "cpu_us_per_request":
        capacity, best = run.capacity, top[0].capacity
        if capacity is not None and capacity.saturated:
            parts.append(f"under testbed bench it served {capacity.served_connections:g} of "
                         f"{capacity.connections:g} connections")
        if capacity is not None and best is not None and capacity.rps and best.rps:
            parts.append(f"{fmt('rps', capacity.rps)} req/s against {fmt('rps', best.rps)}")
    elif not step.requests:
        window = f" {round(step.window_s, 1):g} s" if step.window_s else ""
        return (f"at {scenario.at(step.users)} none of its clients attempted an exchange in the"
                f"{window} window")
    if scenario.metric == "rps":
        scaling = _scaling(run, step, winner)
        if scaling:
            parts.append(scaling)
    if (scenario.raw.get("work_ms") and step.cores_busy is not None
            and (w_step.cores_busy or 0) - step.cores_busy >= 0.3):
        cores = f" of {results.cores}" if results.cores else ""
        parts.append(f"it kept {step.cores_busy:.1f}{cores} cores busy against "
                     f"{(w_step.cores_busy or 0):.1f} for the winner")
    clients = _clients(step)
    if clients:
        parts.append(clients)
    if step.failed and step.requests:
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
    return "; ".join(parts) if parts else "no figure says more"


def _why_winner(scenario: ScenarioInfo, pair: Pair) -> str:
    run, step = pair
    parts = [f"p99 {human_ms(step.p99_ms)}"]
    if scenario.metric == "served_share":
        parts.insert(0, f"{fmt('rps', step.rps)} req/s")
    if scenario.metric == "cpu_us_per_request":
        parts[0] = f"p99 {human_ms(step.p99_ms)} under locust"
        if run.capacity is not None and run.capacity.client_bound:
            parts.append(f"the {run.capacity.generator} client was busy too, so its req/s "
                         "are a floor")
    if scenario.raw.get("work_ms") and step.cores_busy is not None:
        parts.append(f"{step.cores_busy:.1f} cores busy")
    return ", ".join(parts)


def _next_apart(scenario: ScenarioInfo, ranked: list[Pair]) -> str:
    """Where bench runs decide and the winner stands alone: how far behind the next model
    (not the loser) was, with the 95% interval of the ratio of their runs that set it
    apart."""
    if len(ranked) < 3 or not _clean(scenario, ranked[1]):
        return ""
    interval = _cpu_interval(scenario, ranked[0], ranked[1])
    best, second = ranked[0][0].capacity, ranked[1][0].capacity
    if interval is None or best is None or second is None \
            or not best.cpu_us_per_request or not second.cpu_us_per_request:
        return ""
    gap = second.cpu_us_per_request / best.cpu_us_per_request - 1
    paired = paired_ratio_interval(_side_by_side(best, second, ranked[0][0].model,
                                                 ranked[1][0].model)) is not None
    source = "windows side by side" if paired else "runs"
    return (f"; next came {ranked[1][0].model}, {gap:.0%} more CPU per request (95% "
            f"interval of the ratio of their {source}: {interval[0] - 1:.0%} to "
            f"{interval[1] - 1:.0%} more)")


def _close(scenario: ScenarioInfo, best: Pair, worst: Pair) -> bool:
    if _clean(scenario, best) != _clean(scenario, worst):
        return False
    if scenario.metric == "cpu_us_per_request":
        x, y = _score(scenario, *best), _score(scenario, *worst)
        return x is not None and y is not None and (x - y) < CLOSE_RPS * abs(x)
    b, w = best[1], worst[1]
    if not b.requests or not w.requests:
        return False
    if scenario.metric == "served_share":
        if b.served_share is None or w.served_share is None:
            return False
        return (b.served_share - w.served_share) * 100 < CLOSE_SHARE_POINTS
    if not b.rps or w.rps is None:
        return False
    return (b.rps - w.rps) / b.rps < CLOSE_RPS


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


def _measured(results: Results, scenario: ScenarioInfo, runs: list[Run]) -> list[Pair]:
    top = scenario.top
    pairs = [(run, step) for run in runs if not run.crashed and (step := run.at(top)) is not None]
    if scenario.metric == "cpu_us_per_request":
        pairs = [pair for pair in pairs
                 if _score(scenario, *pair) is not None or _served_none(pair[0])]
    return pairs


def _ranked(scenario: ScenarioInfo, pairs: list[Pair]) -> list[Pair]:
    return sorted(pairs, key=lambda pair: _rank_key(scenario, pair), reverse=True)


def _bound(scenario: ScenarioInfo, pair: Pair) -> bool:
    """The figure that decides was limited by the load generator: no verdict from it (CPU
    per request is not: it is the server's own, whoever set the pace)."""
    return scenario.metric != "cpu_us_per_request" and pair[1].generator_bound


def verdict(results: Results, scenario: ScenarioInfo) -> str:
    """The scenario's sentence: who won, who lost, and what in the figures says why."""
    top = scenario.top
    runs = results.runs_for(scenario.name)
    crashed = [run for run in runs if run.crashed]
    measured = _measured(results, scenario, runs)
    head = f"{scenario.name}, {scenario.at(top)}:"
    if not measured:
        return f"{head} no model completed a measurement.{_crash_clause(crashed)}"
    ranked = _ranked(scenario, measured)
    winner, loser = ranked[0], ranked[-1]
    if len(ranked) == 1:
        return (f"{head} only {winner[0].model} was measured: {_figure(scenario, winner)} "
                f"({_why_winner(scenario, winner)}).{_crash_clause(crashed)}")
    if _bound(scenario, winner):
        bound = [run for run, step in ranked if _bound(scenario, (run, step))]
        return (f"{head} no winner named: the load generator was the limit "
                f"({_names(bound)} generator-bound), so the figures measure it rather than "
                f"the servers; {_figure(scenario, loser)} for {loser[0].model} to "
                f"{_figure(scenario, winner)} for {winner[0].model}"
                f"{_p99_range(ranked)}.{_crash_clause(crashed)}")
    if _close(scenario, winner, loser):
        return (f"{head} no clear winner, every model within a few percent "
                f"({_figure(scenario, loser)} for {loser[0].model} to "
                f"{_figure(scenario, winner)} for {winner[0].model})"
                f"{_p99_range(ranked)}.{_crash_clause(crashed)}")
    level, trailing = _ends(scenario, ranked)
    trailers = [run for run, _ in trailing]
    if len(level) > 1:
        # Level on the scenario's figure: the lowest p99 among them leads.
        winner = min(level, key=lambda pair: (pair[1].p99_ms is None, pair[1].p99_ms or 0.0))
        extra = ", ".join(part for part in _why_winner(scenario, winner).split(", ")
                          if not part.startswith("p99 "))
        lead = (f"{_names([run for run, _ in level])} were level at the top with "
                f"{_figure(scenario, ranked[0])}, {winner[0].model} with the lowest p99 "
                f"({human_ms(winner[1].p99_ms)}{', ' + extra if extra else ''})")
    else:
        lead = (f"{winner[0].model} won with {_figure(scenario, winner)} "
                f"({_why_winner(scenario, winner)}){_next_apart(scenario, ranked)}")
    also = f" (as did {_names(trailers[1:])})" if len(trailers) > 1 else ""
    if scenario.metric == "rps":
        top_rps = max((step.rps or 0) for _, step in level) if len(level) > 1 else None
        faster = [(run, step) for run, step in ranked if not _clean(scenario, (run, step))
                  and (step.rps or 0) > (top_rps if top_rps is not None
                                         else winner[1].rps or 0) and run is not loser[0]]
        if faster:
            run, step = max(faster, key=lambda pair: pair[1].rps or 0.0)
            lead += (f"; {run.model} pushed more ({fmt('rps', step.rps)} req/s) but left "
                     f"clients waiting: {step.failed} attempts failed as {_failures(step)}")
    outran = [step for _, step in ranked if (step.rps or 0) < (loser[1].rps or 0)]
    if not trailing:
        last = (f"none came clearly last: {loser[0].model}, with {_figure(scenario, loser)}, "
                f"could not be told from {ranked[0][0].model}")
    elif scenario.metric == "rps" and not _clean(scenario, loser) and outran:
        last = (f"{loser[0].model} came last{also} despite {_figure(scenario, loser)}, as it "
                f"left clients waiting: {_why_loser(scenario, results, loser, winner, ranked[0])}")
    else:
        last = (f"{loser[0].model} came last{also} with {_figure(scenario, loser)}: "
                f"{_why_loser(scenario, results, loser, winner, ranked[0])}")
    return f"{head} {lead}; {last}.{_crash_clause(crashed)}"


def winner_and_loser(results: Results, scenario: ScenarioInfo,
                      runs: list[Run]) -> tuple[set[str], set[str]] | None:
    """The models a verdict over ``runs`` puts first (with those level with it) and last."""
    measured = _measured(results, scenario, runs)
    if len(measured) < 2:
        return None
    top, bottom = _ends(scenario, _ranked(scenario, measured))
    return {run.model for run, _ in top}, {run.model for run, _ in bottom}


def _ends(scenario: ScenarioInfo, ranked: list[Pair]) -> tuple[list[Pair], list[Pair]]:
    """The models a verdict puts first (the first of ``ranked`` and those level with it)
    and last (the last, then those level with it but not with the first; a model level
    with both ends is named at the top only). None last where the last itself is level
    with the first (their interval held 1, reaching beyond 10%, after every settling
    round): naming it at both ends would say both of one model."""
    first, last = ranked[0], ranked[-1]
    top = [pair for pair in ranked if _level(scenario, pair, first)]
    if any(run is last[0] for run, _ in top):
        return top, []
    return top, [pair for pair in ranked[::-1] if _level(scenario, pair, last)
                 and (pair[0] is last[0] or pair not in top)]


def stability(results: Results, scenario: ScenarioInfo) -> str | None:
    """One line on how the ranking held over the repeats: in how many of them the winner
    (and the loser) of the medians was first (last), alone or level; None without repeats."""
    repeats = sorted({run.repeat for run in results.repeat_runs
                      if run.scenario == scenario.name})
    if len(repeats) < 2:
        return None
    overall = winner_and_loser(results, scenario, results.runs_for(scenario.name))
    if overall is None:
        return None
    won = lost = 0
    for repeat in repeats:
        runs = [run for run in results.repeat_runs
                if run.scenario == scenario.name and run.repeat == repeat]
        found = winner_and_loser(results, scenario, runs)
        if found is None:
            continue
        won += bool(found[0] & overall[0])
        lost += bool(found[1] & overall[1])
    n = len(repeats)
    first = _names_of(sorted(overall[0]))
    if not overall[1]:
        return (f"{scenario.name}: over {n} repeats, the winner ({first}) was first in {won} "
                f"of {n}; none was clearly last.")
    last = _names_of(sorted(overall[1]))
    return (f"{scenario.name}: over {n} repeats, the winner ({first}) was first in {won} of "
            f"{n} and the loser ({last}) last in {lost} of {n}.")


def _names_of(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def verdicts(results: Results) -> list[tuple[str, str]]:
    """(scenario name, sentence) for every scenario, in order; with repeats, each sentence
    ends with how stable its ranking was."""
    out = []
    for scenario in results.scenarios:
        sentence = (scale_verdict(results, scenario) if scenario.is_scale
                    else verdict(results, scenario))
        held = stability(results, scenario)
        out.append((scenario.name, f"{sentence} {held.partition(': ')[2].capitalize()}"
                    if held else sentence))
    return out
