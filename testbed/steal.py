"""The share of this machine's CPU time that its hypervisor took (steal), over a span.

On a virtual machine the host may run other work on the cores this guest was given: the
time a virtual CPU was ready to run but did not is counted as steal (Linux, /proc/stat,
read through psutil). A server's own CPU time does not show it, but everything measured
in wall-clock time does: a request that burns 5 ms of CPU takes longer to serve, and a
comparison run while the host took 10% of the cores is not the one run while it took 1%.
``testbed compare`` records it for every run, so that a figure that moved between two
comparisons can be told from a machine that moved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class CpuTimes:
    """Seconds of CPU time since boot, summed over every core: stolen, and in all."""

    steal: float
    total: float


#: The parts of a CPU's time that add up to all of it (guest and guest_nice are already
#: inside user and nice: not added again).
PARTS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def read(cpus: Sequence[int] | None = None) -> CpuTimes | None:
    """The CPU times now, of the whole machine or summed over ``cpus`` (a pinned server's
    cores: the host may take one core's time and not another's); None where the system
    does not count steal."""
    return read_sides({"": cpus})[""]


def read_sides(sides: Mapping[str, Sequence[int] | None]) -> dict[str, CpuTimes | None]:
    """:func:`read` of several sets of cores (None: every core) from one reading of the
    system, so that they are of the same instant."""
    every = psutil.cpu_times(percpu=True)
    found: dict[str, CpuTimes | None] = {}
    for side, cpus in sides.items():
        chosen = every if cpus is None else [every[cpu] for cpu in cpus
                                             if 0 <= cpu < len(every)]
        if not chosen or any(getattr(times, "steal", None) is None for times in chosen):
            found[side] = None
            continue
        found[side] = CpuTimes(steal=sum(times.steal for times in chosen),
                               total=sum(getattr(times, name, 0.0) for times in chosen
                                         for name in PARTS))
    return found


def share(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """The share of the CPU time between two readings that was stolen (0 to 1); None
    without both readings, or when no time passed between them."""
    if before is None or after is None or after.total <= before.total:
        return None
    return max(0.0, after.steal - before.steal) / (after.total - before.total)
