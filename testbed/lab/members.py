"""The processes of a lab: recorded when started, found by namespace, stopped by pid.

A process started through the lab (``testbed lab exec``, ``testbed load
--lab``) is recorded in the state file with its pid and start time, so a pid
reused by an unrelated process after a reboot or a long run is never signalled.
At ``down``, the lab also stops every process whose network namespace *is*
one of the lab's (``/proc/PID/ns/net`` has the inode recorded for it, as
``ip netns pids`` finds them): a namespace is only freed when no process holds
it, and a process left in it would keep the lab's links alive. Processes are
never chosen by name.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil

from testbed.lab import state as lab_state


def started_at(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def record(name: str, pid: int, host: str, argv: list[str]) -> None:
    """Add ``pid`` (running in ``host``) to lab ``name``'s state."""
    with lab_state.locked():
        state = lab_state.load(name)
        if state is None:
            return
        state["processes"].append({"pid": pid, "started": started_at(pid), "host": host,
                                   "argv": argv})
        lab_state.save(state)


def forget(name: str, pid: int) -> None:
    with lab_state.locked():
        state = lab_state.load(name)
        if state is None:
            return
        state["processes"] = [p for p in state["processes"] if p["pid"] != pid]
        lab_state.save(state)


def alive(entry: dict[str, Any]) -> bool:
    """The recorded process still runs (same pid, same start time)."""
    when = started_at(entry["pid"])
    return when is not None and (entry.get("started") is None
                                 or abs(when - entry["started"]) < 0.05)


def in_namespaces(inodes: set[int]) -> list[int]:
    """The pids whose network namespace has one of ``inodes``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino in inodes:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def inside(state: dict[str, Any]) -> dict[str, list[tuple[int, str]]]:
    """{host: [(pid, command line)]} of every process running in each of the lab's hosts."""
    found: dict[str, list[tuple[int, str]]] = {}
    by_inode = {ns["inode"]: ns["name"] for ns in state.get("namespaces", [])
                if lab_state.netns_inode(ns["name"]) == ns["inode"]}
    host_of = {entry["namespace"]: entry["name"] for entry in state["hosts"]}
    for pid in in_namespaces(set(by_inode)):
        try:
            proc = psutil.Process(pid)
            inode = os.stat(f"/proc/{pid}/ns/net").st_ino
            line = " ".join(proc.cmdline()) or proc.name()
        except (psutil.Error, OSError):
            continue
        host = host_of.get(by_inode.get(inode, ""), "fabric")
        found.setdefault(host, []).append((pid, line))
    return found


def stop(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM each pid, then SIGKILL the ones still alive after ``grace`` seconds."""
    procs = []
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            proc = psutil.Process(pid)
            proc.send_signal(signal.SIGTERM)
            procs.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    _, left = psutil.wait_procs(procs, timeout=grace)
    for proc in left:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(left, timeout=grace)


def stop_all(state: dict[str, Any]) -> None:
    """Stop the recorded processes, then every process still inside the lab's namespaces."""
    stop([p["pid"] for p in state.get("processes", []) if alive(p)])
    inodes = {lab_state.netns_inode(ns["name"]) for ns in state.get("namespaces", [])
              if ns.get("inode") in (None, lab_state.netns_inode(ns["name"]))} - {None}
    for _ in range(3):
        pids = in_namespaces(inodes) if inodes else []
        if not pids:
            return
        stop(pids, grace=1.0)
        time.sleep(0.05)
