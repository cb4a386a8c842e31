"""The scale scenario's two tables: the largest step each model held, and every step.

Built from run_scale's records (:mod:`testbed.reporting.scale_data`) into the same
:class:`~testbed.reporting.tables.Table` every output renders, so the terminal,
report.md and report.html show the same figures. Nothing is ranked or marked best:
models stop at different steps, and a figure at 100 connections does not compete with
one at 10,000. Memory is the figure run_scale read (USS where the kernel gives it, else
RSS), and the notes say which; a failed step's note says how it failed, with the
counts the bench saw and the server's last log line.
"""

from __future__ import annotations

from typing import Any

from testbed.reporting.data import Results, ScenarioInfo
from testbed.reporting.scale_data import ScaleRun, how, scale_runs_for
from testbed.reporting.tables import MISSING, MODEL, Column, Entry, Table, fmt

MIB = 1024 * 1024


def count(value: float | None) -> str:
    """``10,000``; ``–`` when not measured."""
    return MISSING if value is None else f"{value:,.0f}"


def kib(value: float | None) -> str:
    """Bytes as KiB for a table or a sentence: ``1.46``, ``20.8``, ``1,086``."""
    if value is None:
        return MISSING
    value /= 1024
    return f"{value:,.{2 if abs(value) < 10 else 1 if abs(value) < 100 else 0}f}"


def mib(value: float | None) -> str:
    return MISSING if value is None else f"{value / MIB:,.1f}"


def figure_of(runs: list[ScaleRun]) -> str:
    """The memory figure the records used: ``USS``, ``RSS`` or ``USS/RSS`` if mixed."""
    found = {str(r["memory_figure"]).upper() for run in runs for r in run.records
             if r["memory_figure"]}
    return "/".join(sorted(found, reverse=True)) or "USS"


def limit_words(record: dict[str, Any]) -> str:
    """``not attempted beyond 2,000: would need 5,000 processes``."""
    text = str(record["not_attempted"] or "")
    beyond = text.partition("beyond ")[2].partition(" ")[0]
    return f"not attempted beyond {beyond}: would need {record['connections']:,} processes"


def fails_at(run: ScaleRun) -> str:
    """Where a run stopped: ``1,000: no reply in time``, the process limit, or ``–``."""
    if run.crashed:
        return "crashed"
    failed = run.failed
    if failed is not None:
        return f"{failed['connections']:,}: {how(failed)}"
    refused = run.refused
    return limit_words(refused) if refused is not None else MISSING


def _figures(record: dict[str, Any] | None) -> list[Entry]:
    """The figures of a step, in the columns both tables share."""
    r = record or {}

    def entry(text: str, key: str) -> Entry:
        return Entry(text, r.get(key))

    return [entry(mib(r.get("server_bytes")), "server_bytes"),
            entry(kib(r.get("added_per_connection_bytes")), "added_per_connection_bytes"),
            entry(count(r.get("threads")), "threads"),
            entry(count(r.get("processes")), "processes"),
            entry(count(r.get("fds")), "fds"),
            entry(fmt("ms", r.get("p50_ms")), "p50_ms"),
            entry(fmt("ms", r.get("p99_ms")), "p99_ms"),
            entry(fmt("us", r.get("server_cpu_us_per_request")), "server_cpu_us_per_request"),
            entry(MISSING if r.get("open_s") is None else f"{r['open_s']:.2f}", "open_s")]


def _figure_columns(figure: str) -> list[Column]:
    return [Column("server_bytes", f"server MiB ({figure})", "mib"),
            Column("added_per_connection_bytes", "KiB per idle conn", "kib"),
            Column("threads", "threads"), Column("processes", "procs"), Column("fds", "fds"),
            Column("p50_ms", "p50 ms", "ms"), Column("p99_ms", "p99 ms", "ms"),
            Column("server_cpu_us_per_request", "CPU µs/req", "us"),
            Column("open_s", "open s", "s")]


