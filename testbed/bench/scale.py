"""The scale scenario: how a model's cost grows with the connections it holds, mostly idle.

:func:`run_scale` benches one model at each step of open connections (100, 1,000, 5,000
and 10,000 by default), a fresh server each time, a fixed few of them active, and
returns one record per step. The step at which a model fails is recorded with how it
failed, and the steps after it are not attempted; a model that forks a process per
connection is not driven beyond ``process_limit`` connections. ``server_nofile`` gives
the servers a descriptor limit of their own, to see where they run out (EMFILE).

The server is given a listen queue of :data:`SCALE_BACKLOG` (unless the options name
one): with the default 128 a server that accepts slower than the client connects drops
SYNs, and the opening then measures the kernel's one-second SYN retransmission instead
of the server.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from testbed.bench.plan import beyond_process_limit
from testbed.bench.runner import run_bench
from testbed.bench.spec import BenchSpec
from testbed.target import UsageError, parse_server_options

DEFAULT_STEPS = (100, 1000, 5000, 10_000)
SCALE_BACKLOG = 4096
#: What the server's log says when it failed, in the words of each failure.
LOG_CAUSES = (
    ("can't start new thread", "thread creation fails"),
    ("start new thread", "thread creation fails"),
    ("Resource temporarily unavailable", "fork fails"),  # os.fork's EAGAIN (BlockingIOError)
    ("Cannot fork", "fork fails"),
    ("Too many open files", "EMFILE"),
    ("accept failed", "EMFILE"),
    ("Cannot allocate memory", "out of memory"),
)
#: The client's failure classes, in the words of a failure step.
CLIENT_CAUSES = {
    "connect_timeout": "connect timeouts",
    "reset": "resets (a full queue)",
    "refused": "refused connections",
    "io_timeout": "no reply in time",
    "closed_early": "connections closed by the server",
    "mismatch": "wrong replies",
    "unreachable": "no route (or no local port left)",
    "other": "client-side errors",
}


def how_it_failed(summary: dict[str, Any]) -> str:
    """A bench summary's failure in a few words: the server's own account first, then
    what the client saw most of."""
    log = "\n".join(summary.get("server_log") or [])
    for words, cause in LOG_CAUSES:
        if words in log:
            return cause
    if summary.get("server_died"):
        return "the server exited"
    counts: dict[str, int] = {}
    for part in (summary["errors"], summary["opening"]["failed"],
                 (summary["idle"] or {}).get("failed", {})):
        for kind, n in part.items():
            counts[kind] = counts.get(kind, 0) + n
    counts = {kind: n for kind, n in counts.items() if n}
    if counts:
        return CLIENT_CAUSES[max(counts, key=lambda kind: counts[kind])]
    if summary["served_connections"] < summary["active"]:
        return "active connections left unserved"
    return "no request answered"


def _record(connections: int, active: int, summary: dict[str, Any] | None,
            seconds: float, not_attempted: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "connections": connections, "active": min(active, connections),
        "attempted": summary is not None, "not_attempted": not_attempted,
        "ok": False, "failure": None, "seconds": seconds,
        "opened": None, "open_s": None, "idle_alive": None,
        "idle_connections": connections - min(active, connections),
        "memory_figure": None, "server_bytes": None, "server_rss_bytes": None,
        "server_uss_bytes": None, "added_per_connection_bytes": None,
        "threads": None, "processes": None, "fds": None,
        "served_active": None,
        "p50_ms": None, "p99_ms": None, "requests": None, "rps": None,
        "server_cpu_us_per_request": None, "errors": {}, "server_log": [],
    }
    if summary is None:
        return record
    memory, idle = summary["server_memory"], summary["idle"]
    errors: dict[str, int] = {}
    for part in (summary["errors"], summary["opening"]["failed"], (idle or {}).get("failed", {})):
        for kind, n in part.items():
            if n:
                errors[kind] = errors.get(kind, 0) + n
    record.update(
        ok=summary["ok"], opened=summary["opening"]["opened"],
        open_s=summary["opening"]["seconds"],
        idle_alive=idle["alive"] if idle else 0,
        served_active=summary["served_connections"],
        p50_ms=summary["latency"]["p50_ms"], p99_ms=summary["latency"]["p99_ms"],
        requests=summary["requests"], rps=summary["rps"],
        server_cpu_us_per_request=summary["server"].get("cpu_us_per_request"),
        errors=errors, server_log=summary["server_log"])
    if memory is not None:
        held = memory["opened"]
        record.update(memory_figure=memory["figure"], server_bytes=held["bytes"],
                      server_rss_bytes=held["rss"], server_uss_bytes=held["uss"],
                      added_per_connection_bytes=memory["added_per_connection_bytes"],
                      threads=held["threads"], processes=held["processes"], fds=held["fds"])
    if not summary["ok"]:
        held = (memory or {}).get("opened") or {}
        detail = (f"{record['opened']:,} of {connections:,} opened, "
                  f"{record['idle_alive']:,} of {record['idle_connections']:,} idle alive, "
                  f"{summary['served_connections']} of {record['active']} active served; "
                  f"the server had {held.get('processes', '?')} process(es), "
                  f"{held.get('threads', '?')} thread(s), {held.get('fds', '?')} descriptors")
        record["failure"] = {"step": connections, "how": how_it_failed(summary),
                             "detail": detail, "classes": errors,
                             "server_log": summary["server_log"]}
    return record


def run_scale(model_options: Sequence[str], steps: Sequence[int] = DEFAULT_STEPS, *,
              active: int = 10, duration: float = 2.0, warmup: float = 0.5,
              io_timeout: float = 2.0, connect_timeout: float = 3.0,
              open_timeout: float = 60.0, process_limit: int = 2000, pin: bool = False,
              payload_size: int = 64, server_nofile: int | None = None,
              progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One model (``model_options``: ``testbed serve`` options) at each step of open
    connections; one record per step, in the order of ``steps``.

    Each record (every key always present; None where not measured)::

        connections      the step: connections opened at once
        active           of them carrying the closed loop (the rest idle)
        attempted        False: not run (see not_attempted)
        not_attempted    None, "not attempted beyond N connections: the M model would need
                         C processes, ..." or "not attempted: the model failed at N connections"
        ok               every connection opened, every request answered and verified,
                         every idle connection alive at the end
        failure          None, or {"step": N, "how": "thread creation fails" | "fork fails" |
                         "EMFILE" | "connect timeouts" | "resets (a full queue)" | ...,
                         "detail": "N of M opened, ... the server had P process(es), ...",
                         "classes": {failure class: count}, "server_log": [lines]}
        seconds          wall time of the step (server start and stop included)
        opened, open_s   connections opened, and the seconds the opening took
        idle_connections, idle_alive   idle connections, and those alive at the end
        served_active    active connections that got at least one reply in the window
        memory_figure    "uss" (unique set size, shared pages counted once) or "rss"
        server_bytes     the server tree's memory with all open, in memory_figure
        server_rss_bytes, server_uss_bytes   both figures (uss None where unknown)
        added_per_connection_bytes   growth of server_bytes per connection opened
        threads, processes, fds   the server tree's, with all open
        p50_ms, p99_ms   the active connections' reply latency in the window
        requests, rps    replies verified in the window, and per second
        server_cpu_us_per_request   the tree's user+system CPU in the window per reply
        errors           failure classes counted (opening, window, idle check), non-zero only
        server_log       the last lines of the server's stderr
    """
    options = list(model_options)
    if "--backlog" not in options:
        options += ["--backlog", str(SCALE_BACKLOG)]
    if "--quiet" not in options and "-q" not in options:
        options.append("--quiet")
    model = parse_server_options(options).model
    records: list[dict[str, Any]] = []
    failed_at: int | None = None
    for connections in steps:
        if failed_at is not None:
            records.append(_record(connections, active, None, 0.0,
                                   f"not attempted: the model failed at {failed_at:,} "
                                   "connections"))
            continue
        refusal = beyond_process_limit(model, connections, process_limit)
        if refusal:
            records.append(_record(connections, active, None, 0.0, refusal))
            continue
        if progress is not None:
            progress(f"{model}: {connections:,} connections")
        spec = BenchSpec(server_options=options, connections=connections,
                         active=min(active, connections), duration=duration, warmup=warmup,
                         io_timeout=io_timeout, connect_timeout=connect_timeout,
                         open_timeout=open_timeout, process_limit=process_limit, pin=pin,
                         payload_size=payload_size, reopens=0, server_nofile=server_nofile)
        started = time.monotonic()
        try:
            summary = run_bench(spec)
        except UsageError as exc:  # the server would not start, or the client can't
            record = _record(connections, active, None, time.monotonic() - started)
            record["attempted"] = True
            record["failure"] = {"step": connections, "how": str(exc), "detail": "",
                                 "classes": {}, "server_log": []}
            records.append(record)
            failed_at = connections
            continue
        record = _record(connections, active, summary, time.monotonic() - started)
        records.append(record)
        if not record["ok"]:
            failed_at = connections
    return records


