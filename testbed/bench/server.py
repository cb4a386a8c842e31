"""The server a bench measures: started here (:func:`start`), or found behind a target.

Behind a ``--target`` the process tree whose CPU is read is ``--server-pid``'s (checked to
listen on the target's port) or the one found listening there (:func:`listening_pid`).
"""

from __future__ import annotations

import psutil

from testbed.processes import ServerProcess, StartError, cpu_affinity, start_server
from testbed.target import UsageError


def start(options: list[str], cpus: list[int] | None, nofile: int | None = None) -> ServerProcess:
    """``testbed serve OPTIONS`` on ``cpus``; UsageError with the server's own error line."""
    try:
        with cpu_affinity(cpus):
            return start_server(options, nofile=nofile)
    except StartError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        said = next((line for line in reversed(lines) if "error:" in line), lines[0])
        status = 2 if "exited with status 2" in lines[0] else 1
        raise UsageError(f"the server did not start: {said.strip()}", status) from None


def _server_root(proc: psutil.Process) -> psutil.Process:
    """The top of a server's own process tree: up through the parents that run the same
    command (a prefork or reuseport worker's parent is the server that forked it)."""
    try:
        command = proc.cmdline()
        while (parent := proc.parent()) is not None and parent.cmdline() == command:
            proc = parent
    except psutil.Error:
        pass
    return proc


def listens_on(root: psutil.Process, port: int) -> bool:
    """Whether ``root`` or one of its descendants has a TCP socket listening on ``port``."""
    try:
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return False
    for proc in members:
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in proc.net_connections("tcp")):
                return True
        except psutil.Error:
            continue
    return False


def listening_pid(port: int) -> int | None:
    """The root of the server listening on TCP ``port`` here, if we may see it.

    A socket shared by several processes (prefork's workers) is listed once, under any one
    of them: the root is found from there, so the whole tree's CPU is measured.
    """
    try:
        pids = {c.pid for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    except (psutil.Error, OSError):
        return None
    roots = set()
    for pid in pids:
        try:
            roots.add(_server_root(psutil.Process(pid)).pid)
        except psutil.Error:
            continue
    return roots.pop() if len(roots) == 1 else None


def target_root(server_pid: int | None, port: int,
                option: str = "--server-pid") -> psutil.Process | None:
    """The process tree whose CPU a --target bench measures: ``server_pid``'s (given as
    ``option``), checked, or the one found listening on the port (None if it is not ours
    to see)."""
    if not server_pid:
        pid = listening_pid(port)
        try:
            return psutil.Process(pid) if pid else None
        except psutil.Error:
            return None
    try:
        root = psutil.Process(server_pid)
    except psutil.Error:
        raise UsageError(f"{option} {server_pid}: no such process (or not ours to "
                         "see)") from None
    if not listens_on(root, port):
        raise UsageError(f"{option} {server_pid}: neither it nor its children listen "
                         f"on port {port}")
    return root
