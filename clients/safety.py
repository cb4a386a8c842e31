"""The loopback guard: the testbed's traffic goes to this machine unless the user says otherwise.

A client calls ``ensure_allowed(host, allow_remote=...)`` (``ensure_loopback``
is the same check under its older name) before it makes a socket; it raises
UnsafeTarget, whose message is one line for the user, or returns. Names are
resolved first and every address they resolve to must be allowed
(``localhost`` is fine; a name that resolves elsewhere is refused). The check
runs before any socket is made, so a refused target never sees a packet.

Allowed are loopback addresses and, while a lab is up, the addresses of that
lab (``testbed lab``), from a process inside one of its hosts. A lab is up
while its state file ``$TESTBED_LAB_DIR/<name>.json`` (default
``/run/testbed/labs``) says ``"status": "up"`` and every namespace it records
still exists as ``/run/netns/<ns>`` with the recorded inode. Its addresses are
its blocks, ``"ipv4"`` (a /24 of 198.18.0.0/15) and ``"ipv6"`` (a /64 of a
ULA prefix). "Inside one of its hosts" means this process's network namespace
(``/proc/self/ns/net``) is one of the lab's: a lab host has no route out of
the lab, whereas the root namespace would send 198.18.0.1 to its default
gateway, off the machine. So ``testbed lab exec h1 -- testbed nc h2 9000``
passes, and the same command outside the lab is refused. The state files are
written by ``testbed/lab/state.py`` (its docstring documents the format); this
module reads them and never imports ``testbed/``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from pathlib import Path
from typing import Any

#: Where the lab's state files are; testbed/lab/state.py has the same default (keep in step).
DEFAULT_LAB_DIR = "/run/testbed/labs"


class UnsafeTarget(ValueError):
    """The target is not a loopback address and ``--allow-remote`` was not given."""


def resolve(host: str) -> list[str]:
    """Every address ``host`` names (an address names itself)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise UnsafeTarget(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    return sorted({info[4][0] for info in infos})


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def labs_up() -> list[dict[str, Any]]:
    """The state of every lab that is up (state file says so, its namespaces exist)."""
    directory = Path(os.environ.get("TESTBED_LAB_DIR") or DEFAULT_LAB_DIR)
    try:
        paths = sorted(p for p in directory.iterdir()
                       if p.name.endswith(".json") and not p.name.startswith("."))
    except OSError:
        return []
    labs = []
    for path in paths:
        try:
            state = json.loads(path.read_text())
            spaces = state["namespaces"]
            if (state.get("status") == "up" and spaces
                    and all(_netns_inode(f"/run/netns/{ns['name']}") == ns["inode"]
                            for ns in spaces)):
                labs.append(state)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return labs


def _owners(address: str, labs: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """(the up labs whose blocks hold ``address``, whether this process is inside one of them)."""
    ip = ipaddress.ip_address(address)
    here = _netns_inode("/proc/self/ns/net")
    owners, inside = [], False
    for lab in labs:
        try:
            blocks = [ipaddress.ip_network(lab["ipv4"]), ipaddress.ip_network(lab["ipv6"])]
        except (KeyError, ValueError):
            continue
        if any(ip.version == b.version and ip in b for b in blocks):
            owners.append(str(lab["name"]))
            inside = inside or here in {ns["inode"] for ns in lab["namespaces"]}
    return owners, inside


def ensure_allowed(host: str, *, allow_remote: bool = False) -> None:
    """Raise UnsafeTarget unless every address of ``host`` is loopback or an address of a lab
    that is up, asked from inside that lab; anything goes with ``allow_remote``."""
    if allow_remote:
        return
    outside = [a for a in resolve(host) if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if not outside:
        return
    labs = labs_up() if any(ipaddress.ip_address(a.split("%")[0]).is_private
                            for a in outside) else []
    refused, elsewhere = [], None
    for address in outside:
        owners, inside = _owners(address.split("%")[0], labs)
        if not inside:
            refused.append(address)
            elsewhere = owners[0] if owners else elsewhere
    if not refused:
        return
    if elsewhere is not None and len(refused) == len(outside):
        raise UnsafeTarget(
            f"refusing to send traffic to {host} ({', '.join(refused)}): an address of lab "
            f"{elsewhere}, reached only from inside its hosts (testbed lab exec --name "
            f"{elsewhere} h1 -- ...); pass --allow-remote to load a machine you are allowed to test")
    raise UnsafeTarget(
        f"refusing to send traffic to {host} ({', '.join(refused)}): not a loopback "
        "address nor one of a lab that is up; pass --allow-remote to load a machine you are "
        "allowed to test")


def ensure_loopback(host: str, *, allow_remote: bool = False) -> None:
    """The older name of :func:`ensure_allowed` (same check: loopback, or a lab's own address
    from inside that lab, or anything with ``allow_remote``)."""
    ensure_allowed(host, allow_remote=allow_remote)
