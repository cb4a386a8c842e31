"""The report's tables, built once from the results and rendered as text, Markdown or HTML.

Two tables per scenario: the summary at its highest step (one row per model,
the best value of each column marked) and every step (one row per model and
step). Numbers are formatted here and only here, so the terminal, report.md
and report.html always show the same figures. With repeats, a figure is the
median over the repeats followed by its spread: ``412 (398–430)``.

Which generator produced a figure is part of its column: the ``bench``
columns come from ``testbed bench`` (the lean closed loop), every other
figure from locust.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from testbed.reporting.data import Capacity, Results, Run, ScenarioInfo, Step

BEST = "*"  # marks the best value of a column in the terminal
GENERATOR_BOUND = "†"  # marks a throughput limited by the load generator
MISSING = "–"


def _decimals(value: float, thresholds: tuple[tuple[float, int], ...], last: int) -> int:
    for limit, decimals in thresholds:
        if abs(value) >= limit:
            return decimals
    return last


def fmt(kind: str, value: float | None) -> str:
    """One figure as every output shows it; ``–`` when it was not measured."""
    if value is None:
        return MISSING
    if kind in ("rps", "ms"):
        return f"{value:.{_decimals(value, ((100, 0), (10, 1)), 2)}f}"
    if kind == "pct":
        for decimals in (1, 2, 3, 4):  # never show 100.0 for an attempt that failed
            text = f"{value:.{decimals}f}"
            if value >= 100 or float(text) < 100:
                return text
        return text
    if kind == "cpu_s":
        return f"{value:.2f}"
    if kind == "us":
        return f"{value:.{_decimals(value, ((100, 0),), 1)}f}"
    if kind == "mib":
        return f"{value:.1f}"
    if kind == "jain":
        return f"{value:.2f}"
    if kind == "ratio":
        return f"{value:.1f}×"
    return f"{value:.0f}"  # counts


def human_ms(ms: float | None) -> str:
    """A latency for a sentence: ``4.9 s``, ``105 ms``, ``0.21 ms``."""
    if ms is None:
        return "unmeasured"
    if ms >= 1000:
        return f"{ms / 1000:.{1 if ms < 10000 else 0}f} s"
    return f"{fmt('ms', ms)} ms"


@dataclass(frozen=True)
class Column:
    key: str  # a Step.value() key, "bench:<Capacity field>", or "model" / "users" / "status"
    header: str
    kind: str = "count"
    better: str | None = None  # "high", "low" or None (not ranked)
    numeric: bool = True


@dataclass
class Entry:
    text: str
    value: float | None = None
    best: bool = False
    generator_bound: bool = False


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[list[Entry]]
    notes: list[str] = field(default_factory=list)
    crashed_rows: set[int] = field(default_factory=set)


MODEL = Column("model", "model", numeric=False)
USERS = Column("users", "users")
STATUS = Column("status", "status", numeric=False)


def _failure_columns(classes: list[str]) -> list[Column]:
    if not classes:
        return [Column("failed", "failures", better="low")]
    return [Column(f"failures:{kind}", kind, better="low") for kind in classes]


def capacity_generator(scenario: ScenarioInfo) -> str | None:
    """The testbed command that measured the scenario's capacity beside locust: ``bench``
    (the line scenarios), ``wrk`` (the HTTP ones), or None."""
    if scenario.raw.get("capacity"):
        return "bench"
    if scenario.raw.get("wrk"):
        return "wrk"
    return None


def _scenario_columns(scenario: ScenarioInfo, ranked: bool) -> list[Column]:
    """The columns a scenario adds: the bench's figures, the arrival rates, the clients."""
    high, low = ("high", "low") if ranked else (None, None)
    columns = []
    generator = capacity_generator(scenario)
    if generator is not None:
        columns += [Column("bench:cpu_us_per_request", f"{generator} µs/req", "us", low),
                    Column("bench:rps", f"{generator} req/s", "rps", high)]
        if generator == "bench":  # wrk does not say which of its connections got replies
            columns.append(Column("bench:served_connections", "bench conns served", "count",
                                  high))
    if scenario.arrivals:
        columns.append(Column("achieved_rate", "achieved conn/s", "rps"))
    elif scenario.raw.get("mode", "persistent") == "persistent":
        columns += [Column("clients_served", "clients served", "count", high),
                    Column("jain", "fairness", "jain", high)]
    return columns


