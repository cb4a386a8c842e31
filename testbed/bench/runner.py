"""Running a checked bench: start (or find) the server, warm it up, open, measure, check.

A run is a warm-up on connections that are closed before the window opens (a fresh
Python server can be slowed for its first connections by its allocator), then the
measured phase on new connections:

1. the server's tree is read (:mod:`testbed.bench.memory`: USS or RSS, threads,
   processes, descriptors);
2. every connection is opened, paced (:meth:`clients.bench.ClosedLoop.open`), and the
   tree is read again once it has settled (the server may still be accepting or
   spawning when the client's handshakes are done): the growth per connection;
3. the window: the active connections carry the closed loop, the server's CPU read
   around it (:func:`testbed.sampling.sample_tree`: user + system, the forking model's
   reaped children included);
4. each idle connection is proved alive by one verified request.

With ``windows`` above 1, steps 1-4 are taken that many times in a row, each on new
connections, after the one warm-up (:func:`testbed.bench.summary.summarize_windows`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from clients.bench import ClosedLoop, Result
from clients.framing import HttpFraming
from clients.safety import UnsafeTarget, ensure_loopback
from loadtests.common import make_payload
from testbed import steal
from testbed.bench import server as servers
from testbed.bench.memory import TreeHoldings, holdings
from testbed.bench.plan import HTTP, BenchPlan, check_bench
from testbed.bench.spec import BenchSpec
from testbed.bench.summary import (
    alternating,
    summarize_bench,
    summarize_versus,
    summarize_windows,
)
from testbed.processes import ServerProcess, cpu_affinity
from testbed.proctree import read_tree
from testbed.sampling import TreeSample, sample_tree
from testbed.target import UsageError

#: Longest wait for the server's tree to settle after the client's handshakes are done.
SETTLE_S = 10.0
#: Seconds a server started here gets to exit after SIGTERM (it is not measured) before
#: SIGKILL: a threading server holding 10,000 threads can take longer than the default 5.
STOP_GRACE = 2.0
#: Lines of the server's stderr kept in the summary (its own account of a failure).
LOG_LINES = 5


@dataclass
class Measured:
    """The measured phase: the loop's result, the CPU readings around the window, the
    tree before opening and with every connection open."""

    result: Result
    before: TreeSample | None
    after: TreeSample | None
    held_before: TreeHoldings | None
    held_open: TreeHoldings | None
    #: the share of the CPU time the host took over the window (testbed.steal): of the whole
    #: machine, and of the server's and the client's cores when they are pinned
    host_steal: dict[str, float | None] | None = None


def _loop(host: str, port: int, spec: BenchSpec, payload: bytes, expect: str, *,
          warmup: bool) -> ClosedLoop:
    """The closed loop of one phase: lines of ``payload``, or ``GET /`` for http."""
    connections = (spec.active or spec.connections) if warmup else spec.connections
    framing = HttpFraming(host, port, spec.pipeline) if expect == HTTP else None
    return ClosedLoop(host, port, payload, expect=expect, connections=connections,
                      active=None if warmup else spec.active, pipeline=spec.pipeline,
                      io_timeout=spec.io_timeout, connect_timeout=spec.connect_timeout,
                      reopens=spec.reopens, open_timeout=spec.open_timeout, framing=framing)


def _warmup(host: str, port: int, spec: BenchSpec, payload: bytes, expect: str) -> Result:
    """The active connections' loop for ``spec.warmup`` s, closed after: nothing recorded."""
    with _loop(host, port, spec, payload, expect, warmup=True) as loop:
        return loop.run(spec.warmup, spec.max_requests)


def settled(root: psutil.Process, *, memory: bool = True) -> TreeHoldings | None:
    """Wait until the tree has stopped changing: three readings that agree on descriptors,
    threads and processes (the server may still be accepting, spawning or forking when the
    client's handshakes are done); at most SETTLE_S.

    With ``memory``, the readings are 0.2 s apart, USS included, and the last one is
    returned. Without, they are the plain walk (no smaps read), 0.05 s apart, and None is
    returned: the wait alone matters then, so that forks and exits of the connections just
    opened or closed stay out of the CPU window.
    """
    read, every = (holdings, 0.2) if memory else (read_tree, 0.05)
    deadline = time.monotonic() + SETTLE_S
    last, agreed = read(root), 0
    while last is not None and time.monotonic() < deadline:
        time.sleep(every)
        now = read(root)
        if now is None:
            break
        same = (now.fds, now.threads, now.processes) == (last.fds, last.threads, last.processes)
        agreed = agreed + 1 if same else 0
        last = now
        if agreed >= 2:
            break
    return last if memory else None


