"""The scale scenario's sentence, read off run_scale's records: which models held the
highest step with the active clients' p99 under :data:`P99_MS`, what an idle connection
cost them, and who failed at which step and how.

Nothing here is assumed from a model's name: "a thread per connection" is said of a
model whose server had at least as many threads as connections, "a process per
connection" likewise, and a failure is worded as run_scale recorded it (the server's own
log first, then the client's failure classes). :func:`outcome` is what the agreement
report compares between runs: the step each model held and the step it failed.
"""

from __future__ import annotations

from typing import Any

from testbed.reporting.data import Results, ScenarioInfo
from testbed.reporting.scale_data import ScaleRun, how, scale_runs_for
from testbed.reporting.scale_tables import figure_of, kib
from testbed.reporting.tables import human_ms

#: The active clients' p99 a model must keep at the highest step to be said to hold it well.
P99_MS = 20.0


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _per_connection(record: dict[str, Any]) -> str:
    """``, a thread per connection`` where the tree had as many threads (or processes)."""
    connections = record["connections"]
    if (record["processes"] or 0) >= connections:
        return ", a process per connection"
    if (record["threads"] or 0) >= connections:
        return ", a thread per connection"
    return ""


def _cost(pairs: list[tuple[ScaleRun, dict[str, Any]]], figure: str) -> str:
    """What an idle connection added to the server, from the cheapest to the dearest."""
    costs = sorted(((r["added_per_connection_bytes"], run.model, r) for run, r in pairs
                    if r["added_per_connection_bytes"] is not None), key=lambda c: c[0])
    if not costs:
        return ""
    low, high = costs[0], costs[-1]
    if len(costs) == 1 or kib(low[0]) == kib(high[0]):
        names = _names([model for _, model, _ in costs])
        return f", an idle connection adding {kib(low[0])} KiB of {figure} ({names})"
    return (f", an idle connection adding {kib(low[0])} KiB of {figure} ({low[1]}"
            f"{_per_connection(low[2])}) to {kib(high[0])} KiB ({high[1]}"
            f"{_per_connection(high[2])})")


def _p99s(records: list[dict[str, Any]]) -> str:
    values = sorted(r["p99_ms"] for r in records if r["p99_ms"] is not None)
    if not values:
        return ""
    if len(values) == 1:
        return f" ({human_ms(values[0])})"
    return f" ({human_ms(values[0])} to {human_ms(values[-1])})"


def _served(runs: list[ScaleRun]) -> str:
    """``; 1 of 10 active served`` where the failed steps left active connections unserved
    (``sequential 1 and prefork 2 of 10`` where they differ)."""
    counts = [(run.model, r["served_active"], r["active"]) for run in runs
              if (r := run.failed) is not None]
    if not counts or any(served is None or served >= active for _, served, active in counts):
        return ""
    if len({(served, active) for _, served, active in counts}) == 1:
        return f"; {counts[0][1]:,} of {counts[0][2]:,} active served"
    if len({active for _, _, active in counts}) == 1:
        return (f"; {_names([f'{model} {served:,}' for model, served, _ in counts])} of "
                f"{counts[0][2]:,} active served")
    return "; " + ", ".join(f"{served:,} of {active:,} ({model})"
                            for model, served, active in counts) + " active served"


def _failures(runs: list[ScaleRun]) -> list[str]:
    """``threadpool and sequential failed at 100 (no reply in time)``, the models that got
    furthest first; a model held short of its process limit says so."""
    groups: dict[tuple[int, str], list[ScaleRun]] = {}
    clauses = []
    for run in runs:
        failed, refused = run.failed, run.refused
        if failed is not None:
            groups.setdefault((failed["connections"], how(failed)), []).append(run)
        elif refused is not None:
            held = run.held
            prefix = f"{run.model} held {held['connections']:,} and" if held else run.model
            limit = str(refused["not_attempted"]).partition("beyond ")[2].partition(" ")[0]
            clauses.append(f"{prefix} was not attempted beyond {limit}: it would need "
                           f"{refused['connections']:,} processes")
    for (step, words), found in sorted(groups.items(), key=lambda item: -item[0][0]):
        held = {run.held["connections"] for run in found if run.held is not None}
        after = ""
        if len(held) == 1 and all(run.held is not None for run in found):
            after = f" after holding {held.pop():,}"
        clauses.append(f"{_names([run.model for run in found])} failed at {step:,} "
                       f"connections{after} ({words}{_served(found)})")
    return clauses


def scale_verdict(results: Results, scenario: ScenarioInfo) -> str:
    """The scale scenario's sentence."""
    runs = scale_runs_for(results, scenario.name)
    top = max(scenario.steps)
    active = (scenario.raw.get("scale") or {}).get("active", 10)
    head = f"{scenario.name}, {top:,} connections ({active} active):"
    crashed = [run for run in runs if run.crashed]
    measured = [run for run in runs if not run.crashed]
    crash = (f" {_names([run.model for run in crashed])} crashed during the run and "
             f"{'is' if len(crashed) == 1 else 'are'} not counted." if crashed else "")
    if not measured:
        return f"{head} no model completed a measurement.{crash}"
    figure = figure_of(measured)
    at_top = [(run, r) for run in measured if (r := run.at(top)) is not None and r["ok"]]
    fast = [(run, r) for run, r in at_top if r["p99_ms"] is not None and r["p99_ms"] < P99_MS]
    slow = [(run, r) for run, r in at_top if (run, r) not in fast]
    parts = []
    if fast:
        parts.append(f"{_names([run.model for run, _ in fast])} held all {top:,} with the "
                     f"active clients' p99 under {P99_MS:g} ms"
                     f"{_p99s([r for _, r in fast])}{_cost(fast, figure)}")
    for run, r in slow:
        parts.append(f"{run.model} held all {top:,}{' too' if fast else ''}, but its p99 was "
                     f"{human_ms(r['p99_ms'])}{_cost([(run, r)], figure)}")
    if not at_top:
        parts.append(f"no model held {top:,} connections")
    parts += _failures([run for run in measured if run.at(top) is None or not run.at(top)["ok"]])
    return f"{head} {'; '.join(parts)}.{crash}"


def outcome(results: Results, scenario: ScenarioInfo) -> dict[str, tuple[int | None, str]]:
    """Per model: the largest step held, and where and how it stopped (``–`` if it did not)."""
    found = {}
    for run in scale_runs_for(results, scenario.name):
        held = run.held["connections"] if run.held else None
        if run.crashed:
            found[run.model] = (held, "crashed")
        elif run.failed is not None:
            found[run.model] = (held, f"failed at {run.failed['connections']:,}")
        elif run.refused is not None:
            found[run.model] = (held, "process limit")
        else:
            found[run.model] = (held, "–")
    return found


def outcome_text(found: dict[str, tuple[int | None, str]]) -> str:
    """``held 10,000: select, asyncio; failed at 100: sequential``."""
    groups: dict[str, list[str]] = {}
    for model, (held, stop) in found.items():
        key = stop if stop != "–" else f"held {held:,}" if held else "held none"
        groups.setdefault(key, []).append(model)
    return "; ".join(f"{key}: {', '.join(models)}" for key, models in groups.items()) or "–"
