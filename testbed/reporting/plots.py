"""PNG plots with matplotlib (Agg, no display): per scenario, a figure against the user count.

Three plots per scenario, one line per model: throughput (req/s), p99 latency
(ms) and the share of attempts served (%), against the users (or the offered
connections per second of the denial scenario). With repeats, each point is the
median and a bar spans its spread (min-max). Crashed runs keep the points they
measured, drawn dashed and labelled "(crashed)"; generator-bound points are
circled. A scenario measured with ``testbed bench`` also gets a bar chart of the
server's CPU per request, one bar per model (its spread over the bench's samples),
and, if the bench ran pipelined, that CPU against the pipeline depth; the scale scenario
has its own two (:mod:`testbed.reporting.scale_plots`). Figures are built with
``matplotlib.figure.Figure`` directly, so no global pyplot state or GUI backend
is involved.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402 - after choosing the backend
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

from testbed.reporting.data import Results, ScenarioInfo  # noqa: E402
from testbed.reporting.scale_data import scale_runs_for  # noqa: E402
from testbed.reporting.scale_plots import SCALE_PLOTS, scale_plots  # noqa: E402


@dataclass(frozen=True)
class Kind:
    key: str  # Step.value() key
    slug: str  # file name part
    label: str  # y axis label, with its unit
    title: str
    log_if_ratio: float | None  # log y axis when max/min reaches this


KINDS = (
    Kind("rps", "throughput", "throughput (requests/s)", "throughput", None),
    Kind("p99_ms", "p99", "p99 latency (ms)", "p99 latency", 20.0),
    Kind("served_pct", "served", "attempts served (%)", "share of attempts served", None),
)

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


@dataclass(frozen=True)
class Plot:
    scenario: str
    kind: str
    title: str
    filename: str
    png: bytes


def _footer(results: Results) -> str:
    meta = results.metadata
    machine = meta.get("machine") or {}
    cores = machine.get("cores")
    where = machine.get("hostname", "unknown host") + (f", {cores} cores" if cores else "")
    return f"testbed compare, {meta.get('date', 'undated')}, {where}"


def _figure(results: Results, scenario: ScenarioInfo, kind: Kind) -> Figure:
    figure = Figure(figsize=(8.0, 4.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    values: list[float] = []
    bound: list[tuple[int, float]] = []
    for index, run in enumerate(results.runs_for(scenario.name)):
        points = [(step.users, step.value(kind.key)) for step in sorted(run.steps,
                                                                         key=lambda s: s.users)]
        points = [(users, value) for users, value in points if value is not None]
        label = f"{run.model} (crashed)" if run.crashed else run.model
        if not points:
            axes.plot([], [], label=f"{label}: no data")
            continue
        xs, ys = zip(*points, strict=True)
        values += ys
        line = axes.plot(xs, ys, marker=MARKERS[index % len(MARKERS)], linewidth=1.8,
                         linestyle="--" if run.crashed else "-", label=label)[0]
        spans = [(step.users, value, found) for step in run.steps
                 if (value := step.value(kind.key)) is not None
                 and (found := step.range_of(kind.key)) is not None]
        if spans:
            sx, sy, sr = zip(*spans, strict=True)
            low = [y - r[0] for y, r in zip(sy, sr, strict=True)]
            high = [r[1] - y for y, r in zip(sy, sr, strict=True)]
            axes.errorbar(sx, sy, yerr=[low, high], fmt="none", ecolor=line.get_color(),
                          elinewidth=1.0, capsize=3, alpha=0.8)
        if kind.key == "rps":
            bound += [(step.users, step.rps) for step in run.steps
                      if step.generator_bound and step.rps is not None]
    if bound:  # drawn last, so its legend entry comes after the models
        bx, by = zip(*bound, strict=True)
        axes.scatter(bx, by, s=160, facecolors="none", edgecolors="grey", linewidths=1.2,
                     label="generator-bound", zorder=3)
    steps = sorted(set(scenario.steps))
    if len(steps) > 1 and steps[0] > 0 and steps[-1] / steps[0] >= 10:
        axes.set_xscale("log")
    axes.set_xticks(steps)
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.xaxis.set_minor_formatter(NullFormatter())
    positive = [value for value in values if value > 0]
    if kind.log_if_ratio and positive and max(positive) / min(positive) >= kind.log_if_ratio:
        axes.set_yscale("log")
        axes.yaxis.set_major_formatter(ScalarFormatter())
    elif kind.key == "served_pct":
        axes.set_ylim(0, 105)
    else:
        axes.set_ylim(bottom=0)
    axes.set_xlabel("offered new connections per second" if scenario.arrivals
                    else "concurrent users")
    axes.set_ylabel(kind.label)
    against = "offered rate" if scenario.arrivals else "users"
    axes.set_title(f"{scenario.name}: {kind.title} against {against}\n{scenario.title}",
                   fontsize=11)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    figure.text(0.005, 0.005, _footer(results), ha="left", va="bottom", fontsize=7, color="grey")
    return figure


def _capacity_figure(results: Results, scenario: ScenarioInfo) -> Figure | None:
    """Server CPU per request under testbed bench (or wrk), one bar per model, lower is better."""
    bars = [(run.model, run.capacity.cpu_us_per_request, run.capacity.range_of(
        "cpu_us_per_request")) for run in results.runs_for(scenario.name)
        if run.capacity is not None and run.capacity.cpu_us_per_request is not None]
    if not bars:
        return None
    figure = Figure(figsize=(8.0, 4.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    names, values, spans = zip(*bars, strict=True)
    low = [v - (r[0] if r else v) for v, r in zip(values, spans, strict=True)]
    high = [(r[1] if r else v) - v for v, r in zip(values, spans, strict=True)]
    axes.bar(range(len(names)), values, yerr=[low, high], capsize=4, color="#4c72b0")
    axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes.set_ylabel("server CPU per request (µs)")
    axes.set_ylim(bottom=0)
    generator = next(run.capacity.generator for run in results.runs_for(scenario.name)
                     if run.capacity is not None)
    axes.set_title(f"{scenario.name}: server CPU per request under testbed {generator} (lower is "
                   f"better)\n{scenario.title}", fontsize=11)
    axes.grid(True, axis="y", alpha=0.3)
    figure.text(0.005, 0.005, _footer(results), ha="left", va="bottom", fontsize=7, color="grey")
    return figure


def _pipeline_figure(results: Results, scenario: ScenarioInfo) -> Figure | None:
    """Server CPU per request against the requests in flight per connection, one line per
    model, both axes logarithmic; None for a scenario measured at one depth."""
    lines = []
    for run in results.runs_for(scenario.name):
        if run.capacity is None:
            continue
        points = [(depth.pipeline, depth.cpu_us_per_request) for depth in run.capacity.pipelines
                  if depth.ok and depth.cpu_us_per_request]
        if len(points) > 1:
            lines.append((run.model, points))
    if not lines:
        return None
    figure = Figure(figsize=(8.0, 4.2), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    depths = sorted({depth for _, points in lines for depth, _ in points})
    for index, (model, points) in enumerate(lines):
        xs, ys = zip(*sorted(points), strict=True)
        axes.plot(xs, ys, marker=MARKERS[index % len(MARKERS)], linewidth=1.8, label=model)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(depths)
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.yaxis.set_major_formatter(ScalarFormatter())
    axes.yaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("requests in flight per connection")
    axes.set_ylabel("server CPU per request (µs)")
    axes.set_title(f"{scenario.name}: server CPU per request against the pipeline depth\n"
                   f"{scenario.title}", fontsize=11)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    figure.text(0.005, 0.005, _footer(results), ha="left", va="bottom", fontsize=7, color="grey")
    return figure


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" text chunk: the PNG then carries no URL either.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _scale_plots(results: Results, scenario: ScenarioInfo) -> list[Plot]:
    """The scale scenario's plots (:mod:`testbed.reporting.scale_plots`), from run_scale's
    records: server memory and the active clients' p99 against the open connections."""
    records = {run.model: run.records for run in scale_runs_for(results, scenario.name)}
    return [Plot(scenario.name, filename.removesuffix(".png").rpartition("-")[2],
                 f"{scenario.name}: {SCALE_PLOTS[filename][2]}", filename, png)
            for filename, png in scale_plots(records, footer=_footer(results))]


def render(results: Results) -> list[Plot]:
    """Every plot of every scenario, as PNG bytes (no file written)."""
    plots = []
    for scenario in results.scenarios:
        if scenario.is_scale:  # its own two plots, memory and p99 against connections
            plots += _scale_plots(results, scenario)
            continue
        capacity = _capacity_figure(results, scenario)
        if capacity is not None:
            plots.append(Plot(scenario.name, "cpu", f"{scenario.name}: server CPU per request",
                              f"{scenario.name}-cpu.png", _png(capacity)))
        pipeline = _pipeline_figure(results, scenario)
        if pipeline is not None:
            plots.append(Plot(scenario.name, "pipeline",
                              f"{scenario.name}: server CPU per request against the pipeline "
                              "depth", f"{scenario.name}-pipeline.png", _png(pipeline)))
        for kind in KINDS:
            plots.append(Plot(scenario.name, kind.slug, f"{scenario.name}: {kind.title}",
                              f"{scenario.name}-{kind.slug}.png",
                              _png(_figure(results, scenario, kind))))
    return plots


def write(plots: list[Plot], directory: Path) -> list[Path]:
    paths = []
    for plot in plots:
        path = directory / plot.filename
        path.write_bytes(plot.png)
        paths.append(path)
    return paths