def _common_notes(scenario: ScenarioInfo, figure: str) -> list[str]:
    active = (scenario.raw.get("scale") or {}).get("active", 10)
    return [
        f"server MiB: the server's process tree with every connection open, as {figure} "
        "(USS: the pages only that process maps, so pages a forked child shares with its "
        "parent count once; RSS where the kernel gives no USS); KiB per idle conn: the "
        "growth of that figure per connection opened, read with all of them open and idle, "
        "before the window",
        f"p50/p99 ms: the replies of the {active} active connections (testbed bench's "
        "closed loop, one request in flight each) in the window; CPU µs/req: the server "
        "tree's user + system CPU in the window per reply; open s: the time to open every "
        "connection of the step",
    ]


def _failure_notes(runs: list[ScaleRun]) -> list[str]:
    notes = []
    for run in runs:
        if run.crashed:
            error = (run.error or "no error recorded").strip().splitlines()
            notes.append(f"{run.model} crashed: {error[0] if error else 'no error recorded'}")
            continue
        failed = run.failed
        if failed is not None:
            failure = failed.get("failure") or {}
            note = f"{run.model} failed at {failed['connections']:,} connections: {how(failed)}"
            if failure.get("detail"):
                note += f" ({failure['detail']})"
            log = [line for line in failure.get("server_log") or failed["server_log"] or []
                   if str(line).strip()]
            if log:
                note += f"; the server's log: {str(log[-1]).strip()}"
            notes.append(note)
        refused = run.refused
        if refused is not None:
            notes.append(f"{run.model}: {refused['not_attempted']}")
    return notes


def held_table(results: Results, scenario: ScenarioInfo) -> Table:
    """One row per model: the largest step it held, its figures there, and where and how it
    stopped. A model that held no step shows the figures of the step it failed."""
    runs = scale_runs_for(results, scenario.name)
    figure = figure_of(runs)
    columns = [MODEL, Column("held", "held"), *_figure_columns(figure),
               Column("fails", "fails at: how", numeric=False)]
    table = Table(f"{scenario.name}: the largest step each model held", columns, [])
    for run in runs:
        held = run.held
        row = [Entry(run.model), Entry(count(held["connections"] if held else None),
                                       held["connections"] if held else None),
               *_figures(run.shown), Entry(fails_at(run))]
        if run.crashed:
            table.crashed_rows.add(len(table.rows))
        table.rows.append(row)
    if any(run.held is None and run.failed is not None for run in runs):
        table.notes.append("held –: the model held no step; its figures are those of the step "
                           "it failed")
    table.notes += _common_notes(scenario, figure)
    table.notes += _failure_notes(runs)
    return table


def result_of(record: dict[str, Any]) -> str:
    """A step's outcome in a few words."""
    if not record["attempted"]:
        if str(record["not_attempted"] or "").startswith("not attempted beyond"):
            return limit_words(record)
        return "not attempted" + (f" ({record['not_attempted'].partition(': ')[2]})"
                                  if record["not_attempted"] else "")
    return "ok" if record["ok"] else f"failed: {how(record)}"


def step_table(results: Results, scenario: ScenarioInfo) -> Table:
    """One row per model and step, in the order of the steps: every figure run_scale read."""
    runs = scale_runs_for(results, scenario.name)
    figure = figure_of(runs)
    columns = [MODEL, Column("connections", "connections"), Column("opened", "opened"),
               Column("idle_alive", "idle alive"), *_figure_columns(figure)[:1],
               Column("server_rss_bytes", "RSS MiB", "mib"), *_figure_columns(figure)[1:],
               Column("result", "result", numeric=False)]
    table = Table(f"{scenario.name}, every step", columns, [])
    for run in runs:
        if run.crashed or not run.records:
            table.crashed_rows.add(len(table.rows))
            table.rows.append([Entry(run.model), *(Entry(MISSING) for _ in columns[1:-1]),
                               Entry("crashed" if run.crashed else "no step recorded")])
            continue
        for record in run.records:
            figures = _figures(record if record["attempted"] else None)
            rss = record["server_rss_bytes"] if record["attempted"] else None
            table.rows.append([
                Entry(run.model), Entry(count(record["connections"]), record["connections"]),
                Entry(count(record["opened"]), record["opened"]),
                Entry(count(record["idle_alive"]), record["idle_alive"]),
                *figures[:1], Entry(mib(rss), rss), *figures[1:], Entry(result_of(record))])
    table.notes.append("idle alive: idle connections that answered one verified request at "
                       "the end of the step; RSS MiB: the tree's resident set, which counts "
                       "the pages forked processes share once per process")
    return table