def _steal_now(placement: object) -> dict[str, steal.CpuTimes | None]:
    """The CPU times of the machine and, when pinned, of the server's and client's cores."""
    pinned = placement if isinstance(placement, dict) else {}
    # a side's cores are a list; a --target's server is "not started here" (no cores known)
    cores = {side: pinned[side] for side in ("server", "client")
             if isinstance(pinned.get(side), list)}
    return {"server": None, "client": None, **steal.read_sides({"machine": None, **cores})}


def _measure(host: str, port: int, spec: BenchSpec, payload: bytes, expect: str,
             root: psutil.Process | None, placement: object = None) -> Measured:
    loop = _loop(host, port, spec, payload, expect, warmup=False)
    try:
        # settled: the warm-up's connections, closed by the client, are gone at the server
        # (its holdings the baseline of the memory per connection; without memory readings
        # the wait below covers the closing too, so this one is not needed)
        held_before = settled(root) if root is not None and spec.memory else None
        loop.open()
        held_open = settled(root, memory=spec.memory) if root is not None else None
        before = sample_tree(root) if root is not None else None
        stolen = _steal_now(placement)
        result = loop.run(spec.duration, spec.max_requests)
        after = sample_tree(root) if root is not None else None
        ended = _steal_now(placement)
        host_steal = {side: steal.share(start, ended[side]) for side, start in stolen.items()}
        if loop.active < spec.connections:
            loop.check_idle()
    finally:
        loop.close()
    return Measured(result, before, after, held_before, held_open, host_steal)


def _log_tail(server: ServerProcess | None) -> list[str]:
    if server is None:
        return []
    lines = [line for line in server.stderr_text().splitlines() if line.strip()]
    return lines[-LOG_LINES:]


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
                                   placement["server"] if isinstance(placement, dict) else None,
                                   spec.server_nofile)
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
            if plan.versus is not None:
                return run_versus(plan, root)
        pid = root.pid if root is not None else (server.pid if server else None)
        client_cpus = placement["client"] if isinstance(placement, dict) else None
        with cpu_affinity(client_cpus):
            warm = None
            if spec.warmup > 0:
                warm = _warmup(host, port, spec, payload, plan.expect)
            windows = []
            for _ in range(spec.windows):
                windows.append(_measure(host, port, spec, payload, plan.expect, root, placement))
                if server is not None and not server.running:
                    break
        server_died = server is not None and not server.running
        log = _log_tail(server)
        summaries = [summarize_bench(plan, url, pid, warm, measured, server_died, log)
                     for measured in windows]
        return summaries[0] if spec.windows == 1 else summarize_windows(summaries)
    finally:
        if server is not None:
            server.stop(grace=STOP_GRACE)
            server.cleanup()


def run_versus(plan: BenchPlan, root: psutil.Process | None) -> dict:
    """``--versus``: the target and the second server head to head, after a warm-up each,
    ``windows`` windows each, alternating (target first, then the other first, and so on,
    so that neither is always measured second): a slow spell of the machine then falls on
    both, and the ratio of each pair of windows is steadier than either's figure
    (:func:`testbed.bench.summary.summarize_versus`)."""
    spec, target, versus = plan.spec, plan.target, plan.versus
    assert target is not None and versus is not None
    versus.reach(connect_timeout=spec.connect_timeout)
    other = servers.target_root(spec.versus_pid, versus.port, "--versus-pid")
    sides = [(target, root), (versus, other)]
    client_cpus = plan.placement["client"] if isinstance(plan.placement, dict) else None
    windows: list[list[Measured]] = [[], []]
    with cpu_affinity(client_cpus):
        warm = [_warmup(side.host, side.port, spec, make_payload(spec.payload_size),
                        plan.expect) if spec.warmup > 0 else None for side, _ in sides]
        for index in range(spec.windows):
            for which in alternating(index, len(sides)):
                side, tree = sides[which]
                windows[which].append(_measure(side.host, side.port, spec,
                                               make_payload(spec.payload_size), plan.expect,
                                               tree, plan.placement))
    summaries = []
    for (side, tree), measured, warmed in zip(sides, windows, warm, strict=True):
        pid = tree.pid if tree is not None else None
        each = [summarize_bench(plan, side.url, pid, warmed, window, False)
                for window in measured]
        summaries.append(each[0] if spec.windows == 1 else summarize_windows(each))
    return summarize_versus(*summaries)


def run_bench(spec: BenchSpec) -> dict:
    """Check ``spec``, run it, return its summary (one JSON-able dict, fields in the README).

    Raises UsageError for a spec that can't run (status 2) or a server that would not start
    or a target that can't be reached (status 1).
    """
    return run_checked(check_bench(spec))
