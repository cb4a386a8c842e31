"""The lab's state file: what ``testbed lab up`` made, so that ``down`` removes exactly that.

One small JSON file per lab, ``$TESTBED_LAB_DIR/<name>.json`` (default
``/run/testbed/labs``, a tmpfs that vanishes on reboot together with the
namespaces it describes). Every object is recorded *before* it is created, so a
run killed half-way leaves a file that names everything it may have made;
``down`` tolerates objects that are already gone. The format (``"format":
"testbed-lab/1"``)::

    {"format": "testbed-lab/1", "name": "lab", "created": "2026-12-01T09:40:00Z",
     "index": 0, "ipv4": "198.18.0.0/24", "ipv6": "fd74:6573:7462::/64",
     "fabric": {"namespace": "tb-lab-fabric", "bridge": "br0"},
     "hosts": [{"name": "h1", "namespace": "tb-lab-h1", "ipv4": "198.18.0.1",
                "ipv6": "fd74:6573:7462::1", "interface": "eth0", "port": "h1"}],
     "namespaces": [{"name": "tb-lab-fabric", "inode": 4026532178}, ...],
     "links": [{"namespace": "tb-lab-fabric", "name": "br0"}, ...],
     "files": ["/etc/netns/tb-lab-h1/hosts", ...], "directories": ["/etc/netns/tb-lab-h1"],
     "nft_tables": [{"namespace": "tb-lab-fabric", "family": "bridge", "name": "testbed"}],
     "conditions": {"h1": {"rate": "10mbit", "loss": 20.0, "delay": null}},
     "processes": [{"pid": 4242, "started": 1764582000.12, "host": "h2", "argv": [...]}],
     "status": "up"}

``clients/safety.py`` reads the same files (it never imports this module; the
directory and the fields it reads, ``namespaces``, ``hosts[].ipv4/ipv6``, are
kept in step by hand). Writers take the directory's lock, so two ``up`` runs
never pick the same address block.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FORMAT = "testbed-lab/1"
#: The default state directory; clients/safety.py has the same default (keep them in step).
DEFAULT_DIR = "/run/testbed/labs"
#: Every lab takes one /24 of RFC 2544's benchmarking block, 512 labs at most.
IPV4_BLOCK = ipaddress.ip_network("198.18.0.0/15")
#: A ULA /48 (RFC 4193) of the project's; lab number N gets the /64 with subnet id N.
IPV6_BLOCK = ipaddress.ip_network("fd74:6573:7462::/48")
MAX_LABS = 512
MAX_HOSTS = 250
NAME = re.compile(r"^[a-z][a-z0-9]{0,15}$")
NETNS_DIR = Path("/run/netns")


class LabError(RuntimeError):
    """A lab operation failed; the message is one line for the user."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def state_dir() -> Path:
    return Path(os.environ.get("TESTBED_LAB_DIR") or DEFAULT_DIR)


def state_path(name: str) -> Path:
    return state_dir() / f"{name}.json"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise LabError(f"not a lab name: {name!r} (a lowercase letter, then up to 15 lowercase "
                       "letters or digits)", 2)
    return name


def namespace(lab: str, role: str) -> str:
    """The namespace of ``role`` (``fabric``, ``h1``...) in lab ``lab``: ``tb-<lab>-<role>``."""
    return f"tb-{lab}-{role}"


def block(index: int) -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    """The address blocks of lab number ``index``: a /24 and a /64."""
    v4 = ipaddress.ip_network((int(IPV4_BLOCK.network_address) + (index << 8), 24))
    v6 = ipaddress.ip_network((int(IPV6_BLOCK.network_address) + (index << 64), 64))
    return v4, v6  # type: ignore[return-value]


def new_state(name: str, index: int, hosts: int) -> dict[str, Any]:
    """The state of a lab about to be built: addresses planned, nothing made yet."""
    v4, v6 = block(index)
    return {
        "format": FORMAT, "name": name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "index": index, "ipv4": str(v4), "ipv6": str(v6),
        "fabric": {"namespace": namespace(name, "fabric"), "bridge": "br0"},
        "hosts": [{"name": f"h{i}", "namespace": namespace(name, f"h{i}"),
                   "ipv4": str(v4.network_address + i), "ipv6": str(v6.network_address + i),
                   "interface": "eth0", "port": f"h{i}"} for i in range(1, hosts + 1)],
        "namespaces": [], "links": [], "files": [], "directories": [], "nft_tables": [],
        "conditions": {}, "processes": [], "status": "building",
    }


@contextmanager
def locked() -> Iterator[None]:
    """Hold the state directory's lock (creating the directory if needed)."""
    directory = state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load(name: str) -> dict[str, Any] | None:
    """The state of lab ``name``, or None if it has no state file."""
    path = state_path(name)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read the lab's state file {path}: {exc}")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise LabError(f"{path} is not a lab state file of this version ({FORMAT})")
    return data


def save(state: dict[str, Any]) -> None:
    """Write ``state`` atomically (a temporary file renamed over the old one), synced."""
    path = state_path(state["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as handle:
        json.dump(state, handle, indent=1)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def remove(name: str) -> None:
    state_path(name).unlink(missing_ok=True)


def all_states() -> list[dict[str, Any]]:
    """The state of every lab with a state file, in name order (unreadable files skipped)."""
    directory = state_dir()
    try:
        names = sorted(p.name[:-5] for p in directory.iterdir()
                       if p.name.endswith(".json") and not p.name.startswith("."))
    except FileNotFoundError:
        return []
    states = []
    for name in names:
        try:
            state = load(name)
        except LabError:
            continue
        if state is not None:
            states.append(state)
    return states


def free_index(states: list[dict[str, Any]]) -> int:
    """The lowest lab number no other lab uses."""
    used = {state.get("index") for state in states}
    for index in range(MAX_LABS):
        if index not in used:
            return index
    raise LabError(f"all {MAX_LABS} address blocks of 198.18.0.0/15 are in use")


def netns_inode(name: str) -> int | None:
    """The inode of namespace ``name``'s handle in /run/netns, or None if there is none."""
    try:
        return os.stat(NETNS_DIR / name).st_ino
    except OSError:
        return None


def is_up(state: dict[str, Any]) -> bool:
    """Every namespace the lab recorded still exists and is the one it made."""
    spaces = state.get("namespaces") or []
    return (state.get("status") == "up" and bool(spaces)
            and all(netns_inode(ns["name"]) == ns["inode"] for ns in spaces))


def host(state: dict[str, Any], name: str) -> dict[str, Any]:
    for entry in state["hosts"]:
        if entry["name"] == name:
            return entry
    names = ", ".join(entry["name"] for entry in state["hosts"])
    raise LabError(f"lab {state['name']} has no host {name!r} (hosts: {names})", 2)