def summary_columns(failure_classes: list[str],
                    scenario: ScenarioInfo | None = None) -> list[Column]:
    """The columns of a scenario's summary table, in reading order."""
    extra = _scenario_columns(scenario, ranked=True) if scenario is not None else []
    return [
        MODEL,
        *extra,
        Column("rps", "req/s", "rps", "high"),
        Column("p50_ms", "p50 ms", "ms", "low"),
        Column("p99_ms", "p99 ms", "ms", "low"),
        Column("served_pct", "served %", "pct", "high"),
        *_failure_columns(failure_classes),
        Column("cpu_s", "CPU s", "cpu_s", "low"),
        Column("cpu_us_per_request", "CPU µs/req", "us", "low"),
        Column("peak_rss_mib", "RSS MiB", "mib", "low"),
        Column("peak_threads", "threads", "count", "low"),
        Column("peak_processes", "procs", "count", "low"),
    ]


def step_columns(failure_classes: list[str],
                 scenario: ScenarioInfo | None = None) -> list[Column]:
    """Every figure of every step, for the per-step table."""
    extra = [column for column in _scenario_columns(scenario, ranked=False)
             if not column.key.startswith("bench:")] if scenario is not None else []
    users = USERS if scenario is None or not scenario.arrivals else Column("users", "conn/s")
    return [
        MODEL, users, *extra,
        Column("rps", "req/s", "rps"),
        Column("p50_ms", "p50 ms", "ms"),
        Column("p95_ms", "p95 ms", "ms"),
        Column("p99_ms", "p99 ms", "ms"),
        Column("max_ms", "max ms", "ms"),
        Column("requests", "attempts"),
        Column("served_pct", "served %", "pct"),
        *_failure_columns(failure_classes),
        Column("cpu_s", "CPU s", "cpu_s"),
        Column("cpu_us_per_request", "CPU µs/req", "us"),
        Column("peak_rss_mib", "RSS MiB", "mib"),
        Column("peak_threads", "threads"),
        Column("peak_processes", "procs"),
        Column("peak_fds", "fds"),
        STATUS,
    ]


def _entry(column: Column, step: Step | None, run: Run | None = None) -> Entry:
    source: Step | Capacity | None = step
    key = column.key
    if key.startswith("bench:"):
        source, key = (run.capacity if run is not None else None), key.partition(":")[2]
    value = None if source is None else source.value(key)
    text = fmt(column.kind, value)
    spread = None if source is None or value is None else source.range_of(key)
    if spread is not None:
        text += f" ({fmt(column.kind, spread[0])}–{fmt(column.kind, spread[1])})"
    entry = Entry(text, value)
    if column.key == "rps" and step is not None and step.generator_bound:
        entry.generator_bound = True
    return entry


def _mark_best(table: Table) -> None:
    """Mark the best shown value of each ranked column, unless every row shows the same."""
    for index, column in enumerate(table.columns):
        if column.better is None:
            continue
        shown = {row: float(fmt(column.kind, table.rows[row][index].value).rstrip("×"))
                 for row in range(len(table.rows))
                 if row not in table.crashed_rows and table.rows[row][index].value is not None}
        if len(shown) < 2 or len(set(shown.values())) < 2:
            continue
        best = (max if column.better == "high" else min)(shown.values())
        for row, value in shown.items():
            table.rows[row][index].best = value == best


def crash_note(run: Run) -> str:
    error = (run.error or "no error recorded").strip().splitlines()
    return f"{run.model} crashed: {error[0] if error else 'no error recorded'}"


def _generator_note(cells: list[str]) -> str:
    return (f"{GENERATOR_BOUND} generator-bound: locust was the limit (within 20% of its "
            f"measured ceiling, a worker's core busy, or arrivals short of the offered rate), "
            f"so the figure measures locust rather than the server ({', '.join(cells)})")


#: A run during which the host took at least this share of the machine's CPU time (steal)
#: is named under its scenario's table.
STEAL_NOTED = 0.05


def _steal_note(runs: list[Run]) -> str | None:
    """The runs whose host took STEAL_NOTED or more of the machine's CPU time, most first."""
    stolen = sorted(((run.host_steal, run.model) for run in runs
                     if run.host_steal is not None and run.host_steal >= STEAL_NOTED),
                    reverse=True)
    if not stolen:
        return None
    named = ", ".join(f"{model} ({share:.1%})" for share, model in stolen)
    return (f"host steal: the host took {STEAL_NOTED:.0%} or more of the machine's CPU time "
            f"while these were measured (the most in any repeat): {named}; their wall-clock "
            "figures (req/s, latency) are slowed by it")


