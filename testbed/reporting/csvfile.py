"""results.csv: one row per model x scenario x repeat x step, every figure in its own column.

The rows are the runs as measured, each repeat apart (column ``repeat``, from 1), so
a spreadsheet can redo any median or spread the report shows; ``step`` is the
step's users, or its offered connections per second where ``unit`` says conn/s.
The bench columns come from ``testbed bench`` beside the locust run.

Steps a crashed run never reached still get their row (status ``crashed``, empty
figures), so a crash is visible in any spreadsheet rather than silently missing.
Numbers are written unrounded; ``served_pct`` is in percent, latencies in ms.

The scale scenario has no locust steps: its rows are one per model and step of open
connections (``step``, unit ``connections``), status ``ok``, ``failed``, ``not attempted``
or ``crashed``, with the figures its tables show: ``p50_ms``, ``p99_ms``, ``requests``,
``rps`` and ``cpu_us_per_request`` (the server tree's CPU per reply in the window) in the
columns of the same name, the rest in ``scale_*`` columns (bytes unrounded, the memory
figure in ``scale_memory_figure``), which are there only when the report has the scenario;
``error`` says how a step failed or why it was not attempted.
"""

from __future__ import annotations

import csv
import io

from testbed.reporting.data import FAILURE_ORDER, Results, ScenarioInfo
from testbed.reporting.scale_data import how, scale_runs_for

FIGURES = ("window_s", "requests", "served", "served_pct", "rps", "p50_ms", "p95_ms", "p99_ms",
           "max_ms", "offered_rate", "achieved_rate", "clients_users", "clients_served", "jain")
BENCH = ("rps", "cpu_us_per_request", "server_cores", "client_cores", "served_connections")
SERVER = ("cpu_s", "cpu_us_per_request", "peak_rss_mib", "peak_threads", "peak_processes",
          "peak_fds")
#: The scale records' figures with no locust column of the same meaning (``scale_`` + key).
SCALE = ("opened", "open_s", "idle_connections", "idle_alive", "served_active",
         "memory_figure", "server_bytes", "server_rss_bytes", "server_uss_bytes",
         "added_per_connection_bytes", "threads", "processes", "fds")
#: The scale records' figures in the locust columns of the same meaning.
SCALE_SHARED = {"p50_ms": "p50_ms", "p99_ms": "p99_ms", "requests": "requests", "rps": "rps",
                "cpu_us_per_request": "server_cpu_us_per_request"}


def header(results: Results) -> list[str]:
    seen = {kind for run in results.repeat_runs for step in run.steps for kind in step.failures}
    classes = [*FAILURE_ORDER, *sorted(seen - set(FAILURE_ORDER))]
    scale = [f"scale_{key}" for key in SCALE] if any(s.is_scale for s in results.scenarios) \
        else []
    return ["model", "scenario", "repeat", "step", "unit", "status", *FIGURES,
            *(f"failures_{kind}" for kind in classes), "failures_total", *SERVER,
            "generator_bound", *(f"bench_{key}" for key in BENCH), "bench_limit", *scale,
            "error"]


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    value = round(float(value), 6)
    return str(int(value)) if value.is_integer() else repr(value)


def _scale_rows(results: Results, scenario: ScenarioInfo) -> list[dict[str, str]]:
    """A row per model and step of the scale scenario (a crashed run's steps too)."""
    rows = []
    for run in scale_runs_for(results, scenario.name):
        steps = sorted(set(scenario.steps) | {r["connections"] for r in run.records})
        for connections in steps:
            record = run.at(connections)
            row = {"model": run.model, "scenario": scenario.name, "repeat": str(run.repeat + 1),
                   "step": str(connections), "unit": "connections"}
            if record is None:
                row["status"] = "crashed" if run.crashed else "not measured"
                row["error"] = run.error or ""
            elif not record["attempted"]:
                row["status"], row["error"] = "not attempted", str(record["not_attempted"] or "")
            else:
                row["status"] = "ok" if record["ok"] else "failed"
                row["error"] = "" if record["ok"] else how(record)
                for column, key in SCALE_SHARED.items():
                    row[column] = _cell(record[key])
                for key in SCALE:
                    value = record[key]
                    row[f"scale_{key}"] = value if isinstance(value, str) else _cell(value)
            rows.append(row)
    return rows


def render(results: Results) -> str:
    """The CSV text (comma-separated, header row first)."""
    columns = header(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for scenario in results.scenarios:
        if scenario.is_scale:  # no locust steps: a row per model and step of connections
            for row in _scale_rows(results, scenario):
                writer.writerow([row.get(column, "") for column in columns])
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
