"""The client harness: each failure class from a real situation, and integrity through every model.

The small misbehaving servers here are real sockets on 127.0.0.1 served by a
thread the fixture joins at teardown; the well-behaved ones are ``testbed serve``
processes started by the ``serve`` fixture.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clients.harness import (
    FAILURE_CLASSES,
    ExchangeError,
    ResolveError,
    TCPClient,
    UDPClient,
    classify,
    exchange_once,
    open_connection,
    open_listener,
    resolve,
)
from tests.conftest import MODELS, answered

ROOT = Path(__file__).resolve().parent.parent
Handler = Callable[[socket.socket], None]


@pytest.fixture
def misbehaving() -> Iterator[Callable[[Handler], int]]:
    """Start a one-connection TCP server on 127.0.0.1 running ``handler``; returns its port."""
    listeners: list[socket.socket] = []
    threads: list[threading.Thread] = []

    def start(handler: Handler) -> int:
        listener = open_listener("127.0.0.1", 0)
        listener.settimeout(10)
        listeners.append(listener)

        def serve() -> None:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            answered(conn, handler, timeout=10)

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        threads.append(thread)
        return listener.getsockname()[1]

    yield start
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def read_line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def failure(call: Callable[[], object]) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        call()
    assert caught.value.kind in FAILURE_CLASSES
    return caught.value


# -- each class from a real situation ----------------------------------------------------

def test_refused_nothing_listens():
    # Bound but not listening: the port is ours, and the kernel answers a SYN with a RST.
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        error = failure(lambda: exchange_once("127.0.0.1", port, b"hello\n"))
    assert error.kind == "refused"
    assert error.detail == "Connection refused"


def test_reset_server_aborts_the_connection(misbehaving):
    def abort(conn: socket.socket) -> None:
        read_line(conn)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # close() with a zero linger time sends a RST instead of a FIN

    port = misbehaving(abort)
    error = failure(lambda: exchange_once("127.0.0.1", port, b"hello\n", io_timeout=10))
    assert error.kind == "reset"


def test_io_timeout_server_never_answers(misbehaving):
    answered = threading.Event()

    def silent(conn: socket.socket) -> None:
        read_line(conn)
        answered.wait(10)  # hold the connection open, say nothing

    port = misbehaving(silent)
    try:
        error = failure(lambda: exchange_once("127.0.0.1", port, b"hello\n", io_timeout=0.5))
    finally:
        answered.set()
    assert error.kind == "io_timeout"


def test_io_timeout_accepted_by_the_kernel_never_by_the_server():
    # The listen queue completes the handshake; nobody ever calls accept().
    with open_listener("127.0.0.1", 0, backlog=4) as listener:
        port = listener.getsockname()[1]
        error = failure(lambda: exchange_once("127.0.0.1", port, b"anyone?\n", io_timeout=0.5))
    assert error.kind == "io_timeout"


def test_connect_timeout_listen_queue_full():
    """A full accept queue drops SYNs (tcp_abort_on_overflow=0): the handshake never ends."""
    held: list[socket.socket] = []
    with open_listener("127.0.0.1", 0, backlog=0) as listener:
        port = listener.getsockname()[1]
        try:
            for _ in range(4):  # listen(0) queues one; the next SYN finds the queue full
                try:
                    held.append(open_connection("127.0.0.1", port, timeout=0.5))
                except ExchangeError as exc:
                    error = exc
                    break
            else:
                pytest.fail("four connections to a listen(0) socket nobody accepts all completed")
        finally:
            for sock in held:
                sock.close()
    assert 1 <= len(held) <= 3
    assert error.kind == "connect_timeout"


def test_mismatch_server_answers_wrong(misbehaving):
    def wrong(conn: socket.socket) -> None:
        line = read_line(conn)
        conn.sendall(line[::-1])  # the same length, the wrong bytes

    port = misbehaving(wrong)
    error = failure(lambda: exchange_once("127.0.0.1", port, b"hello\n", io_timeout=10))
    assert error.kind == "mismatch"
    assert "byte 0" in error.detail


def test_closed_early_server_closes_mid_reply(misbehaving):
    def half(conn: socket.socket) -> None:
        line = read_line(conn)  # read all of it, so the close is a FIN, not a RST
        conn.sendall(line[: len(line) // 2])

    port = misbehaving(half)
    error = failure(lambda: exchange_once("127.0.0.1", port, b"a longer request\n",
                                          io_timeout=10))
    assert error.kind == "closed_early"
    assert "after 8 of 17 bytes" in error.detail


def test_unreachable_name_does_not_resolve():
    # numeric=True (netcat's -n) resolves without asking DNS: nothing leaves the machine.
    with pytest.raises(ResolveError) as caught:
        resolve("no-such-host.invalid", 80, numeric=True)
    assert caught.value.kind == "unreachable"
    error = failure(lambda: open_connection("no-such-host.invalid", 80, numeric=True))
    assert error.kind == "unreachable"


def test_unreachable_source_address_not_on_this_machine():
    # 2001:db8::/32 is for documentation and configured nowhere here: bind() fails with
    # EADDRNOTAVAIL before connect(), so no packet is sent.
    with open_listener("::1", 0) as listener:
        port = listener.getsockname()[1]
        error = failure(lambda: open_connection("::1", port, timeout=1,
                                                source=("2001:db8::1", 0)))
    assert error.kind == "unreachable"


def test_udp_lost_datagram_is_io_timeout_after_retries():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.settimeout(5)
        with UDPClient("127.0.0.1", silent.getsockname()[1], timeout=0.3, retries=2) as client:
            error = failure(lambda: client.exchange(b"ping"))
        received = [silent.recv(100) for _ in range(3)]
    assert error.kind == "io_timeout"
    assert received == [b"ping"] * 3  # the first try and two retries


def test_udp_refused_by_icmp_port_unreachable():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    with UDPClient("127.0.0.1", port, timeout=2) as client:
        error = failure(lambda: client.exchange(b"ping"))
    assert error.kind == "refused"


def test_udp_late_reply_is_not_taken_for_the_next():
    """A reply that comes after its request timed out is dropped, not read as the next reply."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        with UDPClient("127.0.0.1", server.getsockname()[1], timeout=0.3) as client:
            failure(lambda: client.exchange(b"first"))
            data, peer = server.recvfrom(100)
            server.sendto(data, peer)  # too late for "first"
            sender = threading.Thread(target=lambda: server.sendto(*server.recvfrom(100)))
            sender.start()
            assert client.exchange(b"second").reply == b"second"
            sender.join(5)