def _retake_note(runs: list[Run], top: int, threshold: float | None) -> str | None:
    """The runs retaken because the host disturbed their top step, with its steal in the
    run set aside and in the one kept."""
    retaken = [run for run in runs if run.set_aside]
    if not retaken:
        return None

    def shown(share: float | None) -> str:
        return "–" if share is None else f"{share:.0%}"

    named = ", ".join(
        f"{run.model} ({', '.join(map(shown, run.set_aside))} → "
        f"{shown(step.host_steal if (step := run.at(top)) is not None else None)})"
        for run in retaken)
    took = f"{threshold:.0%} or more" if threshold is not None else "much"
    return (f"retaken: the host took {took} of the machine's CPU time in these runs' top "
            "step, so each was run once more on a fresh server and the calmer run is shown "
            f"(the host's share in the top step, set aside → shown): {named}")


def _settling_note(runs: list[Run]) -> str | None:
    """The models measured in settling rounds, and how many more capacity runs (testbed
    bench's or wrk's) each had."""
    settled = [run for run in runs if run.capacity is not None and run.capacity.settling_runs]
    if not settled:
        return None
    named = ", ".join(f"{run.model} ({run.capacity.settling_runs}"
                      + "".join(f"; beside {faced}, {len(pairs)} pairs of windows"
                                for faced, pairs in run.capacity.paired.items())
                      + ")" for run in settled)
    return ("settling rounds: once the planned runs were over, these had more capacity runs "
            "(how many, over every repeat), as their runs could neither call them level with "
            "the winner or the loser nor apart from it; a round measures the two side by side, "
            f"their windows alternating: {named}; their figures are over every run, and "
            "where there are pairs, the ratio within them decides the two")


def _source_notes(scenario: ScenarioInfo, repeats: int) -> list[str]:
    notes = []
    capacity = scenario.raw.get("capacity")
    if capacity:
        samples, windows = ((int(capacity.get("samples") or 1), int(capacity.get("windows") or 1))
                            if isinstance(capacity, dict) else (1, 1))
        taken = (f"{samples * windows} windows ({samples} runs on fresh servers, {windows} "
                 f"windows in a row each)" if windows > 1 else f"{samples} runs on fresh servers")
        each = (f"; each bench figure is the median of {taken}, then their spread (min–max)"
                if samples * windows > 1 else "")
        notes.append("bench columns: testbed bench (a lean closed loop that keeps the server "
                     "busy; its server CPU per request decides this scenario); the other "
                     f"columns: locust{each}")
    elif capacity_generator(scenario) == "wrk":
        decides = ("its server CPU per request decides this scenario"
                   if scenario.metric == "cpu_us_per_request" else "beside the locust figures")
        wrk = scenario.raw.get("wrk")
        windows = int(wrk.get("windows") or 1) if isinstance(wrk, dict) else 1
        each = (f"; each wrk figure is the median of {windows} windows in a row on that "
                "server, then their spread (min–max)" if windows > 1 else "")
        notes.append(f"wrk columns: testbed wrk on a fresh server (wrk, a C load generator "
                     f"that keeps the server busy; {decides}){each}; the other columns: locust")
    if scenario.arrivals:
        notes.append("each step offers new connections at a rate (conn/s, Poisson arrivals); "
                     "achieved: the rate locust made")
    elif scenario.raw.get("mode", "persistent") == "persistent":
        notes.append("clients served: users that got at least one reply; fairness: Jain's "
                     "index of the replies per user (1.00 even, 1/N one user got them all)")
    if repeats > 1:
        notes.append(f"each figure: the median of {repeats} repeats, then its spread (min–max)")
    return notes


def summary_table(results: Results, scenario: ScenarioInfo) -> Table:
    """One row per model at the scenario's highest user count, best values marked."""
    top = scenario.top
    columns = summary_columns(results.failure_classes(scenario.name, top), scenario)
    table = Table(f"{scenario.name} at {scenario.at(top)}", columns, [])
    bound: list[str] = []
    runs = results.runs_for(scenario.name)
    for run in runs:
        step = run.at(top)
        if run.crashed:
            table.crashed_rows.add(len(table.rows))
            table.rows.append([Entry(run.model), *(Entry("crashed" if column.key == "rps"
                                                         else MISSING) for column in columns[1:])])
            table.notes.append(crash_note(run))
            continue
        table.rows.append([Entry(run.model),
                           *(_entry(column, step, run) for column in columns[1:])])
        if step is not None and step.generator_bound:
            bound.append(run.model)
    _mark_best(table)
    table.notes.insert(0, f"{BEST} best in its column (highest req/s, served %, clients "
                          "served and fairness, lowest otherwise); unmarked when every model "
                          "shows the same")
    if bound:
        table.notes.insert(1, _generator_note(bound))
    stolen = _steal_note(runs)
    if stolen:
        table.notes.append(stolen)
    table.notes += _source_notes(scenario, results.repeats)
    retaken = _retake_note(runs, scenario.top, results.retake_steal)
    if retaken:
        table.notes.append(retaken)
    settled = _settling_note(runs)
    if settled:
        table.notes.append(settled)
    return table


