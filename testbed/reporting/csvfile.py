"""results.csv: one row per model x scenario x step, every figure in its own column.

Steps a crashed run never reached still get their row (status ``crashed``, empty
figures), so a crash is visible in any spreadsheet rather than silently missing.
Numbers are written unrounded; ``served_pct`` is in percent, latencies in ms.
"""

from __future__ import annotations

import csv
import io

from testbed.reporting.data import FAILURE_ORDER, Results

FIGURES = ("window_s", "requests", "served", "served_pct", "rps", "p50_ms", "p95_ms", "p99_ms",
           "max_ms")
SERVER = ("cpu_s", "cpu_us_per_request", "peak_rss_mib", "peak_threads", "peak_processes",
          "peak_fds")


def header(results: Results) -> list[str]:
    seen = {kind for run in results.runs for step in run.steps for kind in step.failures}
    classes = [*FAILURE_ORDER, *sorted(seen - set(FAILURE_ORDER))]
    return ["model", "scenario", "users", "status", *FIGURES,
            *(f"failures_{kind}" for kind in classes), "failures_total", *SERVER,
            "generator_bound", "error"]


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
        for run in results.runs_for(scenario.name):
            users = sorted(set(scenario.steps) | {step.users for step in run.steps})
            for count in users:
                step = run.at(count)
                row: dict[str, str] = {"model": run.model, "scenario": scenario.name,
                                       "users": str(count), "error": run.error or ""}
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
