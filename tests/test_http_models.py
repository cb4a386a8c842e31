"""Every model serving http over real sockets: keep-alive, pipelining, bad input, timeouts, cost."""

from __future__ import annotations

import os
import socket
import time

import pytest

from tests.conftest import MODELS, no_traceback
from tests.http_parse import GET, Source

PIPELINED = (b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n"
             b"POST /upper HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"3\r\nabc\r\n0\r\n\r\n"
             b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\n\x00\xff\r\n")

#: raw bad input and the status it gets; each but 404 and 405 ends the connection
BAD = [
    (b"BLAH\x01 / HTTP/1.1\r\n\r\n", 400),
    (b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", 404),
    (b"PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n", 405),
    (b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n", 413),
    (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
]


def connect(server) -> tuple[socket.socket, Source]:
    sock = socket.create_connection(server.address, timeout=5)
    return sock, Source.of_socket(sock)


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.parametrize("model", MODELS)
def test_every_model_serves_http(serve, model):
    server = serve(model, "http")
    sock, source = connect(server)
    with sock:
        for _ in range(2):  # keep-alive: the same connection serves the next request
            sock.sendall(GET)
            status, headers, body = source.read()
            assert (status, body) == (200, b"Hello, World!")
            assert {"content-length", "date", "server"} <= set(headers)
            assert "connection" not in headers
        sock.sendall(PIPELINED)  # answered in order
        got = source.read_all(["GET", "POST", "POST"])
        assert [(status, body) for status, _, body in got] == [
            (200, b"ok\n"), (200, b"ABC"), (200, b"\x00\xff\r\n")]
        sock.sendall(b"HEAD / HTTP/1.0\r\n\r\n")  # HTTP/1.0: answered, then closed
        status, headers, body = source.read("HEAD")
        assert (status, body, headers["content-length"]) == (200, b"", "13")
        assert closed_by_server(sock)
    for request, expected in BAD:
        sock, source = connect(server)
        with sock:
            sock.sendall(request)
            status, headers, body = source.read()
            assert status == expected and body, request[:40]
            if expected == 405:
                assert headers["allow"] == "GET, HEAD"
            if expected not in (404, 405):
                assert headers["connection"] == "close" and closed_by_server(sock)
    sock, source = connect(server)  # and the server still serves everyone
    with sock:
        sock.sendall(GET)
        assert source.read()[2] == b"Hello, World!"
    no_traceback(server.stderr_text())


#: one model of each of the three code paths that run a session: blocking, select loop, asyncio
PATHS = ["threading", "select", "asyncio"]


@pytest.mark.parametrize("model", PATHS)
def test_idle_and_trickling_clients_are_closed_after_their_timeouts(serve, model):
    server = serve(model, "http", "--keepalive-timeout", "0.3", "--header-timeout", "0.8")
    sock, source = connect(server)
    with sock:
        sock.sendall(GET)
        assert source.read()[0] == 200
        start = time.monotonic()
        assert closed_by_server(sock)  # idle between requests: the keep-alive timeout
        assert 0.2 <= time.monotonic() - start < 3
    with socket.create_connection(server.address, timeout=5) as sock:
        start = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        closed = False
        for i in range(30):  # a header every 0.1 s: steady, but the head never ends
            try:
                sock.sendall(b"X-%d: y\r\n" % i)
            except OSError:
                closed = True
                break
            time.sleep(0.1)
            sock.setblocking(False)
            try:
                closed = sock.recv(1) == b""
            except BlockingIOError:
                pass
            except ConnectionResetError:
                closed = True
            sock.setblocking(True)
            if closed:
                break
        assert closed, "a client trickling its headers was never closed"
        assert 0.6 <= time.monotonic() - start < 2.5
    assert "idle for" in server.stderr_text()


@pytest.mark.parametrize("model", ["threading", "select"])
def test_delay_applies_per_http_request(serve, model):
    server = serve(model, "http", "--delay", "0.2")
    sock, source = connect(server)
    with sock:
        start = time.monotonic()
        sock.sendall(GET * 3)  # pipelined: three requests, three delays
        assert [body for _, _, body in source.read_all(["GET"] * 3)] == [b"Hello, World!"] * 3
        assert time.monotonic() - start >= 0.55


@pytest.mark.parametrize("model", PATHS)
def test_the_last_response_survives_bytes_the_server_does_not_read(serve, model):
    """A 1 MiB answer with Connection: close, and more requests behind it that the server
    will not read: its lingering close keeps a reset from cutting the answer short."""
    server = serve(model, "http")
    body = os.urandom(1024 * 1024)
    sock, source = connect(server)
    with sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n"
                     b"Content-Length: %d\r\n\r\n%s%s" % (len(body), body, GET * 100))
        time.sleep(0.3)  # the answer waits unread while the server closes
        status, headers, answer = source.read("POST")
    assert (status, headers["connection"]) == (200, "close")
    assert answer == body


@pytest.mark.parametrize("parser", ["httptools", "h11"])
def test_forked_children_import_nothing_per_connection(serve, parser):
    """The parser's library is imported once, before the server forks: a forking child that
    imported it for its one connection paid 6 ms of CPU for each (httptools)."""
    server = serve("forking", "http", "--http-parser", parser,
                   env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})  # imports go to stderr
    for _ in range(2):
        sock, source = connect(server)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert source.read()[:3:2] == (200, b"Hello, World!")
    deadline = time.monotonic() + 5
    while server.stderr_text().count("disconnected") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # the children log their end as they exit
    log = server.stderr_text()
    assert log.count("disconnected") == 2, log[-2000:]
    served = log[log.index(" connected"):]
    assert "import time:" not in served, served
