"""The pipelined step: a model's server CPU per request against the requests in flight.

With one request in flight per connection every request costs the server a wake-up;
with K in flight one wake-up finds several waiting. :func:`run_pipeline` benches one
model at each depth (1, 4, 16 by default), a fresh server each time, and returns one
record per depth: the fixed cost of each design's wake-up is the gap between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from testbed.bench.runner import run_bench
from testbed.bench.spec import BenchSpec

DEFAULT_DEPTHS = (1, 4, 16)


def depth_record(summary: dict[str, Any], pipeline: int) -> dict[str, Any]:
    """The figures of one ``testbed bench`` run (its ``--json`` summary, or a record of
    why it did not run: ``{"ok": False, "error": ...}``) at ``pipeline`` requests in
    flight, flat; every key always present, None where not measured::

        pipeline                     requests in flight on each connection
        ok                           every request answered and verified, in order
        error                        why the run gave no figures (None when it did)
        requests, rps                replies verified in the window, and per second
        server_cpu_us_per_request    the server tree's user+system CPU per reply
        requests_per_cpu_s           its inverse: replies per second of server CPU
        server_cores, client_cores   each side's CPU use in cores
        limit                        client, server, both, neither or unknown (the bench's)
        errors, error_count          failure classes counted (non-zero only), and their sum
        served_connections           connections that got at least one reply
        p50_ms, p99_ms               reply latency
        host_steal                   the machine's CPU time the host took over the window
        command                      the command line that ran it (None in-process)

    :func:`run_pipeline` returns these, and ``testbed compare`` stores them in a
    capacity's ``samples`` and ``pipelines``.
    """
    server = summary.get("server") or {}
    client = summary.get("client") or {}
    latency = summary.get("latency") or {}
    cpu = server.get("cpu_us_per_request")
    return {
        "pipeline": pipeline, "ok": bool(summary.get("ok")), "error": summary.get("error"),
        "requests": summary.get("requests"), "rps": summary.get("rps"),
        "server_cpu_us_per_request": cpu, "requests_per_cpu_s": 1e6 / cpu if cpu else None,
        "server_cores": server.get("cores_busy"), "client_cores": client.get("cores_busy"),
        "limit": summary.get("limit"),
        "errors": {kind: n for kind, n in (summary.get("errors") or {}).items() if n},
        "error_count": summary.get("error_count"),
        "served_connections": summary.get("served_connections"),
        "p50_ms": latency.get("p50_ms"), "p99_ms": latency.get("p99_ms"),
        "host_steal": (summary.get("host_steal") or {}).get("machine"),
        "command": summary.get("command")}


def run_pipeline(model_options: Sequence[str], depths: Sequence[int] = DEFAULT_DEPTHS, *,
                 connections: int = 10, duration: float = 3.0, warmup: float = 1.0,
                 pin: bool = True, payload_size: int = 64) -> list[dict[str, Any]]:
    """One model (``testbed serve`` options) at each pipeline depth; one
    :func:`depth_record` per depth.

    A UsageError (a server that won't start) propagates: nothing was measured.
    """
    options = list(model_options)
    if "--quiet" not in options and "-q" not in options:
        options.append("--quiet")
    records = []
    for depth in depths:
        summary = run_bench(BenchSpec(server_options=options, connections=connections,
                                      pipeline=depth, duration=duration, warmup=warmup,
                                      pin=pin, payload_size=payload_size))
        records.append(depth_record(summary, depth))
    return records
