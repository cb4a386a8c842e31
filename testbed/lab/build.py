"""Building a lab and taking it down: namespaces, the bridge, veth pairs, addresses, hosts files.

``up`` records each object in the state file before making it, and on any
failure takes down what it recorded; ``down`` removes exactly what the state
file names, in reverse: the lab's processes, its nftables table, its links, its
namespaces (only if the handle in /run/netns still is the namespace it made),
its files and directories, then the state file itself. Each step tolerates an
object already gone, so ``down`` can run twice, or after a crash.

Topology: the fabric namespace holds the bridge ``br0`` and one port per host
(named after the host); each host namespace holds ``lo`` and ``eth0``, the
other end of its veth pair. Links are created inside the fabric namespace with
their peer moved straight into the host, so the root namespace never gets an
interface, not even for a moment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from testbed.lab import conditions, iproute, members
from testbed.lab import state as lab_state
from testbed.lab.state import LabError

#: ``ip netns exec NS`` bind-mounts the files in /etc/netns/NS/ over /etc/.
ETC_NETNS = Path("/etc/netns")


def hosts_file(state: dict[str, Any]) -> str:
    """The /etc/hosts of every host of the lab: localhost and each host, IPv4 and IPv6."""
    lines = [f"# written by testbed lab up for lab {state['name']}; removed by testbed lab down",
             "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    for entry in state["hosts"]:
        names = f"{entry['name']} {entry['name']}.{state['name']}"
        lines += [f"{entry['ipv4']}\t{names}", f"{entry['ipv6']}\t{names}"]
    return "\n".join(lines) + "\n"


def _make_dir(state: dict[str, Any], path: Path, save) -> None:
    if path.is_dir():
        return
    state["directories"].append(str(path))
    save(state)
    path.mkdir(mode=0o755)


def _write_file(state: dict[str, Any], path: Path, text: str, save) -> None:
    if path.exists():
        raise LabError(f"{path} exists already and is not the lab's: remove it or pick another "
                       "--name")
    state["files"].append(str(path))
    save(state)
    with open(path, "x") as handle:
        handle.write(text)


def _add_namespace(state: dict[str, Any], name: str, save) -> None:
    if lab_state.netns_inode(name) is not None:
        raise LabError(f"a network namespace named {name} exists already and is not this "
                       "lab's: pick another --name")
    state["namespaces"].append({"name": name, "inode": None})
    save(state)
    iproute.ip(None, "netns", "add", name)
    state["namespaces"][-1]["inode"] = lab_state.netns_inode(name)
    save(state)
    iproute.ip(name, "link", "set", "lo", "up")


def _build(state: dict[str, Any], table: dict[str, dict[str, Any]], save) -> None:
    fabric = state["fabric"]["namespace"]
    bridge = state["fabric"]["bridge"]
    _add_namespace(state, fabric, save)
    if any(c.get("delay") for c in table.values()):
        conditions.check_netem(fabric)
    # the fabric only forwards: no addresses of its own, not even IPv6 link-local ones
    state["links"].append({"namespace": fabric, "name": bridge})
    save(state)
    iproute.ip(fabric, "link", "add", bridge, "type", "bridge")
    iproute.ip(fabric, "link", "set", bridge, "addrgenmode", "none")
    iproute.ip(fabric, "link", "set", bridge, "up")
    for entry in state["hosts"]:
        ns, port, dev = entry["namespace"], entry["port"], entry["interface"]
        _add_namespace(state, ns, save)
        state["links"].append({"namespace": fabric, "name": port, "peer": dev, "peer_ns": ns})
        save(state)
        iproute.ip(fabric, "link", "add", port, "type", "veth", "peer", "name", dev, "netns", ns)
        iproute.ip(fabric, "link", "set", port, "master", bridge, "addrgenmode", "none", "up")
        iproute.ip(ns, "addr", "add", f"{entry['ipv4']}/24", "dev", dev)
        iproute.ip(ns, "-6", "addr", "add", f"{entry['ipv6']}/64", "dev", dev, "nodad")
        iproute.ip(ns, "link", "set", dev, "up")
    _make_dir(state, ETC_NETNS, save)
    text = hosts_file(state)
    for entry in state["hosts"]:
        directory = ETC_NETNS / entry["namespace"]
        _make_dir(state, directory, save)
        _write_file(state, directory / "hosts", text, save)
    conditions.apply(state, table, save)


def up(name: str, hosts: int, table_of: Any) -> dict[str, Any]:
    """Build lab ``name`` with ``hosts`` hosts; ``table_of(host names)`` gives its conditions."""
    with lab_state.locked():
        old = lab_state.load(name)
        if old is not None:
            how = "is up" if lab_state.is_up(old) else "was left behind (a crashed run?)"
            raise LabError(f"lab {name} {how}: take it down first with testbed lab down "
                           f"--name {name}")
        index = lab_state.free_index(lab_state.all_states())
        state = lab_state.new_state(name, index, hosts)
        table = table_of([entry["name"] for entry in state["hosts"]])
        state["conditions"] = table
        lab_state.save(state)  # claims the index before the lock is released
    try:
        _build(state, table, lab_state.save)
    except BaseException:
        down(state)
        raise
    state["status"] = "up"
    lab_state.save(state)
    return state


def _gone(done) -> bool:
    text = done.stderr.lower()
    return any(phrase in text for phrase in ("cannot find device", "no such file",
                                             "does not exist", "not found", "invalid"))


def down(state: dict[str, Any]) -> list[str]:
    """Remove everything ``state`` records; the problems met (nothing raised) are returned."""
    problems: list[str] = []
    state["status"] = "down"
    # A namespace is the lab's if its handle has the recorded inode; one recorded without an
    # inode was being made when `up` was killed (it checked the name was free just before).
    mine = {ns["name"] for ns in state.get("namespaces", [])
            if lab_state.netns_inode(ns["name"]) is not None
            and ns.get("inode") in (None, lab_state.netns_inode(ns["name"]))}
    members.stop_all(state)
    for table in reversed(state.get("nft_tables", [])):
        if table["namespace"] in mine:
            try:  # without nft there is no table to delete (it would go with its namespace)
                iproute.nft(table["namespace"],
                            f"delete table {table['family']} {table['name']}\n", check=False)
            except LabError:
                pass
    for link in reversed(state.get("links", [])):
        if link["namespace"] in mine:
            done = iproute.ip(link["namespace"], "link", "del", link["name"], check=False)
            if done.returncode and not _gone(done):
                problems.append(f"link {link['name']}: {done.stderr.strip()}")
    for ns in reversed(state.get("namespaces", [])):
        inode = lab_state.netns_inode(ns["name"])
        if inode is None:
            continue
        if ns["name"] not in mine:
            problems.append(f"namespace {ns['name']} is not the one this lab made: left alone")
            continue
        done = iproute.ip(None, "netns", "del", ns["name"], check=False)
        if done.returncode:
            problems.append(f"namespace {ns['name']}: {done.stderr.strip()}")
    for path in reversed(state.get("files", [])):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
    for path in reversed(state.get("directories", [])):
        try:
            os.rmdir(path)
        except (FileNotFoundError, OSError):
            pass  # gone, or holds files that are not the lab's (another lab's): kept
    if not problems:
        lab_state.remove(state["name"])
    else:
        lab_state.save(state)
    return problems
