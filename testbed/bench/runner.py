"""Running a checked bench: start (or find) the server, warm it up, measure the window.

A run is a warm-up on connections that are closed before the window opens (a fresh
Python server can be slowed for its first connections by its allocator), then a measured
window on new connections. Around the window the server's whole process tree is read
(:func:`testbed.sampling.sample_tree`: user + system CPU, the forking model's reaped
children included).
"""

from __future__ import annotations

import psutil

from clients.bench import ClosedLoop, Result
from clients.safety import UnsafeTarget, ensure_loopback
from loadtests.common import make_payload
from testbed.bench import server as servers
from testbed.bench.plan import BenchPlan, check_bench
from testbed.bench.spec import BenchSpec
from testbed.bench.summary import summarize_bench
from testbed.processes import ServerProcess, cpu_affinity
from testbed.sampling import TreeSample, sample_tree
from testbed.target import UsageError


def _phase(host: str, port: int, spec: BenchSpec, payload: bytes, expect: str,
           seconds: float, root: psutil.Process | None
           ) -> tuple[Result, TreeSample | None, TreeSample | None]:
    """One set of connections for ``seconds``, the server tree read around it; closed after."""
    with ClosedLoop(host, port, payload, expect=expect, connections=spec.connections,
                    io_timeout=spec.io_timeout, connect_timeout=spec.connect_timeout,
                    reopens=spec.reopens) as loop:
        before = sample_tree(root) if root is not None else None
        result = loop.run(seconds, spec.max_requests)
        after = sample_tree(root) if root is not None else None
    return result, before, after


def run_checked(plan: BenchPlan) -> dict:
    """The run of a checked plan; the summary (:func:`testbed.bench.summary.summarize_bench`)."""
    spec = plan.spec
    payload = make_payload(spec.payload_size)
    placement = plan.placement
    server: ServerProcess | None = None
    try:
        root: psutil.Process | None = None
        if plan.target is None:
            server = servers.start(spec.server_options,
                                   placement["server"] if isinstance(placement, dict) else None)
            host, port, url = server.host, server.port, server.endpoint.url
            try:
                ensure_loopback(host, allow_remote=spec.allow_remote)
            except UnsafeTarget as exc:
                raise UsageError(f"the server listens on {url}: {exc}") from None
            try:
                root = psutil.Process(server.pid)
            except psutil.Error:
                pass  # already gone: the run says so
        else:
            host, port, url = plan.target.host, plan.target.port, plan.target.url
            plan.target.reach(connect_timeout=spec.connect_timeout)
            root = servers.target_root(spec.server_pid, port)
        pid = root.pid if root is not None else (server.pid if server else None)
        client_cpus = placement["client"] if isinstance(placement, dict) else None
        with cpu_affinity(client_cpus):
            warm = None
            if spec.warmup > 0:
                warm, _, _ = _phase(host, port, spec, payload, plan.expect, spec.warmup, None)
            window, before, after = _phase(host, port, spec, payload, plan.expect,
                                           spec.duration, root)
        server_died = server is not None and not server.running
        return summarize_bench(plan, url, pid, warm, window, before, after, server_died)
    finally:
        if server is not None:
            server.cleanup()


def run_bench(spec: BenchSpec) -> dict:
    """Check ``spec``, run it, return its summary (one JSON-able dict, fields in the README).

    Raises UsageError for a spec that can't run (status 2) or a server that would not start
    or a target that can't be reached (status 1).
    """
    return run_checked(check_bench(spec))
