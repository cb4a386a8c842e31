"""5. file descriptors: exhaustion under a low soft limit, then --max-connections."""

from __future__ import annotations

import time
from contextlib import suppress

import psutil

from testbed.processes import ServerProcess
from testbed.resilience.common import (
    CPU_LIMIT,
    REDUCED,
    Figures,
    Scale,
    close_all,
    count_tracebacks,
    family_of,
    holds_up_to,
    open_idle,
    probe,
    running,
    served_again,
    settled_family,
    tree_cpu_percent,
    wait_for_eof,
)

#: what a server logs when accept() runs out of descriptors (strerror of EMFILE)
EXHAUSTION = "Too many open files"

MAX_CONNECTIONS = 50  # --max-connections of the descriptor check's second phase


def tree_fds(pid: int) -> int:
    total = 0
    for proc in family_of(pid):
        with suppress(psutil.Error):
            total += proc.num_fds()
    return total


def _saturated(server: ServerProcess, within: float) -> None:
    """Wait (bounded) until the server logs exhaustion or its descriptor count settles."""
    deadline = time.monotonic() + within
    last, steady = -1, 0
    while time.monotonic() < deadline and EXHAUSTION not in server.stderr_text():
        count = tree_fds(server.pid)
        steady = steady + 1 if count == last else 0
        if steady >= 3:
            return
        last = count
        time.sleep(0.1)


def check_descriptors(model: str, scale: Scale = REDUCED) -> Figures:
    """Soft limit of 64 descriptors, 200 connections: survives, idles, logs once, recovers.

    Then --max-connections 50 and 200 connections: 50 are served, the rest are turned
    away at once (they see EOF), each rejection is logged, and the server serves after.
    """
    figures = Figures(model, "descriptors")
    # A listen queue deep enough for all of them: SYNs are not dropped, so every
    # client is either accepted or waiting in the queue, which is the saturated state.
    backlog = str(scale.descriptors + 56)
    with running(model, "echo", "--backlog", backlog, nofile=scale.nofile) as server:
        # Each process that accepts logs its own burst (the workers of reuseport, prefork).
        processes = settled_family(server.pid)
        # 1.5 s: long enough for a SYN the full queue dropped to be retried once
        held, failed = open_idle(server.address, scale.descriptors, within=1.5)
        figures.faults += 1
        try:
            _saturated(server, within=2.0)
            cpu = tree_cpu_percent(server.pid, 1.0)
            alive_saturated = server.running
        finally:
            close_all(held)
        recovered = server.running and served_again(server.address, "echo", 10.0, figures)
        figures.survived += recovered
        stderr = server.stderr_text()
    bursts = sum(1 for line in stderr.splitlines() if EXHAUSTION in line)
    figures.measure("connections", f"{len(held)} open, {failed} not")
    figures.measure("cpu saturated", f"{cpu:.1f}%")
    figures.measure("exhaustion logged", f"{bursts}x")
    figures.expect(alive_saturated, "the server died with its descriptors exhausted")
    figures.expect(cpu < CPU_LIMIT, f"{cpu:.0f}% CPU with descriptors exhausted (>= {CPU_LIMIT:g}%)")
    figures.expect(bursts <= processes, f"descriptor exhaustion logged {bursts} times in one "
                   f"burst by {processes} process(es)")
    figures.expect(recovered, "no normal client served after the connections closed")
    figures.expect(count_tracebacks(stderr) == 0, "traceback on stderr")
    _max_connections(model, scale, backlog, figures)
    return figures


def _max_connections(model: str, scale: Scale, backlog: str, figures: Figures) -> None:
    turned_away = scale.descriptors - MAX_CONNECTIONS
    with running(model, "echo", "--backlog", backlog,
                 "--max-connections", str(MAX_CONNECTIONS)) as server:
        # A multi-process model may count per process (reuseport: like worker_connections).
        processes = settled_family(server.pid)
        baseline = tree_fds(server.pid)
        held, _ = open_idle(server.address, scale.descriptors, within=1.5)
        figures.faults += 1
        try:
            # Turned away means closed at accept: once closes stop coming, that is all of them.
            closed = wait_for_eof(held, within=3.0, enough=turned_away, quiet=0.5)
            fds = tree_fds(server.pid)
        finally:
            close_all(held)
        # Once the server has let go of their sockets, the next client must not be turned away.
        deadline = time.monotonic() + 5.0
        while tree_fds(server.pid) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        _, first = probe(server.address, "echo", timeout=3.0)
        recovered = server.running and served_again(server.address, "echo", 10.0, figures)
        figures.survived += recovered
        stderr = server.stderr_text()
    logged = sum(1 for line in stderr.splitlines() if " rejected" in line)
    figures.measure(f"max-connections {MAX_CONNECTIONS}",
                    f"{len(held) - len(closed)} held, {len(closed)} turned away, "
                    f"{logged} logged, {fds} fds")
    figures.expect(recovered, "no normal client served after --max-connections turned some away")
    figures.expect(first is None, f"the first client after the others left was denied ({first}): "
                   "connections already closed still counted against --max-connections")
    figures.expect(count_tracebacks(stderr) == 0, "traceback on stderr (--max-connections)")
    if holds_up_to(model, MAX_CONNECTIONS):  # else the limit is moot: the others wait
        bound = MAX_CONNECTIONS * processes
        figures.expect(len(held) - len(closed) <= bound,
                       f"--max-connections {MAX_CONNECTIONS}: {len(held) - len(closed)} clients "
                       f"held by {processes} process(es)")
        figures.expect(len(closed) >= scale.descriptors - bound,
                       f"--max-connections {MAX_CONNECTIONS}: only {len(closed)} of "
                       f"{turned_away} extra clients turned away")
        figures.expect(logged >= len(closed), f"{len(closed)} clients turned away, {logged} logged")
