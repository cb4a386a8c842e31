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


def run_pipeline(model_options: Sequence[str], depths: Sequence[int] = DEFAULT_DEPTHS, *,
                 connections: int = 10, duration: float = 3.0, warmup: float = 1.0,
                 pin: bool = True, payload_size: int = 64) -> list[dict[str, Any]]:
    """One model (``testbed serve`` options) at each pipeline depth; one record per depth::

        pipeline                     requests in flight on each connection
        ok                           every request answered and verified, in order
        requests, rps                replies verified in the window, and per second
        server_cpu_us_per_request    the server tree's user+system CPU per reply
        requests_per_cpu_s           its inverse: replies per second of server CPU
        p50_ms, p99_ms               reply latency
        errors                       failure classes counted, non-zero only
        limit                        client, server, both, neither or unknown (the bench's)

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
        cpu = summary["server"].get("cpu_us_per_request")
        records.append({
            "pipeline": depth, "ok": summary["ok"], "requests": summary["requests"],
            "rps": summary["rps"], "server_cpu_us_per_request": cpu,
            "requests_per_cpu_s": 1e6 / cpu if cpu else None,
            "p50_ms": summary["latency"]["p50_ms"], "p99_ms": summary["latency"]["p99_ms"],
            "errors": {kind: n for kind, n in summary["errors"].items() if n},
            "limit": summary["limit"]})
    return records