def test_udp_wrong_reply_is_mismatch():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        server.settimeout(5)
        answer = threading.Thread(target=lambda: (lambda d, p: server.sendto(d[::-1], p))(
            *server.recvfrom(100)))
        answer.start()
        with UDPClient("127.0.0.1", server.getsockname()[1], timeout=0.5) as client:
            error = failure(lambda: client.exchange(b"abc"))
        answer.join(5)
    assert error.kind == "mismatch"


@pytest.mark.parametrize(("exc", "connecting", "kind"), [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), False, "refused"),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), False, "reset"),
    (BrokenPipeError(errno.EPIPE, "Broken pipe"), False, "reset"),
    (TimeoutError("timed out"), True, "connect_timeout"),
    (TimeoutError("timed out"), False, "io_timeout"),
    (OSError(errno.ETIMEDOUT, "Connection timed out"), True, "connect_timeout"),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), True, "unreachable"),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), True, "unreachable"),
    (OSError(errno.EHOSTUNREACH, "No route to host"), True, "unreachable"),
    (OSError(errno.EINVAL, "Invalid argument"), False, "other"),
    (ValueError("not a socket error at all"), False, "other"),
    (ExchangeError("mismatch"), False, "mismatch"),
])
def test_classify_is_a_function_of_the_exception(exc, connecting, kind):
    assert classify(exc, connecting=connecting) == kind


def test_exchange_error_shows_its_class_alone():
    error = ExchangeError("closed_early", "peer closed after 3 of 10 bytes")
    assert str(error) == repr(error) == "closed_early"  # locust groups failures by it
    with pytest.raises(AssertionError):
        ExchangeError("no-such-class")


# -- integrity ---------------------------------------------------------------------------

SIZES = {"1 B": 1, "64 KiB": 64 * 1024, "10 MiB": 10 * 1024 * 1024}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
@pytest.mark.parametrize("model", MODELS)
def test_integrity_through_every_model(serve, model, size):
    server = serve(model, "echo", "--quiet")
    payload = b"x" if size == 1 else os.urandom(size)  # binary: every byte value, newlines too
    with TCPClient(*server.address, expect="echo", io_timeout=25) as client:
        assert client.exchange(payload).reply == payload


def test_fifty_mib_exchange_does_not_deadlock(serve):
    """Sent and read at the same time: full socket buffers on both sides never block it."""
    server = serve("select", "upper", "--quiet")
    payload = os.urandom(50 * 1024 * 1024)
    with TCPClient(*server.address, expect="upper", io_timeout=25) as client:
        assert len(client.exchange(payload).reply) == len(payload)


def test_open_connection_reports_each_failed_address():
    attempts = []
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
        failure(lambda: open_connection("127.0.0.1", port, on_error=attempts.append))
    assert [(a.address, a.step, type(a.error)) for a in attempts] == [
        (("127.0.0.1", port), "connect", ConnectionRefusedError)]


# -- gevent ------------------------------------------------------------------------------

GEVENT_SCRIPT = """
from gevent import monkey
monkey.patch_all()
import os, socket, sys
from clients.harness import ExchangeError, TCPClient, UDPClient, exchange_once
assert socket.socket.__module__.startswith("gevent"), socket.socket
host, tcp, udp, closed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with TCPClient(host, tcp, expect="upper") as client:
    client.exchange(b"over gevent\\n")
    client.exchange(os.urandom(1024 * 1024))  # the concurrent sender, as a greenlet
with UDPClient(host, udp, expect="upper", timeout=2, retries=2) as client:
    client.exchange(b"datagram")
try:
    exchange_once(host, closed, b"x\\n")
except ExchangeError as exc:
    print(exc.kind)
"""


def test_works_unchanged_over_gevent(serve):
    pytest.importorskip("gevent")
    tcp = serve("threading", "upper", "--quiet")
    udp = serve("threading", "upper", "--quiet", udp=True)
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed = placeholder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-c", GEVENT_SCRIPT, "127.0.0.1", str(tcp.port), str(udp.port),
             str(closed)], capture_output=True, text=True, timeout=25, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "refused"