def pipeline_table(results: Results, scenario: ScenarioInfo) -> Table | None:
    """Server CPU per request under testbed bench at each pipeline depth, one row per model,
    and how many times more requests a CPU second served at the deepest than at 1; None
    for a scenario measured at one depth."""
    depths = sorted({depth.pipeline for run in results.runs_for(scenario.name)
                     if run.capacity is not None for depth in run.capacity.pipelines})
    if len(depths) < 2:
        return None
    columns = [MODEL, *(Column(f"pipeline:{depth}", f"{depth} in flight µs/req", "us", "low")
                        for depth in depths),
               Column("gain", f"req per CPU s, {depths[-1]} vs {depths[0]}", "ratio", "high")]
    table = Table(f"{scenario.name}, server CPU per request against the requests in flight "
                  "per connection", columns, [])
    for run in results.runs_for(scenario.name):
        capacity = run.capacity
        if capacity is None or not capacity.pipelines:
            continue
        cpu = [d.cpu_us_per_request if (d := capacity.at_depth(depth)) is not None and d.ok
               else None for depth in depths]
        gain = cpu[0] / cpu[-1] if cpu[0] and cpu[-1] else None
        table.rows.append([Entry(run.model), *(Entry(fmt("us", value), value) for value in cpu),
                           Entry(fmt("ratio", gain), gain)])
    _mark_best(table)
    table.notes = [f"{BEST} best in its column", "testbed bench with --pipeline K: K requests "
                   "written at once on each of its connections, every reply verified in order; "
                   "the drop from one depth to the next is the cost of the wake-ups the "
                   "deeper pipeline saves"]
    return table


def step_table(results: Results, scenario: ScenarioInfo) -> Table:
    """One row per model and user count; crashed runs keep the steps they measured."""
    columns = step_columns(results.failure_classes(scenario.name), scenario)
    table = Table(f"{scenario.name}, every step", columns, [])
    bound: list[str] = []
    for run in results.runs_for(scenario.name):
        users = sorted(set(scenario.steps) | {step.users for step in run.steps})
        for count in users:
            step = run.at(count)
            status = "crashed" if run.crashed else ("ok" if step is not None else "not measured")
            row = [Entry(run.model), Entry(str(count), float(count)),
                   *(_entry(column, step) for column in columns[2:-1]), Entry(status)]
            if run.crashed:
                table.crashed_rows.add(len(table.rows))
            table.rows.append(row)
            if step is not None and step.generator_bound:
                bound.append(f"{run.model} at {scenario.at(count)}")
    if bound:
        table.notes.append(_generator_note(bound))
    return table


def scenario_tables(results: Results, scenario: ScenarioInfo) -> tuple[str, Table, Table]:
    """A scenario's two tables and the heading of the first: its summary at the highest
    step and every step; for the scale scenario, the largest step each model held and every
    step (:mod:`testbed.reporting.scale_tables`)."""
    if scenario.is_scale:
        from testbed.reporting import scale_tables  # it builds on this module

        return ("The largest step each model held", scale_tables.held_table(results, scenario),
                scale_tables.step_table(results, scenario))
    return (f"At {scenario.at(scenario.top)}", summary_table(results, scenario),
            step_table(results, scenario))


def display_width(text: str) -> int:
    return sum(0 if unicodedata.combining(ch) else 1 for ch in text)


def cell_text(entry: Entry, best_marker: str = BEST) -> str:
    """An entry as plain text: its figure, then the generator-bound and best markers."""
    text = entry.text
    if entry.generator_bound:
        text += GENERATOR_BOUND
    if entry.best:
        text += best_marker
    return text


def render_text(table: Table) -> str:
    """An aligned plain-text table (numbers right-aligned) with its notes below it."""
    grid = [[column.header for column in table.columns]]
    grid += [[cell_text(entry) for entry in row] for row in table.rows]
    widths = [max(display_width(line[i]) for line in grid) for i in range(len(table.columns))]

    def line(cells: list[str]) -> str:
        parts = []
        for cell, width, column in zip(cells, widths, table.columns, strict=True):
            pad = " " * (width - display_width(cell))
            parts.append(pad + cell if column.numeric else cell + pad)
        return "  ".join(parts).rstrip()

    out = [table.title, line(grid[0]), "  ".join("-" * width for width in widths)]
    out += [line(row) for row in grid[1:]]
    out += [f"  {note}" for note in table.notes]
    return "\n".join(out)
