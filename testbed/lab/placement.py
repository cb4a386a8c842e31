"""Where a distributed run's processes go in a lab: what other commands ask of the lab.

``testbed load --lab NAME`` puts the server on h1, the locust master on h2 and
the workers on h3..hN (one after another, round robin; a 2-host lab puts them
beside the master on h2). Each role is a :class:`Slot`: its host, its address
and the argv prefix that starts a process inside that host. The lab must be up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from testbed.lab import iproute
from testbed.lab import state as lab_state
from testbed.lab.state import LabError


@dataclass(frozen=True)
class Slot:
    """One host of the lab as a place to run a process."""

    host: str
    namespace: str
    ipv4: str
    ipv6: str

    @property
    def prefix(self) -> list[str]:
        """Put this before an argv to run it inside the host."""
        return iproute.exec_prefix(self.namespace)

    def describe(self) -> dict[str, str]:
        return {"host": self.host, "namespace": self.namespace, "address": self.ipv4}


@dataclass(frozen=True)
class Placement:
    """The slots of one distributed run, and the conditions of the lab's links."""

    lab: str
    server: Slot
    master: Slot
    workers: tuple[Slot, ...]
    conditions: dict[str, Any]

    def describe(self) -> dict[str, Any]:
        """What the results record: which process ran on which host and address."""
        return {"lab": self.lab, "server": self.server.describe(),
                "master": self.master.describe(),
                "workers": [slot.describe() for slot in self.workers],
                "conditions": self.conditions}


def _slot(entry: dict[str, Any]) -> Slot:
    return Slot(entry["name"], entry["namespace"], entry["ipv4"], entry["ipv6"])


def slot(lab: str, host: str) -> Slot:
    """Host ``host`` of lab ``lab`` (which must be up)."""
    return _slot(lab_state.host(_up(lab), host))


def _up(lab: str) -> dict[str, Any]:
    lab_state.check_name(lab)
    why = iproute.missing_privilege()
    if why:
        raise LabError(why, 2)
    state = lab_state.load(lab)
    if state is None or not lab_state.is_up(state):
        raise LabError(f"lab {lab} is not up (testbed lab up --name {lab})", 2)
    return state


def placement(lab: str, workers: int) -> Placement:
    """Server on h1, master on h2, ``workers`` workers over h3..hN; LabError if it can't be."""
    state = _up(lab)
    hosts = [_slot(entry) for entry in state["hosts"]]
    if len(hosts) < 2:
        raise LabError(f"lab {lab} has {len(hosts)} host; a distributed run needs at least 2 "
                       "(server on h1, master on h2, workers on h3..hN)", 2)
    pool = hosts[2:] or hosts[1:2]
    return Placement(lab, hosts[0], hosts[1],
                     tuple(pool[i % len(pool)] for i in range(workers)),
                     state.get("conditions", {}))
