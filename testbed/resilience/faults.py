"""6. faults: a client killed mid-transfer, a child killed mid-request, SIGTERM under load."""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter

import psutil

from clients.harness import open_connection
from testbed.processes import ManagedProcess, ServerProcess
from testbed.resilience.common import (
    EXIT_LIMIT,
    REDUCED,
    Figures,
    Scale,
    close_all,
    count_tracebacks,
    family_of,
    group_survivors,
    open_idle,
    probe,
    read_up_to,
    running,
    served_again,
)

_SENDER = (
    "import socket, sys\n"
    "sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
    "block = (b'x' * 1023 + b'\\n') * 64\n"
    "sock.sendall(block)\n"
    "print('sending', flush=True)\n"
    "while True:\n"
    "    sock.sendall(block)\n"
)


def tcp_connections(proc: psutil.Process) -> list:
    """The process's TCP sockets (psutil >= 6 names it net_connections, before connections)."""
    method = getattr(proc, "net_connections", None) or proc.connections
    return method(kind="tcp")


def _holder(server_pid: int, port: int, client_port: int) -> int | None:
    """The PID of the process in the server's tree that holds our connection, if a child."""
    for proc in family_of(server_pid)[1:]:
        try:
            conns = tcp_connections(proc)
        except psutil.Error:
            continue
        for conn in conns:
            if conn.laddr and conn.laddr.port == port and conn.raddr \
                    and conn.raddr.port == client_port:
                return proc.pid
    return None


def check_faults(model: str, scale: Scale = REDUCED) -> Figures:
    """A client killed mid-transfer, a child killed mid-request, SIGTERM under load."""
    figures = Figures(model, "faults")
    with running(model, "upper") as server:
        _client_killed(server, figures)
        _child_killed(server, figures)
    _sigterm_under_load(model, figures)
    return figures


def _client_killed(server: ServerProcess, figures: Figures) -> None:
    argv = [sys.executable, "-c", _SENDER, server.host, str(server.port)]
    with ManagedProcess(argv) as client:
        client.wait_for_line(re.compile("^sending"), 10.0)
        time.sleep(0.2)  # let it fill the pipes: killed while sending, its replies unread
        client.signal(signal.SIGKILL)
        client.stop()
    figures.faults += 1
    ok = server.running and served_again(server.address, "upper", 10.0, figures)
    figures.survived += ok
    figures.measure("client killed", "served after" if ok else "NOT served after")
    figures.expect(ok, "not serving after a client was killed mid-transfer")


def _child_killed(server: ServerProcess, figures: Figures) -> None:
    with open_connection(*server.address, timeout=5) as sock:
        sock.sendall(b"half a request")  # mid-request: no newline yet
        client_port = sock.getsockname()[1]
        holder = None
        deadline = time.monotonic() + 3.0
        while holder is None and time.monotonic() < deadline:
            holder = _holder(server.pid, server.port, client_port)
            if holder is None:
                if len(family_of(server.pid)) < 2 and time.monotonic() > deadline - 2.5:
                    break  # no child processes at all: threads or one loop serve it
                time.sleep(0.05)
        if holder is None:
            figures.measure("child killed", "n/a (no child holds a connection)")
            return
        os.kill(holder, signal.SIGKILL)  # our server's own child, found by its connection
        figures.faults += 1
        figures.expected_denial = "the killed child's own client loses its request"
        sock.settimeout(5)
        _, kind = read_up_to(sock, 1)
    figures.deny(kind or "other")  # the killed request: its client sees the connection go
    ok = server.running and served_again(server.address, "upper", 10.0, figures)
    reaped = False
    deadline = time.monotonic() + 5.0
    while not reaped and time.monotonic() < deadline:
        try:
            psutil.Process(holder).status()  # a zombie still exists: not reaped yet
        except psutil.NoSuchProcess:
            reaped = True
        if not reaped:
            time.sleep(0.05)
    figures.survived += ok
    figures.measure("child killed", f"client saw {kind}; parent {'serves' if ok else 'STOPPED'}"
                    f", child {'reaped' if reaped else 'NOT reaped'}")
    figures.expect(ok, "the parent stopped serving after a child was killed mid-request")
    figures.expect(reaped, "the killed child was not reaped within 5 s")


def _sigterm_under_load(model: str, figures: Figures) -> None:
    with running(model, "upper", "--delay", "0.05") as server:
        stop = threading.Event()
        done = Counter[str]()
        lock = threading.Lock()

        def load(number: int) -> None:
            rnd = random.Random(number)
            for _ in range(10_000):
                if stop.is_set():
                    return
                payload = rnd.randbytes(rnd.randint(1, 256 * 1024)).replace(b"\n", b"") + b"\n"
                latency, kind = probe(server.address, "upper", timeout=5.0, payload=payload)
                with lock:
                    done["ok" if kind is None else kind] += 1

        threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(6)]
        idle: list[tuple[socket.socket, float]] = []
        try:
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 5.0
            while done["ok"] < 10 and time.monotonic() < deadline:
                time.sleep(0.02)
            idle, _ = open_idle(server.address, 10, within=1.0)  # held open through SIGTERM
            family = {proc.pid for proc in family_of(server.pid)}
            figures.faults += 1
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            try:
                status: int | None = server.popen.wait(EXIT_LIMIT + 5)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: reported below
                status = None
            took = time.monotonic() - started
            survivors = sorted(set(group_survivors(server.pid)) | {
                pid for pid in family - {server.pid}
                if psutil.pid_exists(pid) and _alive(pid)})
        finally:
            stop.set()
            close_all(idle)
            for thread in threads:
                thread.join(10)
        stderr = server.stderr_text()
    clean = status == 0 and took < EXIT_LIMIT and not survivors and not count_tracebacks(stderr)
    figures.survived += clean
    figures.exchanges += done["ok"]
    figures.measure("sigterm", f"exit {status} in {took:.2f}s, {len(survivors)} orphans, "
                    f"{done['ok']} exchanges before")
    figures.expect(status == 0, f"exit status {status} after SIGTERM under load")
    figures.expect(took < EXIT_LIMIT, f"took {took:.1f}s to exit after SIGTERM")
    figures.expect(not survivors, f"processes left behind after SIGTERM: {survivors}")
    figures.expect(count_tracebacks(stderr) == 0, "traceback on stderr at SIGTERM")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
