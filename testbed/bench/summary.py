"""A bench run's summary: one JSON-able record (:func:`summarize_bench`) and its text.

The server's CPU divided by the replies verified in the window is its CPU per request.
The client's own CPU is measured the same way; near one core busy, the client was the
limit, and the requests/s say more about it than about the server (:func:`_limit`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clients.bench import OPEN_WINDOW, Result
from testbed.bench.memory import added_per_connection
from testbed.bench.plan import BenchPlan
from testbed.sampling import BUSY, limit_of, server_cpu
from testbed.stats import paired_ratio_interval

if TYPE_CHECKING:
    from testbed.bench.runner import Measured

#: Client cores busy at or above this: the client, not the server, was the limit.
CLIENT_BOUND = BUSY
MIB = 1024 * 1024


def summarize_bench(plan: BenchPlan, url: str, pid: int | None, warm: Result | None,
                    measured: Measured, server_died: bool,
                    server_log: list[str] | None = None) -> dict[str, Any]:
    """The run as one JSON-able record (its fields are documented in the README)."""
    spec = plan.spec
    window, before, after = measured.result, measured.before, measured.after
    requests = window.requests
    server: dict[str, Any] = {"pid": pid, **server_cpu(before, after, requests)}
    held_before, held_open = measured.held_before, measured.held_open
    idle = spec.connections - window.active
    memory = None
    if held_before is not None and held_open is not None:
        added = added_per_connection(held_before, held_open, window.opened)
        memory = {"figure": held_open.figure, "before": held_before.as_dict(),
                  "opened": held_open.as_dict(),
                  "added_bytes": held_open.bytes - held_before.bytes,
                  "added_per_connection_bytes": added}
    opening = {"connections": spec.connections, "opened": window.opened,
               "seconds": window.open_s, "window": OPEN_WINDOW,
               "failed": {k: v for k, v in window.open_failed.items() if v}}
    idle_record = None if not idle else {
        "connections": idle, "alive": window.idle_alive or 0,
        "failed": {k: v for k, v in window.idle_failed.items() if v},
        "details": dict(window.idle_details),
        "check": "one request on each idle connection after the window, its reply verified"}
    client_busy = window.cpu_s / window.elapsed if window.elapsed > 0 else 0.0
    return {
        "model": plan.model, "service": plan.service,
        "server_options": list(spec.server_options),
        "target": url, "expect": plan.expect, "transport": "tcp",
        "connections": spec.connections, "payload_size": spec.payload_size,
        "warmup_s": spec.warmup, "duration_s": spec.duration, "window_s": window.elapsed,
        "max_requests": spec.max_requests, "io_timeout_s": spec.io_timeout,
        "requests": requests, "rps": window.rps,
        "errors": window.errors, "error_count": window.error_count,
        "error_details": window.details, "gave_up": window.gave_up, "capped": window.capped,
        "served_connections": window.served_connections,
        "unserved": window.unserved,
        "replies_per_connection": window.replies,
        "active": window.active, "pipeline": window.pipeline,
        "latency": window.latency_ms(),
        "opening": opening, "idle": idle_record, "server_memory": memory,
        "descriptors": plan.descriptors, "server_log": list(server_log or []),
        "server": server,
        "client": {"cpu_s": window.cpu_s, "cores_busy": client_busy,
                   "cpu_us_per_request": window.cpu_s / requests * 1e6 if requests else None},
        "client_bound": client_busy >= CLIENT_BOUND,
        "limit": limit_of(plan.placement, server.get("cores_busy"), client_busy),
        "placement": plan.placement,
        "warmup": None if warm is None else {
            "requests": warm.requests, "elapsed_s": warm.elapsed,
            "error_count": warm.error_count, "errors": warm.errors},
        "server_died": server_died,
        "host_steal": measured.host_steal,
        "ok": (not window.error_count and bool(requests) and not server_died
               and window.opened == spec.connections
               and (not idle or window.idle_alive == idle)),
    }


def _measured_cpu(summary: dict[str, Any]) -> float | None:
    """The server CPU per request of a run that went well; None otherwise."""
    if not summary.get("ok"):
        return None
    return (summary.get("server") or {}).get("cpu_us_per_request")


def median_window(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Of several bench summaries, the one whose server CPU per request is the median of
    those that went well (the lower middle one of an even count); the first if none did."""
    measured = sorted((summary for summary in summaries if _measured_cpu(summary) is not None),
                      key=lambda summary: _measured_cpu(summary) or 0.0)
    return measured[(len(measured) - 1) // 2] if measured else summaries[0]


def summarize_windows(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of several windows: the median window's summary, ``ok`` only if every
    window's was, and every window's summary in ``windows`` (in the order measured)."""
    chosen = dict(median_window(summaries))
    chosen["ok"] = all(summary["ok"] for summary in summaries)
    chosen["windows"] = summaries
    return chosen


def window_cpus(summary: dict[str, Any]) -> list[float | None]:
    """The server CPU per request of each window of a run (None where one went wrong)."""
    return [_measured_cpu(window) for window in summary.get("windows") or [summary]]


def alternating(index: int, sides: int) -> range:
    """The order in which a head-to-head run measures its sides at window ``index``: the
    first side first, then the last first, and so on (AB, BA, AB, ...), so that neither is
    always measured second; one side alone, just it."""
    return range(sides) if index % 2 == 0 else range(sides - 1, -1, -1)


def summarize_versus(target: dict[str, Any], versus: dict[str, Any]) -> dict[str, Any]:
    """A head-to-head run (``--versus``): each server's summary, their windows' server CPU
    per request paired in the order taken, and the ratio of the second's to the first's:
    the median of the pairs' ratios and its 95% interval (:func:`paired_ratio_interval`;
    None under 6 pairs)."""
    pairs = [(a, b) for a, b in zip(window_cpus(target), window_cpus(versus), strict=True)
             if a is not None and b is not None]
    ratios = sorted(b / a for a, b in pairs if a > 0)
    interval = paired_ratio_interval(pairs)
    return {"ok": target["ok"] and versus["ok"], "target": target, "versus": versus,
            "pairs": [list(pair) for pair in pairs],
            "ratio": {"median": statistics.median(ratios) if ratios else None,
                      "interval": list(interval) if interval else None}}


def versus_text(summary: dict[str, Any],
                text: Callable[[dict[str, Any]], str] | None = None) -> str:
    """Both servers' lines (``text``: bench's, or wrk's), then one line on the ratio of
    their CPU per request."""
    target, versus, ratio = summary["target"], summary["versus"], summary["ratio"]
    pairs = len(summary["pairs"])
    line = f"versus   {versus['target']} against {target['target']}: "
    if ratio["median"] is None:
        line += "no pair of windows measured both servers' CPU per request"
    else:
        line += f"{ratio['median']:.2f}x the server CPU per request (median of {pairs} pairs"
        interval = ratio["interval"]
        line += (f", 95% interval {interval[0]:.2f}-{interval[1]:.2f})" if interval
                 else "; 6 pairs or more give an interval: --windows)")
    text = text or bench_text
    return "\n\n".join([text(target), text(versus), line])


def windows_line(summary: dict[str, Any]) -> str | None:
    """The text line of a run of several windows (:func:`summarize_windows`, bench's or
    wrk's): how many, the range of their server CPU per request; None for one window."""
    windows = summary.get("windows")
    if not windows:
        return None
    cpus = [cpu for window in windows
            if (cpu := (window.get("server") or {}).get("cpu_us_per_request")) is not None]
    return (f"windows  {len(windows)} of {summary['duration_s']:g} s in a row, "
            + (f"server CPU per request {min(cpus):,.2f}-{max(cpus):,.2f} µs; " if cpus else "")
            + "the lines here are the median window's")


#: What the limit means for a reader, one line each.
LIMIT_NOTES = {
    "client": "client-bound: the req/s say more about this client than the server",
    "server": "server-bound: the req/s are the server's",
    "both": "both at full CPU: the req/s are a floor of the server's",
    "neither": "neither at full CPU: round trips, delays or serving one client at a time set the pace",
    "unknown": "",
}


def _n(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def bench_text(summary: dict[str, Any]) -> str:
    """A few lines: what was benched, the window, the server, the client."""
    what = (" · ".join([summary["model"], summary["service"], *_extra(summary["server_options"])])
            if summary["model"] else summary["target"])
    placement = summary["placement"]
    where = ("free" if placement == "free" else
             f"pinned: server {_cpus(placement['server'])}, client {_cpus(placement['client'])}")
    warm = summary["warmup"]
    errors = {k: v for k, v in summary["errors"].items() if v}
    server, client = summary["server"], summary["client"]
    lines = [
        f"{what} · tcp · {summary['connections']:,} connections"
        + (f" ({summary['active']:,} active)" if summary["idle"] else "")
        + (f" · pipeline {summary['pipeline']}" if summary["pipeline"] > 1 else "")
        + (" · GET /" if summary["expect"] == "http" else f" · {summary['payload_size']} B")
        + f" · {where}",
        "warm-up  " + ("none" if warm is None else
                       f"{warm['elapsed_s']:.1f} s, {warm['requests']:,} requests, "
                       f"{warm['error_count']:,} errors, on connections closed before the window"),
        f"window   {summary['window_s']:.2f} s  {summary['requests']:,} requests  "
        f"{summary['rps']:,.0f} req/s  errors: "
        + (", ".join(f"{k} {v:,}" for k, v in errors.items()) if errors else "none"),
        f"server   {_n(server.get('cpu_us_per_request'), ',.2f')} µs CPU/request  "
        f"{_n(server.get('cores_busy'), '.2f')} cores busy"
        + (f"  ({server.get('processes')} process(es))" if server["measured"] else
           "  (not measured: give --server-pid)"),
        f"client   {_n(client['cpu_us_per_request'], ',.2f')} µs CPU/request  "
        f"{client['cores_busy']:.2f} cores busy",
        f"served   {summary['served_connections']:,} of {summary['active']:,} "
        f"{'active ' if summary['idle'] else ''}connections "
        f"(replies per connection: min {min(summary['replies_per_connection']):,}, "
        f"max {max(summary['replies_per_connection']):,})"
        + ("; the others: " + ", ".join(f"{k} {v:,}" for k, v in summary["unserved"].items())
           if summary["unserved"] else ""),
    ]
    windows = windows_line(summary)
    if windows:
        lines.insert(3, windows)
    latency = summary["latency"]
    if latency["samples"]:
        lines.insert(3, f"latency  p50 {latency['p50_ms']:.3f} ms  p99 {latency['p99_ms']:.3f} ms"
                     f"  max {latency['max_ms']:.2f} ms  ({latency['samples']:,} replies)")
    opening = summary["opening"]
    if summary["idle"] or opening["failed"] or opening["seconds"] >= 1:
        lines.append(f"opened   {opening['opened']:,} of {opening['connections']:,} connections "
                     f"in {opening['seconds']:.2f} s"
                     + ("  failed: " + _classes(opening["failed"]) if opening["failed"] else ""))
    idle = summary["idle"]
    if idle:
        lines.append(f"idle     {idle['alive']:,} of {idle['connections']:,} alive at the end "
                     "(one verified request each)"
                     + ("  failed: " + _classes(idle["failed"]) if idle["failed"] else ""))
    memory = summary["server_memory"]
    if memory and (idle or summary["connections"] >= 100):
        held, per = memory["opened"], memory["added_per_connection_bytes"]
        lines.append(f"memory   {memory['figure']} {memory['before']['bytes'] / MIB:.1f} MiB "
                     f"before opening, {held['bytes'] / MIB:.1f} MiB with all open"
                     + (f": {per / 1024:.2f} KiB per connection" if per is not None else "")
                     + f"  ({held['processes']:,} process(es), {held['threads']:,} thread(s), "
                     f"{held['fds']:,} descriptors)")
    if summary["error_details"]:
        lines.append("first    " + "; ".join(f"{kind}: {detail}" for kind, detail
                                             in summary["error_details"].items()))
    if LIMIT_NOTES[summary["limit"]]:
        lines.append(f"limit    {LIMIT_NOTES[summary['limit']]}")
    if summary["capped"]:
        lines.append(f"stopped at --max-requests {summary['max_requests']:,}")
    if summary["gave_up"]:
        lines.append(f"{summary['gave_up']} connection(s) given up after --reopens")
    if summary["server_died"]:
        lines.append("the server exited during the run")
    if summary["server_log"] and not summary["ok"]:
        lines.append("server   said: " + summary["server_log"][-1].strip())
    return "\n".join(lines)


def _classes(counts: dict[str, int]) -> str:
    return ", ".join(f"{kind} {n:,}" for kind, n in counts.items())


def _extra(options: list[str]) -> list[str]:
    """The server options beyond the model and service, as one item (``--loop uvloop``)."""
    words, kept = iter(options), []
    for word in words:
        if word in ("--model", "--service"):
            next(words, None)
        elif word != "--quiet":
            kept.append(word)
    return [" ".join(kept)] if kept else []


def _cpus(value: Any) -> str:
    if isinstance(value, list):
        return "CPU " + ",".join(map(str, value))
    return str(value).split(":")[0]
