"""Sampling a process tree with psutil while a load runs: CPU, memory, threads, processes, fds.

A :class:`Sampler` thread takes a :class:`TreeSample` of each watched tree
(the server and whatever it forked; each locust worker) every ``interval``
seconds, stamped with ``time.time()``, so the figures of any measured window
can be cut out afterwards with :func:`window_figures`.

CPU time of a tree, and why it counts the dead. A forking server's children
live for one connection; once one has exited psutil can no longer see it, and
a sampler that only summed the live processes would lose its CPU. Linux keeps
it for us: when a parent waits for (reaps) a child, the child's user and
system time, plus everything its own reaped children used, is added to the
parent's ``children_user`` / ``children_system`` (``cutime``/``cstime`` in
``/proc/PID/stat``). So the CPU of a tree at an instant is, over the processes
alive in it, ``user + system + children_user + children_system``: each live
process counts for itself and for every descendant it has reaped, and a child
that has exited but is not yet reaped (a zombie) still shows its own times. The
figure is cumulative, so a window's CPU is its value at the window's end
minus its value at the start (each interpolated between the nearest samples).
One race remains: a child reaped between the reading of its parent and the
listing of the children is missed by that one sample (the next one finds it in
its parent's ``children_*``), an error of at most one short child's CPU at
one window edge. Threads need nothing special: a process's times include its
threads', the exited ones too. And a live single-threaded process's own times
are read to the nanosecond (:func:`testbed.proctree.run_time`), not only in the
10 ms ticks of ``/proc/PID/stat``, which round a child forked just before a
window down by up to a tick in each of user and system at its end.

Each sample is one :func:`testbed.proctree.read_tree` walk (a zombie counts as a
process and for its CPU, a child gone since the listing not at all).

RSS is summed over the tree's processes, so pages a forked child still shares
with its parent count twice: it is an upper bound of the tree's memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from testbed import steal
from testbed.proctree import read_tree

MIB = 1024 * 1024


@dataclass(frozen=True)
class TreeSample:
    """One reading of a process tree at ``t`` (seconds since the epoch)."""

    t: float
    cpu_s: float  # cumulative user+system of the tree, reaped descendants included
    rss: int  # bytes, summed
    threads: int
    processes: int
    fds: int


def sample_tree(root: psutil.Process) -> TreeSample | None:
    """Read the tree under ``root`` now, without USS (:func:`testbed.proctree.read_tree`
    and its counting rule); None once the root is gone."""
    reading = read_tree(root)
    if reading is None:
        return None
    return TreeSample(reading.t, reading.cpu_s, reading.rss, reading.threads,
                      reading.processes, reading.fds)


class Sampler:
    """A daemon thread sampling named process trees until :meth:`stop`, and with them the
    machine's CPU times (:mod:`testbed.steal`), so that the share the host took in any
    window can be cut out too (:meth:`host_steal`)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval = interval
        self.samples: dict[str, list[TreeSample]] = {}
        self.machine: list[tuple[float, steal.CpuTimes]] = []
        self._roots: dict[str, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="testbed-sampler", daemon=True)

    def watch(self, name: str, pid: int) -> None:
        """Start sampling the tree of ``pid`` under ``name`` (ignored if it is already gone)."""
        try:
            root = psutil.Process(pid)
        except psutil.Error:
            return
        with self._lock:
            self._roots[name] = root
            self.samples.setdefault(name, [])
        self._take(name, root)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def _take(self, name: str, root: psutil.Process) -> None:
        sample = sample_tree(root)
        with self._lock:
            if sample is None:
                self._roots.pop(name, None)
            else:
                self.samples[name].append(sample)

    def sample_now(self) -> None:
        times = steal.read()
        with self._lock:
            roots = list(self._roots.items())
            if times is not None:
                self.machine.append((time.time(), times))
        for name, root in roots:
            self._take(name, root)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample_now()

    def stop(self) -> None:
        """Take a last sample of what is still alive, and end the thread."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()
        self.sample_now()

    def host_steal(self, start: float, end: float) -> float | None:
        """The share of the machine's CPU time the host took in ``[start, end]`` (seconds
        since the epoch), from the readings around it; None without readings on both sides."""
        with self._lock:
            machine = list(self.machine)
        before = [times for t, times in machine if t <= start][-1:]
        after = [times for t, times in machine if t >= end][:1]
        if not before or not after:
            return None
        return steal.share(before[0], after[0])

    def series(self, name: str) -> list[TreeSample]:
        with self._lock:
            return list(self.samples.get(name, []))

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return {name: [asdict(s) for s in samples] for name, samples in self.samples.items()}


def cpu_at(samples: Sequence[TreeSample], t: float) -> float | None:
    """Cumulative CPU seconds at ``t``, interpolated linearly between the nearest samples."""
    if not samples:
        return None
    if t <= samples[0].t:
        return samples[0].cpu_s
    for before, after in zip(samples, samples[1:], strict=False):
        if before.t <= t <= after.t:
            span = after.t - before.t
            share = (t - before.t) / span if span > 0 else 1.0
            return before.cpu_s + share * (after.cpu_s - before.cpu_s)
    return samples[-1].cpu_s


def window_figures(samples: Sequence[TreeSample], start: float, end: float) -> dict[str, Any] | None:
    """CPU seconds used in ``[start, end]`` and the peaks sampled in it (None without samples)."""
    if not samples:
        return None
    inside = [s for s in samples if start <= s.t <= end]
    if not inside:  # a window shorter than the interval: the samples around it
        after = [s for s in samples if s.t > end][:1]
        before = [s for s in samples if s.t < start][-1:]
        inside = before + after
    cpu_start, cpu_end = cpu_at(samples, start), cpu_at(samples, end)
    assert cpu_start is not None and cpu_end is not None
    return {
        "cpu_s": max(cpu_end - cpu_start, 0.0),
        "peak_rss_mib": max(s.rss for s in inside) / MIB,
        "peak_threads": max(s.threads for s in inside),
        "peak_processes": max(s.processes for s in inside),
        "peak_fds": max(s.fds for s in inside),
        "samples": len(inside),
    }


def covered(samples: Sequence[TreeSample], start: float, end: float) -> bool:
    """Whether samples exist on both sides of ``[start, end]`` (so its CPU is measured, not guessed)."""
    return bool(samples) and samples[0].t <= start + 0.5 and samples[-1].t >= end - 0.5


#: A side whose cores are at least this busy ran out of CPU: it was the limit.
BUSY = 0.9


def server_cpu(before: TreeSample | None, after: TreeSample | None,
               requests: int) -> dict[str, Any]:
    """The server tree's CPU between two samples, per core and per request (testbed bench
    and testbed wrk record it the same way); ``measured`` False without both samples."""
    record: dict[str, Any] = {"measured": before is not None and after is not None}
    if before is not None and after is not None:
        cpu = max(after.cpu_s - before.cpu_s, 0.0)
        span = after.t - before.t
        record.update(cpu_s=cpu, cores_busy=cpu / span if span > 0 else None,
                      cpu_us_per_request=cpu / requests * 1e6 if requests else None,
                      processes=after.processes, threads=after.threads)
    return record


def limit_of(placement: Any, server_busy: float | None, client_busy: float,
             client_cores: float = 1.0) -> str:
    """Which side ran out of CPU: client, server, both, neither, or unknown.

    The server's share is known only when it is pinned (its CPUs are its capacity);
    otherwise only a busy client can be told.
    """
    client = client_busy >= BUSY * client_cores
    if not isinstance(placement, dict) or not isinstance(placement["server"], list) \
            or server_busy is None:
        return "client" if client else "unknown"
    server = server_busy >= BUSY * len(placement["server"])
    return {(True, True): "both", (True, False): "client", (False, True): "server",
            (False, False): "neither"}[(client, server)]