def _cell(record: dict[str, Any]) -> Callable[[str, str], str]:
    def cell(key: str, spec: str) -> str:
        return "-" if record[key] is None else format(record[key], spec)
    return cell


def scale_table(model: str, records: Sequence[dict[str, Any]]) -> str:
    """The records of one model as a text table, a line per step."""
    head = ("connections", "opened", "open s", "alive", "mem MiB", "KiB/conn", "threads",
            "procs", "fds", "p50 ms", "p99 ms", "µs CPU/req", "result")
    rows = [head]
    for r in records:
        if not r["attempted"]:
            rows.append((f"{r['connections']:,}", *["-"] * 11, r["not_attempted"] or ""))
            continue
        n = _cell(r)
        mem = "-" if r["server_bytes"] is None else f"{r['server_bytes'] / 1048576:,.1f}"
        per = r["added_per_connection_bytes"]
        rows.append((f"{r['connections']:,}", n("opened", ","), n("open_s", ".2f"),
                     n("idle_alive", ","), mem, "-" if per is None else f"{per / 1024:.2f}",
                     n("threads", ","), n("processes", ","), n("fds", ","),
                     n("p50_ms", ".3f"), n("p99_ms", ".2f"),
                     n("server_cpu_us_per_request", ",.1f"),
                     "ok" if r["ok"] else f"FAILED: {(r['failure'] or {}).get('how', '?')}"))
    widths = [max(len(row[i]) for row in rows if len(row) > i) for i in range(len(head) - 1)]
    lines = ["  ".join([cell.rjust(width) for cell, width in zip(row, widths, strict=False)]
                       + [row[-1]]) for row in rows]
    figure = next((r["memory_figure"] for r in records if r["memory_figure"]), "rss")
    return "\n".join([f"{model} · scale · memory is the server tree's {figure}", *lines])
