"""Checking a bench spec before any socket or process exists: :func:`check_bench` -> BenchPlan."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, field
from typing import Any

from clients.bench import MAX_CONNECTIONS, MAX_PIPELINE
from clients.framing import tagged
from clients.harness import EXPECTED
from testbed.bench.spec import MAX_PAYLOAD, BenchSpec
from testbed.target import Target, UsageError, parse_server_options

#: Models that serve each connection in a process of its own: driving one with N
#: connections makes N processes, so the bench stops at ``--process-limit``.
PROCESS_PER_CONNECTION = frozenset({"forking"})
#: The services whose replies the closed loop can verify (a line in, its answer out).
LINE_SERVICES = tuple(EXPECTED)
#: ``GET /`` over keep-alive HTTP/1.1, each response verified (clients.framing.HttpFraming).
HTTP = "http"
#: What ``--expect`` may name: a line service, or http.
EXPECTS = (*LINE_SERVICES, HTTP)
#: Descriptors this process needs beyond one per connection (stdio, the pollers, psutil's).
SPARE_DESCRIPTORS = 64


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
    descriptors: dict[str, int] = field(default_factory=dict)  # this process's RLIMIT_NOFILE
    versus: Target | None = None  # the second target of a head-to-head run (--versus)


def check_bench(spec: BenchSpec) -> BenchPlan:
    """Refuse what can't run, with one clear line (UsageError); the run's settings."""
    if spec.udp:
        raise UsageError("TCP only: --udp is not supported (use testbed load for UDP)")
    if not 1 <= spec.connections <= MAX_CONNECTIONS:
        raise UsageError(f"--connections must be 1-{MAX_CONNECTIONS}, not {spec.connections}")
    if spec.active is not None and not 1 <= spec.active <= spec.connections:
        raise UsageError(f"--active must be 1-{spec.connections} (the --connections), "
                         f"not {spec.active}")
    if not 1 <= spec.pipeline <= MAX_PIPELINE:
        raise UsageError(f"--pipeline must be 1-{MAX_PIPELINE}, not {spec.pipeline}")
    if not spec.open_timeout > 0:
        raise UsageError("--open-timeout must be longer than 0 s")
    if not 1 <= spec.payload_size <= MAX_PAYLOAD:
        raise UsageError(f"--payload-size must be 1-{MAX_PAYLOAD} bytes, not {spec.payload_size}")
    if not spec.duration > 0:
        raise UsageError("--duration must be longer than 0 s")
    if spec.max_requests < 1:
        raise UsageError(f"--max-requests must be 1 or more, not {spec.max_requests}")
    if spec.reopens < 0:
        raise UsageError(f"--reopens must be 0 or more, not {spec.reopens}")
    if spec.expect not in (None, *EXPECTS):
        raise UsageError(f"--expect must be one of {', '.join(EXPECTS)}, not {spec.expect!r}")
    descriptors = ensure_descriptors(spec.connections)
    placement: Any = "free"
    if spec.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise UsageError("--pin needs at least two CPUs (one for the server, one for "
                             "the client)")
        placement = {"server": cpus[:1], "client": cpus[1:2]}
    Target.check_versus(spec.versus, spec.versus_pid, spec.target)
    if spec.target:
        if spec.server_options or spec.server_nofile:
            raise UsageError("give either --target or server options, not both")
        target = Target.parse(spec.target, schemes=("tcp", "http"),
                              allow_remote=spec.allow_remote)
        if isinstance(placement, dict):
            placement["server"] = "not started here: left where it runs"
        expect = spec.expect or (HTTP if target.scheme == "http" else "echo")
        check_framing(expect, spec)
        versus = (target.versus(spec.versus, allow_remote=spec.allow_remote) if spec.versus
                  else None)
        return BenchPlan(spec, target, None, None, placement, expect, descriptors, versus)
    if spec.server_pid:
        raise UsageError("--server-pid goes with --target (a server started here is known)")
    if spec.server_nofile is not None and spec.server_nofile < 16:
        raise UsageError(f"--server-nofile must be 16 or more, not {spec.server_nofile}")
    parsed = parse_server_options(spec.server_options)
    if parsed.udp:
        raise UsageError("TCP only: --udp is not supported (use testbed load for UDP)")
    if parsed.service not in EXPECTS:
        raise UsageError(f"the bench speaks the line services and http ({', '.join(EXPECTS)}), "
                         f"not {parsed.service}: use testbed load for it")
    expect = spec.expect or parsed.service
    if (expect == HTTP) != (parsed.service == HTTP):
        raise UsageError(f"--expect {expect} can't check the {parsed.service} service's replies")
    check_framing(expect, spec)
    refusal = beyond_process_limit(parsed.model, spec.connections, spec.process_limit)
    if refusal:
        raise UsageError(refusal)
    return BenchPlan(spec, None, parsed.model, parsed.service, placement, expect, descriptors)


def check_framing(expect: str, spec: BenchSpec) -> None:
    """A line pipeline tags its requests with their index: they must be long enough."""
    if expect == HTTP:
        return
    try:
        tagged(b"x" * spec.payload_size, spec.pipeline)
    except ValueError as exc:
        raise UsageError(f"--pipeline {spec.pipeline}: {exc} (--payload-size)") from None


def beyond_process_limit(model: str, connections: int, limit: int) -> str | None:
    """Why ``connections`` are not attempted on ``model``, or None if they may be."""
    if model in PROCESS_PER_CONNECTION and connections > limit:
        return (f"not attempted beyond {limit:,} connections: the {model} model would need "
                f"{connections:,} processes, one per connection (--process-limit {limit})")
    return None


def ensure_descriptors(connections: int) -> dict[str, int]:
    """Raise this process's soft RLIMIT_NOFILE as far as ``connections`` need and the hard
    limit allows (a server started here inherits it); UsageError, one line, beyond that."""
    needed = connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise UsageError(
                f"--connections {connections:,} needs {needed:,} open descriptors, but this "
                f"process may have at most {hard:,} (its hard RLIMIT_NOFILE): raise it "
                f"(ulimit -n {needed}, prlimit --nofile={needed}) or ask for fewer connections")
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return {"soft": soft, "hard": hard, "needed": needed}
