"""Checking a bench spec before any socket or process exists: :func:`check_bench` -> BenchPlan."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from typing import Any

from clients.bench import MAX_CONNECTIONS
from testbed.bench.spec import MAX_PAYLOAD, BenchSpec
from testbed.target import Target, UsageError, parse_server_options


@dataclass
class BenchPlan:
    """A checked spec: the server to start (model, service) or the target, and where each
    side runs (``placement``: "free", or the CPUs of the server and of the client)."""

    spec: BenchSpec
    target: Target | None
    model: str | None
    service: str | None
    placement: Any
    expect: str


def check_bench(spec: BenchSpec) -> BenchPlan:
    """Refuse what can't run, with one clear line (UsageError); the run's settings."""
    if spec.udp:
        raise UsageError("TCP only: --udp is not supported (use testbed load for UDP)")
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    largest = min(MAX_CONNECTIONS, max(nofile - 64, 1))
    if not 1 <= spec.connections <= largest:
        raise UsageError(f"--connections must be 1-{largest}, not {spec.connections}")
    if not 1 <= spec.payload_size <= MAX_PAYLOAD:
        raise UsageError(f"--payload-size must be 1-{MAX_PAYLOAD} bytes, not {spec.payload_size}")
    if not spec.duration > 0:
        raise UsageError("--duration must be longer than 0 s")
    if spec.max_requests < 1:
        raise UsageError(f"--max-requests must be 1 or more, not {spec.max_requests}")
    if spec.reopens < 0:
        raise UsageError(f"--reopens must be 0 or more, not {spec.reopens}")
    if spec.expect not in (None, "echo", "upper"):
        raise UsageError(f"--expect must be echo or upper, not {spec.expect!r}")
    placement: Any = "free"
    if spec.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise UsageError("--pin needs at least two CPUs (one for the server, one for "
                             "the client)")
        placement = {"server": cpus[:1], "client": cpus[1:2]}
    if spec.target:
        if spec.server_options:
            raise UsageError("give either --target or server options, not both")
        target = Target.parse(spec.target, schemes=("tcp",), allow_remote=spec.allow_remote)
        if isinstance(placement, dict):
            placement["server"] = "not started here: left where it runs"
        return BenchPlan(spec, target, None, None, placement, spec.expect or "echo")
    if spec.server_pid:
        raise UsageError("--server-pid goes with --target (a server started here is known)")
    parsed = parse_server_options(spec.server_options)
    if parsed.udp:
        raise UsageError("TCP only: --udp is not supported (use testbed load for UDP)")
    return BenchPlan(spec, None, parsed.model, parsed.service, placement,
                     spec.expect or parsed.service)
