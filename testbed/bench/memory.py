"""What a server's process tree holds at one instant: memory, threads, processes, descriptors.

Memory is the unique set size (USS, ``psutil.Process.memory_full_info().uss``: the
pages no other process maps) summed over the tree wherever the kernel gives it to us,
so the pages a forked child still shares with its parent are counted once, in neither
rather than in both; RSS, which counts them once per process, is the fallback (and is
reported beside it). ``figure`` says which one ``bytes`` is. The tree is walked by
:func:`testbed.proctree.read_tree` (the load sampler's walk, with USS): a zombie child
counts as a process holding nothing, a child gone since the listing not at all.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import psutil

from testbed.proctree import read_tree


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
    """Read the tree under ``root`` now, USS included (:func:`testbed.proctree.read_tree`
    and its counting rule); None once the root is gone."""
    reading = read_tree(root, uss=True)
    if reading is None:
        return None
    uss = reading.uss
    return TreeHoldings(reading.t, "rss" if uss is None else "uss",
                        reading.rss if uss is None else uss, reading.rss, uss,
                        reading.threads, reading.processes, reading.fds)


def added_per_connection(before: TreeHoldings | None, after: TreeHoldings | None,
                         connections: int) -> float | None:
    """Bytes the tree grew by per connection opened between the two readings (its figure)."""
    if before is None or after is None or connections <= 0 or before.figure != after.figure:
        return None
    return (after.bytes - before.bytes) / connections
