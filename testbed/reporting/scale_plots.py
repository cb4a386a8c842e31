"""PNG plots of the scale scenario: server memory and the active clients' p99 against the
open connections, log axes, one line per model (the records of
:func:`testbed.bench.scale.run_scale`).

A step that failed is drawn with a cross and the line stops there; a step not attempted
(after a failure, or beyond a process-per-connection model's limit) has no point. The
y label says which memory figure was used (USS, or RSS where the kernel gave no USS).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.figure import Figure  # noqa: E402 - after choosing the backend
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
#: file name -> (record key, y label, title, scale of the value)
SCALE_PLOTS = {
    "scale-memory.png": ("server_bytes", "server memory ({figure}, MiB)",
                         "server memory against open connections", 1 / (1024 * 1024)),
    "scale-p99.png": ("p99_ms", "active clients' p99 latency (ms)",
                      "p99 latency of the active clients against open connections", 1.0),
}


def _figure_name(records_by_model: Mapping[str, Sequence[dict[str, Any]]]) -> str:
    figures = {r["memory_figure"] for records in records_by_model.values() for r in records
               if r.get("memory_figure")}
    return "/".join(sorted(figures)).upper() or "RSS"


def scale_plots(records_by_model: Mapping[str, Sequence[dict[str, Any]]], *,
                footer: str = "") -> list[tuple[str, bytes]]:
    """``{model: run_scale records}`` -> [(file name, PNG bytes)]: memory, then p99."""
    plots = []
    figure_name = _figure_name(records_by_model)
    for filename, (key, label, title, factor) in SCALE_PLOTS.items():
        fig = Figure(figsize=(7.5, 4.5), dpi=100)
        ax = fig.add_subplot()
        for index, (model, records) in enumerate(records_by_model.items()):
            points = [(r["connections"], r[key] * factor, r["ok"]) for r in records
                      if r["attempted"] and r.get(key) is not None and r[key] > 0]
            if not points:
                continue
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            line, = ax.plot(xs, ys, marker=MARKERS[index % len(MARKERS)], label=model)
            failed = [(x, y) for x, y, ok in points if not ok]
            if failed:
                ax.scatter([x for x, _ in failed], [y for _, y in failed], marker="x", s=90,
                           color=line.get_color(), zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        steps = sorted({r["connections"] for records in records_by_model.values()
                        for r in records if r["attempted"]})
        if steps:  # the steps themselves on the x axis, plain numbers on both
            ax.set_xticks(steps)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.{0 if y >= 1 else 2}f}"))
        ax.yaxis.set_minor_formatter(FuncFormatter(
            lambda y, _: f"{y:,.{0 if y >= 1 else 2}f}" if f"{y:.1e}"[0] in "25" else ""))
        ax.set_xlabel("open connections (10 active)")
        ax.set_ylabel(label.format(figure=figure_name))
        ax.set_title(title + " (x: the step failed)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small", ncols=2)
        if footer:
            fig.text(0.99, 0.01, footer, ha="right", va="bottom", fontsize="x-small",
                     color="grey")
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", metadata={"Software": None})  # no URL in the PNG
        plots.append((filename, buffer.getvalue()))
    return plots


def write_scale_plots(records_by_model: Mapping[str, Sequence[dict[str, Any]]],
                      directory: Path, *, footer: str = "") -> list[Path]:
    """Write the scale plots into ``directory``; their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for filename, png in scale_plots(records_by_model, footer=footer):
        path = directory / filename
        path.write_bytes(png)
        paths.append(path)
    return paths
