"""`testbed serve` as a user meets it: the ready line, logs, bad input, clean shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from clients.harness import ExchangeError, TCPClient
from tests.conftest import MODELS, no_traceback, one_line


def run_serve(*args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", "serve", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("args", "words"), [
    (["--model", "nope"], ["nope", "sequential", "select"]),
    (["--service", "rot13"], ["rot13", "echo", "upper"]),
    (["--delay", "soon"], ["--delay", "soon"]),
    (["--delay", "inf"], ["--delay", "inf"]),  # would overflow the timers of every model
    (["--port", "70000"], ["70000"]),
    (["--bogus"], ["--bogus"]),
    (["--service", "http", "--http-parser", "regex"], ["--http-parser", "regex"]),
    (["--service", "http", "--max-body", "lots"], ["--max-body", "lots"]),
    (["--service", "http", "--keepalive-timeout", "-1"], ["--keepalive-timeout", "-1"]),
    (["--service", "http", "--udp"], ["http", "TCP"]),
])
def test_bad_options_get_one_line_and_status_2(args, words):
    result = run_serve(*args)
    assert result.returncode == 2
    line = one_line(result.stderr)
    for word in words:
        assert word in line


def test_port_in_use_is_a_clear_error(serve):
    server = serve("threading")
    result = run_serve("--model", "select", "--port", str(server.port))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"testbed serve: error: cannot listen on tcp://127.0.0.1:{server.port}: "
        "Address already in use"]


def test_ready_line_first_and_connections_logged(serve):
    server = serve("select", "echo")
    with TCPClient(*server.address) as client:
        client.exchange(b"hi\n")
        client_port = client.sock.getsockname()[1]
    deadline = time.monotonic() + 5
    while "disconnected" not in server.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = server.stderr_text()
    assert f"client 127.0.0.1:{client_port} connected" in log
    assert log.startswith("[20")  # [YYYY-MM-DD HH:MM:SS,mmm] as in the course


def test_quiet_logs_no_connections(serve):
    server = serve("threading", "echo", "--quiet")
    with TCPClient(*server.address) as client:
        client.exchange(b"hi\n")
    server.stop()
    assert "connected" not in server.stderr_text()


def test_ipv6_loopback(serve):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = serve("select", "upper", "--host", "::1")
    assert server.endpoint.url.startswith("tcp://[::1]:")
    with TCPClient("::1", server.port, expect="upper") as client:
        client.exchange(b"over ipv6\n")


@pytest.mark.parametrize("model", MODELS)
def test_sigterm_under_traffic_exits_0_and_leaves_no_process(serve, model):
    server = serve(model, "echo", "--delay", "0.2", "--quiet")
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            try:
                with TCPClient(*server.address, io_timeout=5) as client:
                    client.exchange(b"busy\n")
            except ExchangeError:
                pass

    workers = [threading.Thread(target=traffic) for _ in range(4)]
    for w in workers:
        w.start()
    try:
        time.sleep(0.5)  # let traffic build up; readiness itself came from the ready line
        tree = psutil.Process(server.pid)
        family = {p.pid for p in tree.children(recursive=True)}
        started = time.monotonic()
        server.signal(signal.SIGTERM)
        status = server.popen.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        stop.set()
        for w in workers:
            w.join(10)
    assert status == 0
    assert took < 5
    leftovers = [pid for pid in family if psutil.pid_exists(pid)
                 and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert leftovers == []
    no_traceback(server.stderr_text())
    with pytest.raises(ExchangeError) as refused:
        TCPClient(*server.address, connect_timeout=2).connect()
    assert refused.value.kind == "refused"  # no listening socket left behind


def test_python_m_servers_is_testbed_serve():
    result = subprocess.run([sys.executable, "-m", "servers", "--help"],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0
    assert "--max-connections" in result.stdout and "--idle-timeout" in result.stdout


def test_testbed_models_lists_every_model_and_service():
    result = subprocess.run([sys.executable, "-m", "testbed", "models"],
                            capture_output=True, text=True, timeout=10)
    assert result.returncode == 0
    for name in [*MODELS, "echo", "upper"]:
        assert f"  {name} " in result.stdout


STARTER = """
import sys, time
from testbed.processes import start_server
server = start_server(["--model", sys.argv[1], "--service", "echo", "--quiet"])
print(server.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("model", ["select", "forking"])
def test_a_server_ends_when_the_process_that_started_it_is_killed(model):
    """A comparison or a test killed outright (SIGKILL) cannot stop its servers, each in a
    session of its own: they end by themselves (and a forking server's children with it)."""
    starter = subprocess.Popen([sys.executable, "-c", STARTER, model], stdout=subprocess.PIPE,
                               text=True)
    server = None
    try:
        server = psutil.Process(int(starter.stdout.readline()))
        assert server.is_running()
        with socket.create_connection(("127.0.0.1", _port_of(server))) as sock:
            sock.sendall(b"hello\n")
            assert sock.recv(64) == b"hello\n"
            children = server.children()
            starter.kill()
            starter.wait(5)
            server.wait(timeout=10)  # psutil.TimeoutExpired if it outlived its parent
            psutil.wait_procs(children, timeout=10)
            assert not any(child.is_running() for child in children)
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait(5)
        if server is not None and server.is_running():
            server.kill()


def _port_of(server: psutil.Process) -> int:
    [listening] = [c for c in server.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    return listening.laddr.port
