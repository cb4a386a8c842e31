"""What is particular to asyncio, prefork, threadpool and reuseport (the shared suites cover the rest)."""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

import psutil
import pytest

from clients.harness import ExchangeError, TCPClient, UDPClient, exchange_once
from tests.conftest import WITHOUT_UVLOOP, no_traceback

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``condition`` every 50 ms until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def workers_of(pid: int) -> set[int]:
    """The live (non-zombie) child processes of the server we started."""
    alive = set()
    for child in psutil.Process(pid).children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def wait_for_workers(pid: int, count: int, gone: int | None = None) -> set[int]:
    """The server's ``count`` workers once they are all up (and ``gone`` is not among them)."""

    def ready() -> set[int] | None:
        workers = workers_of(pid)
        return workers if len(workers) == count and gone not in workers else None

    return wait_until(ready, 10, f"{count} workers")  # type: ignore[return-value]


def kill_and_wait(server: int, worker: int) -> None:
    """SIGKILL a worker and wait until it is dead: a connection accepted in between would die too."""
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: worker not in workers_of(server), 10, f"worker {worker} to die")


def run_serve(*args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", "serve", *args],
                          capture_output=True, text=True, timeout=timeout)


def concurrently(count: int, work: Callable[[int], object]) -> list[object]:
    """Run ``work(i)`` in ``count`` threads released together; each result or exception."""
    results: list[object] = [None] * count
    barrier = threading.Barrier(count)

    def one(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - counted by the caller
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(25)
    return results


# -- the concurrency rule of test_models.py, for the new models ---------------------------

@pytest.mark.parametrize("model", ["asyncio", "prefork", "threadpool", "reuseport"])
def test_delay_overlaps(serve, model):
    """--delay 0.5 and 4 clients at once: with 4 workers (or none needed), < 1.2 s for all."""
    server = serve(model, "echo", "--delay", "0.5", "--workers", "4", "--quiet")
    clients = [TCPClient(*server.address, io_timeout=10).connect() for _ in range(4)]

    def one(i: int) -> None:
        try:
            clients[i].exchange(b"wait for me\n")
        finally:
            clients[i].close()

    start = time.monotonic()
    results = concurrently(4, one)
    elapsed = time.monotonic() - start
    assert results == [None] * 4
    assert elapsed < 1.2, f"{model} took {elapsed:.2f}s"


# -- prefork --------------------------------------------------------------------------------

def test_prefork_replaces_a_killed_worker_and_keeps_serving(serve):
    server = serve("prefork", "echo", "--workers", "2")
    original = wait_for_workers(server.pid, 2)
    first, second = sorted(original)
    kill_and_wait(server.pid, first)
    with TCPClient(*server.address) as client:  # the other worker serves meanwhile
        client.exchange(b"still here\n")
    replaced = wait_for_workers(server.pid, 2, gone=first)
    (newcomer,) = replaced - original
    assert f"(pid {first}) killed by SIGKILL: starting a new one" in server.stderr_text()
    # With the other original gone too, only the newcomer (or its own replacement) can serve.
    kill_and_wait(server.pid, second)
    with TCPClient(*server.address, io_timeout=10) as client:
        client.exchange(b"served by the replacement\n")
    assert psutil.pid_exists(newcomer)
    no_traceback(server.stderr_text())


def test_prefork_workers_die_with_their_parent(serve):
    """A SIGKILLed parent leaves no worker behind to hold the port (PR_SET_PDEATHSIG)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    server = serve("prefork", "echo", "--workers", "3")
    children = wait_for_workers(server.pid, 3)
    os.kill(server.pid, signal.SIGKILL)
    server.popen.wait(10)

    def gone() -> bool:
        return not any(psutil.pid_exists(pid) and psutil.Process(pid).status()
                       != psutil.STATUS_ZOMBIE for pid in children)

    wait_until(gone, 10, "the orphaned workers to die")


def test_prefork_max_connections_counts_every_worker(serve):
    server = serve("prefork", "echo", "--workers", "3", "--max-connections", "1")
    with TCPClient(*server.address) as held:
        held.exchange(b"I hold the only place\n")
        with pytest.raises(ExchangeError) as turned_away:
            exchange_once(*server.address, b"and me?\n", io_timeout=5)
        assert turned_away.value.kind in ("closed_early", "reset")
    assert "rejected: 1 connections open (--max-connections 1)" in server.stderr_text()


# -- threadpool -----------------------------------------------------------------------------

def test_threadpool_queues_then_rejects_when_the_queue_is_full(serve):
    """2 workers, room for 1 waiting, 10 slow clients at once: 3 served, the rest turned away."""
    server = serve("threadpool", "echo", "--workers", "2", "--queue", "1", "--delay", "1")

    def client(i: int) -> bytes:
        return exchange_once(*server.address, b"client %d\n" % i, io_timeout=10).reply

    started = time.monotonic()
    results = concurrently(10, client)
    elapsed = time.monotonic() - started
    served = [r for r in results if isinstance(r, bytes)]
    failed = Counter(r.kind for r in results if isinstance(r, ExchangeError))
    assert len(served) + sum(failed.values()) == 10, results
    assert len(served) >= 3, (served, failed)  # both workers, then the one that waited
    assert sum(failed.values()) >= 1, (served, failed)
    assert set(failed) <= {"closed_early", "reset"}, failed
    log = server.stderr_text()
    assert log.count("rejected: queue full (1 waiting)") == sum(failed.values()), log
    assert "queued: all 2 workers busy (1 waiting)" in log, log
    assert elapsed < 10


def test_threadpool_udp_goes_through_the_pool(serve):
    server = serve("threadpool", "upper", "--workers", "2", udp=True)
    with UDPClient(*server.address, expect="upper", timeout=2, retries=2) as client:
        for i in range(20):
            client.exchange(b"datagram %d" % i)


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_threadpool_workers_leave_sigterm_to_the_main_thread(serve):
    """The pool threads block SIGTERM/SIGINT: delivered to one of them, the main thread
    would stay blocked in accept() and the server would never stop."""
    server = serve("threadpool", "echo", "--workers", "3")
    with TCPClient(*server.address) as client:
        client.exchange(b"the pool is up\n")
    terms = 1 << (signal.SIGTERM - 1) | 1 << (signal.SIGINT - 1)
    blocked = {}
    for task in os.listdir(f"/proc/{server.pid}/task"):
        with open(f"/proc/{server.pid}/task/{task}/status") as status:
            fields = dict(line.split(":", 1) for line in status if ":" in line)
        blocked[int(task)] = int(fields["SigBlk"], 16) & terms == terms
    assert blocked.pop(server.pid) is False  # the main thread takes them
    assert len(blocked) == 3 and all(blocked.values()), blocked


# -- reuseport ------------------------------------------------------------------------------

def test_reuseport_spreads_connections_over_processes(serve):
    server = serve("reuseport", "echo", "--workers", "2", "--quiet")
    workers = wait_for_workers(server.pid, 2)
    clients = [TCPClient(*server.address).connect() for _ in range(16)]
    try:
        for client in clients:
            client.exchange(b"which process am I on?\n")  # so every one has been accepted

        def established(pid: int) -> int:
            return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp")
                       if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == server.port)

        per_worker = {pid: established(pid) for pid in workers}
        assert sum(per_worker.values()) == 16, per_worker
        assert sum(1 for n in per_worker.values() if n) >= 2, per_worker
        assert established(server.pid) == 0  # the parent never accepts
    finally:
        for client in clients:
            client.close()


def test_reuseport_fixed_port_in_use_is_a_clear_error(serve):
    """SO_REUSEPORT must not quietly join another server (ours or not) on a busy port."""
    for other in ("threading", "reuseport"):
        server = serve(other, "echo")
        result = run_serve("--model", "reuseport", "--port", str(server.port))
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"testbed serve: error: cannot listen on tcp://127.0.0.1:{server.port}: "
            "Address already in use"]


# -- asyncio --------------------------------------------------------------------------------

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    not HAVE_UVLOOP, reason="uvloop is not installed (pip install '.[uvloop]')"))]

ASYNC_WARNINGS = ("Traceback", "Task was destroyed", "unclosed", "Exception ignored",
                  "never retrieved", "Event loop is closed")


@pytest.mark.parametrize("loop", LOOPS)
def test_asyncio_sigterm_cancels_waits_and_closes_transports(serve, loop):
    """SIGTERM during pending delays: exit 0 at once, clients cut off, nothing left unclosed."""
    env = {**os.environ, "PYTHONWARNINGS": "always::ResourceWarning"}
    server = serve("asyncio", "echo", "--delay", "20", "--loop", loop, env=env)
    clients = [TCPClient(*server.address, io_timeout=10).connect() for _ in range(3)]
    for client in clients:
        client.sock.sendall(b"answer me in 20 s\n")
    wait_until(lambda: server.stderr_text().count("connected") == 3, 10, "3 connections")
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.popen.wait(10) == 0
    assert time.monotonic() - started < 3
    for client in clients:
        with pytest.raises(OSError):  # EOF or reset, long before the delay is over
            data = client.sock.recv(100)
            if not data:
                raise ConnectionResetError("closed")
        client.close()
    log = server.stderr_text()
    for word in ASYNC_WARNINGS:
        assert word not in log, log


@pytest.mark.parametrize("loop", LOOPS)
def test_asyncio_sigterm_while_the_loop_burns_cpu(serve, loop):
    """A signal that lands inside a coroutine (here: --work-ms) still stops the server.

    A Shutdown raised by a plain signal handler inside a task would become that
    task's exception and be lost; the model routes signals through the loop.
    """
    server = serve("asyncio", "echo", "--work-ms", "100", "--loop", loop, "--quiet")
    stop = threading.Event()

    def busy() -> None:
        try:
            with TCPClient(*server.address, io_timeout=5) as client:
                while not stop.is_set():
                    client.exchange(b"burn\n" * 3)
        except ExchangeError:
            pass

    threads = [threading.Thread(target=busy) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        # The loop is inside a burn most of the time; wait until it is working.
        proc = psutil.Process(server.pid)
        proc.cpu_percent()
        time.sleep(0.5)  # a sampling interval for cpu_percent, not readiness
        assert proc.cpu_percent() > 20
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        assert server.popen.wait(10) == 0
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    no_traceback(server.stderr_text())


def test_asyncio_idle_timeout_and_max_connections(serve):
    server = serve("asyncio", "echo", "--idle-timeout", "0.5", "--max-connections", "1")
    with TCPClient(*server.address, io_timeout=5) as held:
        held.exchange(b"mine\n")
        with pytest.raises(ExchangeError) as turned_away:
            exchange_once(*server.address, b"and me?\n")
        assert turned_away.value.kind in ("closed_early", "reset")
        started = time.monotonic()
        assert held.sock.recv(10) == b""  # closed by the server after 0.5 s of silence
        assert time.monotonic() - started < 4
    log = server.stderr_text()
    assert "rejected: 1 connections open (--max-connections 1)" in log
    assert "idle for 0.5s: closing" in log


def test_asyncio_uvloop_missing_is_one_clear_line():
    result = subprocess.run([sys.executable, *WITHOUT_UVLOOP, "serve", "--model", "asyncio",
                             "--loop", "uvloop"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("testbed serve: error: ")
    assert "uvloop" in lines[0] and "not installed" in lines[0]
    no_traceback(result.stderr)


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed (pip install '.[uvloop]')")
def test_asyncio_on_uvloop(serve):
    """The same model on libuv: delays are awaited, big payloads intact, UDP, clean SIGTERM."""
    delayed = serve("asyncio", "upper", "--loop", "uvloop", "--delay", "0.3")
    with TCPClient(*delayed.address, expect="upper") as client:
        assert client.exchange(b"on libuv\n").latency >= 0.25
    server = serve("asyncio", "upper", "--loop", "uvloop")
    with TCPClient(*server.address, expect="upper", io_timeout=20) as client:
        client.exchange(os.urandom(4 * 1024 * 1024))
    udp = serve("asyncio", "upper", "--loop", "uvloop", udp=True)
    with UDPClient(*udp.address, expect="upper", timeout=2, retries=2) as client:
        client.exchange(b"datagram on libuv")
        client.exchange(b"")
    for proc in (delayed, server, udp):
        proc.signal(signal.SIGTERM)
        assert proc.popen.wait(10) == 0
        no_traceback(proc.stderr_text())
    with socket.socket() as probe:
        assert probe.connect_ex(server.address) != 0  # nothing listens any more


# -- a lost signal (slow: a race, so many tries) --------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("model", ["threadpool", "prefork", "reuseport"])
def test_sigterm_is_never_lost(model):
    """Start, serve UDP, SIGTERM, 30 times: every one exits within 4 s.

    A Python signal handler that runs while the main thread is between bytecodes
    (say, waiting for the GIL) and then blocks in accept/recvfrom/waitpid is not
    run until that call returns; before the wakeup socket, about 3 in 100 of
    these threadpool servers never stopped.
    """
    from testbed.processes import start_server

    deadline = time.monotonic() + 25
    for _ in range(30):
        if time.monotonic() > deadline:
            break
        server = start_server(["--model", model, "--udp", "--quiet"])
        try:
            with UDPClient(*server.address, timeout=2, retries=2) as client:
                client.exchange(b"x" * 1000)
            server.signal(signal.SIGTERM)
            assert server.popen.wait(4) == 0
        finally:
            server.cleanup()
