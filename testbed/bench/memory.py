"""What a server's process tree holds at one instant: memory, threads, processes, descriptors.

Memory is the unique set size (USS, ``psutil.Process.memory_full_info().uss``: the
pages no other process maps) summed over the tree wherever the kernel gives it to us,
so the pages a forked child still shares with its parent are counted once, in neither
rather than in both; RSS, which counts them once per process, is the fallback (and is
reported beside it). ``figure`` says which one ``bytes`` is.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil


@dataclass(frozen=True)
class TreeHoldings:
    """One reading of a server's tree: ``bytes`` is ``uss`` where known, else ``rss``."""

    t: float
    figure: str  # "uss" or "rss"
    bytes: int
    rss: int
    uss: int | None
    threads: int
    processes: int
    fds: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def holdings(root: psutil.Process) -> TreeHoldings | None:
    """Read the tree under ``root`` now; None once the root is gone."""
    t = time.time()
    try:
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    rss = uss = threads = fds = processes = 0
    uss_known = True
    for index, proc in enumerate(members):
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                threads += proc.num_threads()
                fds += proc.num_fds()
                processes += 1
                if uss_known:
                    try:
                        uss += proc.memory_full_info().uss
                    except (psutil.AccessDenied, AttributeError):
                        uss_known = False
        except psutil.ZombieProcess:
            processes += 1  # a dead child holds no memory, threads or descriptors
        except psutil.Error:
            if index == 0:
                return None
    return TreeHoldings(t, "uss" if uss_known else "rss", uss if uss_known else rss, rss,
                        uss if uss_known else None, threads, processes, fds)


def added_per_connection(before: TreeHoldings | None, after: TreeHoldings | None,
                         connections: int) -> float | None:
    """Bytes the tree grew by per connection opened between the two readings (its figure)."""
    if before is None or after is None or connections <= 0 or before.figure != after.figure:
        return None
    return (after.bytes - before.bytes) / connections
