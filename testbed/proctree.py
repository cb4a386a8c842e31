"""One walk of a process tree with psutil: what the root and its descendants use and hold.

:func:`read_tree` is the walk the load sampler (:func:`testbed.sampling.sample_tree`,
every 0.25 s) and the bench's memory readings (:func:`testbed.bench.memory.holdings`)
share, so both count a tree's processes by the same rule:

- every process listed under the root is read once, all of its figures inside one
  ``psutil.Process.oneshot()``, and added to the tree only once the whole reading has
  succeeded, so a process that vanishes mid-reading adds nothing partial;
- a zombie (a child that has exited and is not yet reaped) counts as a process and
  for its own CPU times, but holds no memory, threads or descriptors (psutil reports
  one thread for it, which it no longer runs);
- a child gone (or unreadable) since the listing is not counted at all: its parent's
  ``children_*`` CPU times show it once it is reaped;
- the root gone, or unreadable, means None; a zombie root is still read (its CPU,
  its reaped children's included, is the last figure of a server that has exited).

USS (``memory_full_info().uss``) reads every process's ``smaps``, which costs far more
than the rest of the walk: it is read only when asked for, and is None for the tree
once one live member's is not available (another user's process, a platform without it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class TreeReading:
    """The figures of a tree at ``t`` (seconds since the epoch), summed over its processes."""

    t: float
    cpu_s: float  # cumulative user+system, the reaped descendants' included
    rss: int  # bytes; pages shared between processes count once in each
    uss: int | None  # bytes; None when not asked for or not known for every live member
    threads: int
    processes: int
    fds: int


def run_time(pid: int) -> float | None:
    """Seconds the main thread of ``pid`` has run, to the nanosecond (the first field of
    ``/proc/PID/schedstat``); None where the kernel does not keep it."""
    try:
        with open(f"/proc/{pid}/schedstat", "rb") as file:
            return int(file.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def _read(proc: psutil.Process, uss: bool) -> tuple[float, int, int | None, int, int]:
    """(cpu_s, rss, uss, threads, fds) of one process; uss is None if not asked for or not
    available. Raises psutil.Error if the process is gone or cannot be read.

    A single-threaded process's own CPU time is the larger of two readings.
    ``/proc/PID/stat`` counts every thread it ever ran, but in whole clock ticks (10 ms),
    each of user and system rounded down: a process forked a moment before a window opens
    has almost nothing to round at the start and up to a tick in each at the end, so a
    forking server's ten children lost 19% of their CPU over a 0.5 s bench window (19.8
    µs a request, against 25.1 by their run time and 24.5 by the busy time of their
    core). :func:`run_time` counts to the nanosecond, but only its one live thread: the
    ticks are the larger only where other threads ran and ended. A multi-threaded
    process's ticks are its threads' total rounded once, and it has lived longer than a
    window in every model, so its rounding evens out over windows (and reading the run
    time of each of a threading server's 10,000 threads would slow every walk).
    """
    cpu = 0.0
    with proc.oneshot():
        try:
            times = proc.cpu_times()
            reaped = times.children_user + times.children_system
            cpu = times.user + times.system + reaped
            if proc.status() == psutil.STATUS_ZOMBIE:
                return cpu, 0, 0, 0, 0
            rss = proc.memory_info().rss
            threads, fds = proc.num_threads(), proc.num_fds()
            ran = run_time(proc.pid) if threads == 1 else None
            if ran is not None:
                cpu = max(cpu, ran + reaped)
            unique = None
            if uss:
                try:
                    unique = proc.memory_full_info().uss
                except (psutil.AccessDenied, AttributeError):
                    pass
        except psutil.ZombieProcess:
            return cpu, 0, 0, 0, 0  # a zombie psutil found by a failed read: it holds nothing
    return cpu, rss, unique, threads, fds


def read_tree(root: psutil.Process, *, uss: bool = False) -> TreeReading | None:
    """Read the tree under ``root`` now (USS too if ``uss``); None once the root is gone.

    The counting rule of the module's docstring applies.
    """
    t = time.time()
    try:
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    cpu = 0.0
    rss = threads = fds = processes = 0
    unique: int | None = 0 if uss else None
    for index, proc in enumerate(members):
        try:
            p_cpu, p_rss, p_uss, p_threads, p_fds = _read(proc, unique is not None)
        except psutil.Error:
            if index == 0:
                return None  # the root itself went away
            continue  # exited and reaped since the listing (or not ours to read)
        cpu += p_cpu
        rss += p_rss
        threads += p_threads
        fds += p_fds
        processes += 1
        if unique is not None:  # asked for, and known for every member so far
            unique = None if p_uss is None else unique + p_uss
    return TreeReading(t, cpu, rss, unique, threads, processes, fds)
