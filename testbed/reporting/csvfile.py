"""results.csv: one row per model x scenario x repeat x step, every figure in its own column.

The rows are the runs as measured, each repeat apart (column ``repeat``, from 1), so
a spreadsheet can redo any median or spread the report shows; ``step`` is the
step's users, or its offered connections per second where ``unit`` says conn/s.
The bench columns come from ``testbed bench`` beside the locust run.

Steps a crashed run never reached still get their row (status ``crashed``, empty
figures), so a crash is visible in any spreadsheet rather than silently missing.
Numbers are written unrounded; ``served_pct`` is in percent, latencies in ms. The scale
scenario has no locust steps and no rows here: its records are in results.json (and each
model's ``scale.json``), its tables in the report.
"""

from __future__ import annotations

import csv
import io

from testbed.reporting.data import FAILURE_ORDER, Results

FIGURES = ("window_s", "requests", "served", "served_pct", "rps", "p50_ms", "p95_ms", "p99_ms",
           "max_ms", "offered_rate", "achieved_rate", "clients_users", "clients_served", "jain")
BENCH = ("rps", "cpu_us_per_request", "server_cores", "client_cores", "served_connections")
SERVER = ("cpu_s", "cpu_us_per_request", "peak_rss_mib", "peak_threads", "peak_processes",
          "peak_fds")


def header(results: Results) -> list[str]:
    seen = {kind for run in results.repeat_runs for step in run.steps for kind in step.failures}
    classes = [*FAILURE_ORDER, *sorted(seen - set(FAILURE_ORDER))]
    return ["model", "scenario", "repeat", "step", "unit", "status", *FIGURES,
            *(f"failures_{kind}" for kind in classes), "failures_total", *SERVER,
            "generator_bound", *(f"bench_{key}" for key in BENCH), "bench_limit", "error"]


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    value = round(float(value), 6)
    return str(int(value)) if value.is_integer() else repr(value)


def render(results: Results) -> str:
    """The CSV text (comma-separated, header row first)."""
    columns = header(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for scenario in results.scenarios:
        if scenario.is_scale:  # no locust steps: its records are in results.json and scale.json
            continue
        merged = results.runs_for(scenario.name)
        runs = [run for model in merged for run in results.repeats_of(model.model, scenario.name)]
        for run in runs:
            users = sorted(set(scenario.steps) | {step.users for step in run.steps})
            bench: dict[str, str] = {}
            if run.capacity is not None:
                bench = {f"bench_{key}": _cell(run.capacity.value(key)) for key in BENCH}
                bench["bench_limit"] = run.capacity.limit or ""
            for count in users:
                step = run.at(count)
                row: dict[str, str] = {"model": run.model, "scenario": scenario.name,
                                       "repeat": str(run.repeat + 1), "step": str(count),
                                       "unit": scenario.unit, "error": run.error or "", **bench}
                row["status"] = ("crashed" if run.crashed
                                 else "ok" if step is not None else "not measured")
                if step is not None:
                    for key in (*FIGURES, *SERVER):
                        row[key] = _cell(step.value(key))
                    for column in columns:
                        if column.startswith("failures_") and column != "failures_total":
                            row[column] = str(step.failures.get(column[len("failures_"):], 0))
                    row["failures_total"] = str(step.failed)
                    row["generator_bound"] = "true" if step.generator_bound else "false"
                writer.writerow([row.get(column, "") for column in columns])
    return buffer.getvalue()
