"""Every model x service x transport: round trips, stream semantics, concurrency, integrity."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

import pytest

from clients.harness import TCPClient, UDPClient, read_exactly
from tests.conftest import LINE_SERVICES, MODELS, UDP_MODELS, no_traceback


@pytest.mark.parametrize("service", LINE_SERVICES)
@pytest.mark.parametrize("model", MODELS)
def test_tcp_round_trip(serve, model, service):
    server = serve(model, service)
    with TCPClient(*server.address, expect=service) as client:
        for payload in (b"hello world\n", b"Mixed Case \xc3\xa9\xff\x00 bytes\n", b"last, no newline"):
            client.exchange(payload)  # verified byte for byte against the service


@pytest.mark.parametrize("service", LINE_SERVICES)
@pytest.mark.parametrize("model", UDP_MODELS)
def test_udp_round_trip(serve, model, service):
    server = serve(model, service, udp=True)
    assert server.endpoint.transport == "udp"
    with UDPClient(*server.address, expect=service, timeout=2, retries=2) as client:
        client.exchange(b"hello udp")
        client.exchange(b"")  # a zero-length datagram is answered, not a crash
        client.exchange(os.urandom(60000))  # near the largest datagram


@pytest.mark.parametrize("model", MODELS)
def test_half_close_gets_what_is_owed_then_eof(serve, model):
    server = serve(model, "upper")
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"one\ntwo\nno newline")
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply == b"ONE\nTWO\nNO NEWLINE"


@pytest.mark.parametrize("model", MODELS)
def test_many_requests_on_one_connection(serve, model):
    server = serve(model, "echo")
    with TCPClient(*server.address) as client:
        for i in range(200):
            client.exchange(b"request %d\n" % i)


@pytest.mark.parametrize("model", MODELS)
def test_ten_mib_sent_and_read_concurrently(serve, model):
    server = serve(model, "upper")
    payload = os.urandom(10 * 1024 * 1024)
    with TCPClient(*server.address, expect="upper", io_timeout=20) as client:
        assert len(client.exchange(payload).reply) == len(payload)


@pytest.mark.parametrize(("model", "at_least", "at_most"), [
    ("sequential", 2.0, None),
    ("forking", None, 1.2),
    ("threading", None, 1.2),
    ("select", None, 1.2),
])
def test_delay_serialises_or_overlaps(serve, model, at_least, at_most):
    """--delay 0.5 and 4 clients at once: sequential takes >= 2 s, the others < 1.2 s."""
    server = serve(model, "echo", "--delay", "0.5", "--quiet")
    clients = [TCPClient(*server.address, io_timeout=10).connect() for _ in range(4)]
    errors: list[BaseException] = []

    def one(client: TCPClient) -> None:
        try:
            client.exchange(b"wait for me\n")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            client.close()  # the sequential server moves on to the next client

    threads = [threading.Thread(target=one, args=(c,)) for c in clients]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    elapsed = time.monotonic() - start
    assert not errors
    if at_least is not None:
        assert elapsed >= at_least, f"{model} took {elapsed:.2f}s"
    if at_most is not None:
        assert elapsed < at_most, f"{model} took {elapsed:.2f}s"


def test_select_serves_others_during_a_delay(serve):
    """In the select model a delay is a timer: a second client is not held up by it."""
    server = serve("select", "echo", "--delay", "1")
    slow = TCPClient(*server.address, io_timeout=10).connect()
    slow.sock.sendall(b"slow\n")
    with TCPClient(*server.address, io_timeout=10) as fast:
        started = time.monotonic()
        fast.exchange(b"fast\n")
        assert time.monotonic() - started >= 0.9  # its own delay...
    assert read_exactly(slow.sock, 5) == b"slow\n"
    slow.close()


def test_select_reset_while_backpressure_has_paused_reading(serve):
    """A client that sends whole lines and never reads: replies the socket won't take are
    kept, reading pauses once they pass the high-water mark, and a reset in that state
    drops the client (logged) while the server goes on serving the others."""
    server = serve("select", "echo")
    pusher = socket.create_connection(server.address, timeout=5)
    pusher.setblocking(False)
    chunk = (b"x" * 63 + b"\n") * 1024  # 64 KiB of whole lines
    pushed, stalled_since = 0, None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and pushed < 256 * 1024 * 1024:
        try:
            pushed += pusher.send(chunk)
            stalled_since = None
        except BlockingIOError:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.0:
                break  # the server stopped reading: everything on the way is full
            time.sleep(0.01)
    assert stalled_since is not None, f"the server read all {pushed} bytes without pausing"
    assert pushed > 1024 * 1024  # past the high-water mark, not stopped by a small buffer
    pusher.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    pusher.close()  # lingering 0 s: a reset
    with TCPClient(*server.address, io_timeout=5) as other:
        other.exchange(b"still serving\n")
    deadline = time.monotonic() + 5
    while "connection reset" not in server.stderr_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "connection reset" in server.stderr_text()
    no_traceback(server.stderr_text())


@pytest.mark.parametrize("model", MODELS)
def test_abuse_does_not_stop_service_for_others(serve, model):
    server = serve(model, "upper", "--idle-timeout", "5")
    # An empty connection, a reset mid-request, binary junk, NUL bytes, a long line.
    socket.create_connection(server.address, timeout=5).close()
    sock = socket.create_connection(server.address, timeout=5)
    sock.sendall(b"half a request")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()  # RST
    with TCPClient(*server.address, expect="upper", io_timeout=20) as client:
        client.exchange(bytes(range(256)) * 4 + b"\x00\x00\n")
        client.exchange(b"y" * (10 * 1024 * 1024))  # a 10 MiB line with no newline
    with TCPClient(*server.address, expect="upper") as other:
        other.exchange(b"still serving\n")
    no_traceback(server.stderr_text())
