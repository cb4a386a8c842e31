"""Do several comparisons agree? Their verdicts side by side, and how much each cell moved.

``testbed report --agree A/results.json B/results.json C/results.json`` reads
runs of the same comparison made one after another and prints, per scenario,
what each named first and last (a model, or the models level with it) and
whether they all agree; then, for every cell measured in all of them that was
neither generator-bound nor saturated (a step where the server failed some
attempts is past its capacity: there a small change in load moves the figure
a lot), the spread of its deciding figure between the runs, (max - min) /
median, and the share of cells under :data:`STEADY`; of the cells that moved more, those
whose runs' 95% counting intervals still overlap (a share served of a few dozen
attempts, a throughput of a few hundred replies: see ``Step.interval``) moved by no more
than their windows count by chance, and are said apart. A capacity figure (the server's CPU
per request) follows the machine's speed, which moves from one run to the next on a shared
VM, so each is also set against the same run's figure of one model (the first run's best)
and those ratios are counted apart: where the machine's speed moved every figure alike,
the ratios hold where the figures did not; where that model's own figure moved most, they
hold less. The scale scenario names no
first and last: its row shows, per run, the step each model held and where it stopped,
and they agree when every model held and stopped at the same steps.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from testbed.reporting import scale_sentences
from testbed.reporting.data import Results, ScenarioInfo
from testbed.reporting.sentences import winner_and_loser
from testbed.reporting.tables import capacity_generator, fmt

#: A cell that moves less than this between runs (relative to its median) holds.
STEADY = 0.10


@dataclass(frozen=True)
class Cell:
    scenario: str
    model: str
    step: float
    figure: str
    values: tuple[float, ...]
    #: the 95% intervals of the counts behind the figure in every run share a value: what
    #: it moved is what a window's count moves by chance (never for the bench's figures)
    within_counts: bool = False
    #: the share of the machine's CPU time its hypervisor took in the cell's window (or
    #: run), in each comparison (None where not counted): a cell that moved with it moved
    #: with the machine
    steal: tuple[float | None, ...] = ()

    @property
    def moved(self) -> float:
        """(max - min) / median of the figure over the runs."""
        middle = statistics.median(self.values)
        return (max(self.values) - min(self.values)) / middle if middle else 0.0


def _shown(figure: str, value: float) -> str:
    return f"{fmt('pct', value * 100)}%" if figure == "served_share" else fmt("us", value)


def _names(models: set[str]) -> str:
    return " = ".join(sorted(models)) if models else "–"


def _figure(scenario: ScenarioInfo) -> str:
    return {"served_share": "served_share", "cpu_us_per_request": "bench:cpu_us_per_request"
            }.get(scenario.metric, "rps")


def _value(results: Results, scenario: ScenarioInfo, model: str, users: float,
           figure: str) -> float | None:
    """The deciding figure of one cell in one run; None where it was not measured, or is
    generator-bound or saturated (failed attempts where throughput decides; connections
    the bench left unserved)."""
    run = results.run(model, scenario.name)
    if run is None or run.crashed:
        return None
    if figure.startswith("bench:"):  # the bench's own: whatever locust did beside it
        if run.capacity is None or run.capacity.saturated:
            return None
        return run.capacity.value(figure.partition(":")[2])
    step = run.at(users)
    if step is None or step.generator_bound or (step.failed and figure == "rps"):
        return None
    return step.value(figure)


def _within_counts(runs: list[Results], scenario: ScenarioInfo, model: str, users: float,
                   figure: str) -> bool:
    if figure.startswith("bench:"):
        return False
    intervals = []
    for results in runs:
        run = results.run(model, scenario.name)
        step = run.at(users) if run is not None else None
        interval = step.interval(figure) if step is not None else None
        if interval is None:
            return False
        intervals.append(interval)
    return max(low for low, _ in intervals) <= min(high for _, high in intervals)


def _steal(runs: list[Results], scenario: ScenarioInfo, model: str, users: float,
           figure: str) -> tuple[float | None, ...]:
    """The host's share of the CPU time in the cell's window in each comparison (the median
    over the bench's windows for its figure), or over its whole run where the window's was
    not counted (a results.json from before it was)."""
    shares = []
    for results in runs:
        run = results.run(model, scenario.name)
        if run is None:
            shares.append(None)
            continue
        if figure.startswith("bench:"):
            window = run.capacity.host_steal if run.capacity is not None else None
        else:
            window = step.host_steal if (step := run.at(users)) is not None else None
        shares.append(window if window is not None else run.host_steal)
    return tuple(shares)


def _steal_text(values: Sequence[float | None]) -> str:
    return ", ".join("–" if value is None else f"{value:.1%}" for value in values)


def cells(runs: list[Results]) -> list[Cell]:
    """Every (scenario, model, step) measured in all runs, neither generator-bound nor
    saturated, with its deciding figure in each run. The bench's figure is one cell per
    model (at the scenario's highest step): it does not depend on locust's users."""
    found = []
    first = runs[0]
    for scenario in first.scenarios:
        figure = _figure(scenario)
        for run in first.runs_for(scenario.name):
            steps = ([scenario.top] if figure.startswith("bench:")
                     else [step.users for step in run.steps])
            for users in steps:
                values = [_value(results, scenario, run.model, users, figure) for results in runs]
                if all(value is not None for value in values):
                    found.append(Cell(scenario.name, run.model, users, figure,
                                      tuple(v for v in values if v is not None),
                                      _within_counts(runs, scenario, run.model, users, figure),
                                      _steal(runs, scenario, run.model, users, figure)))
    return found


def _relative_lines(measured: list[Cell], named: Callable[[Cell], str]) -> list[str]:
    """Per scenario with a capacity figure: every other model's cell as the ratio of its
    figure to the same run's of the model with the lowest CPU per request in the first
    run, how many of those ratios held (beside how many of the figures did), and the one
    that moved most."""
    lines = []
    for scenario in dict.fromkeys(cell.scenario for cell in measured):
        absolute = [cell for cell in measured
                    if cell.scenario == scenario and cell.figure.startswith("bench:")]
        if len(absolute) < 2:
            continue
        reference = min(absolute, key=lambda cell: cell.values[0])
        ratios = [replace(cell, values=tuple(v / r for v, r in zip(cell.values,
                                                                    reference.values,
                                                                    strict=True)))
                  for cell in absolute if cell is not reference]
        held = sum(cell.moved < STEADY for cell in ratios)
        held_absolute = sum(cell.moved < STEADY for cell in absolute)
        lines.append(f"Set against {reference.model}'s in the same run, {held} of "
                     f"{len(ratios)} {scenario} {named(reference)} figures moved less than "
                     f"{STEADY:.0%} between the runs ({held_absolute} of {len(absolute)} as "
                     f"they were measured).")
        worst = max(ratios, key=lambda cell: cell.moved)
        if worst.moved >= STEADY:
            lines.append(f"- moved most against {reference.model}: {worst.model}, "
                         + ", ".join(f"{value:.2f}x" for value in worst.values)
                         + f" ({worst.moved:.0%})")
    return lines


def render(runs: list[Results], names: list[str]) -> str:
    """The verdicts side by side (a Markdown table), then how much the cells moved."""
    lines = ["| scenario | " + " | ".join(names) + " | agree |",
             "|---|" + "---|" * len(names) + "---|"]
    agreed = 0
    scenarios = [s for s in runs[0].scenarios
                 if all(any(o.name == s.name for o in r.scenarios) for r in runs)]
    for scenario in scenarios:
        if scenario.is_scale:  # the step each model held and where it stopped, not a rank
            outcomes = [scale_sentences.outcome(results, next(
                s for s in results.scenarios if s.name == scenario.name)) for results in runs]
            same = len({tuple(sorted(found.items())) for found in outcomes}) == 1
            agreed += same
            lines.append(f"| {scenario.name} | " + " | ".join(
                scale_sentences.outcome_text(found) for found in outcomes)
                + f" | {'yes' if same else 'no'} |")
            continue
        found = []
        for results in runs:
            info = next(s for s in results.scenarios if s.name == scenario.name)
            found.append(winner_and_loser(results, info, results.runs_for(info.name)))
        shown = [f"first {_names(f[0])}; last {_names(f[1])}" if f else "–" for f in found]
        same = all(f is not None for f in found) and len({(frozenset(f[0]), frozenset(f[1]))
                                                           for f in found if f}) == 1
        agreed += same
        lines.append(f"| {scenario.name} | " + " | ".join(shown) + f" | {'yes' if same else 'no'} |")
    measured = cells(runs)
    steady = [cell for cell in measured if cell.moved < STEADY]
    lines += ["", f"{agreed} of {len(scenarios)} scenarios name the same first and last models "
              f"in all {len(runs)} runs."]
    if measured:
        lines.append(f"{len(steady)} of {len(measured)} cells (neither generator-bound nor "
                     f"saturated) moved less than {STEADY:.0%} between the runs.")
        moving = [cell for cell in measured if cell.moved >= STEADY]
        chance = [cell for cell in moving if cell.within_counts]
        if chance:
            lines.append(f"Of the {len(moving)} that moved more, {len(chance)} moved within "
                         f"what their windows count by chance (the 95% intervals of their "
                         f"counts overlap in every run).")
        worst = sorted(moving, key=lambda cell: cell.moved, reverse=True)[:5]
        generators = {s.name: capacity_generator(s) or "bench" for s in runs[0].scenarios}

        def named(cell: Cell) -> str:  # the capacity's figure, by the tool that measured it
            return cell.figure.replace("bench:", f"{generators[cell.scenario]}:")

        lines += [f"- moved most: {cell.scenario} {cell.model} at {cell.step:g}, "
                  f"{named(cell)} {', '.join(_shown(cell.figure, v) for v in cell.values)} "
                  f"({cell.moved:.0%}{', within its counts' if cell.within_counts else ''}"
                  + (f"; host steal while measured {_steal_text(cell.steal)}"
                     if any(v is not None for v in cell.steal) else "") + ")"
                  for cell in worst]
        lines += _relative_lines(measured, named)
    overall = [results.host_steal for results in runs]
    if any(value is not None for value in overall):
        lines.append(f"The machine's hypervisor took {_steal_text(overall)} of its CPU time "
                     "over the runs (steal): where it differs, so does the machine's speed.")
    return "\n".join(lines)
