"""``testbed bench --service http``: GET / over keep-alive HTTP/1.1, every response verified.

Real servers over TCP for the good cases; small listeners of the test's own for a server
that answers garbage, an error status or in the wrong order (each a failure class, never
a traceback); the framing itself fed the bytes a real server sent, in every split.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from clients.bench import ClosedLoop
from clients.framing import HELLO, HttpFraming
from clients.harness import ExchangeError
from tests.conftest import scripted_server
from tests.test_bench import json_bench

SHORTER = ("--duration", "0.5", "--warmup", "0.2")


def test_http_bench_verifies_every_response() -> None:
    summary = json_bench("--model", "select", "--service", "http", "--connections", "4",
                         *SHORTER)
    assert summary["ok"] and summary["expect"] == "http" and summary["service"] == "http"
    assert summary["requests"] > 0 and summary["error_count"] == 0
    assert summary["served_connections"] == 4
    assert summary["server"]["measured"] and summary["server"]["cpu_us_per_request"] > 0


def test_http_pipeline_of_4_answered_in_order_with_h11() -> None:
    summary = json_bench("--model", "select", "--service", "http", "--http-parser", "h11",
                         "--connections", "2", "--pipeline", "4", *SHORTER)
    assert summary["ok"] and summary["pipeline"] == 4 and summary["error_count"] == 0
    assert summary["requests"] > 0


def test_http_pipeline_of_different_requests_is_checked_in_order(serve: Any) -> None:
    """GET / and GET /health alternate, four in flight: each answer matches its request."""
    server = serve("select", "http", "--quiet")
    framing = HttpFraming(server.host, server.port, 4, paths=("/", "/health"),
                          answers={"/": HELLO, "/health": b"ok\n"})
    with ClosedLoop(server.host, server.port, framing=framing, pipeline=4,
                    connections=2) as loop:
        result = loop.run(0.5)
    assert result.requests > 100 and result.error_count == 0


def listener(answer: Callable[[socket.socket, bytes], None]) -> AbstractContextManager[int]:
    """A loopback listener serving each connection with ``answer(conn, first bytes read)``,
    then waiting for the client to give up on it."""
    def serve(conn: socket.socket) -> None:
        answer(conn, conn.recv(65536))
        conn.recv(65536)

    return scripted_server(serve)


def _response(status: bytes, body: bytes) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body)) + body


ANSWERS = {
    "garbage": (lambda conn, _: conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n"), "not an HTTP response"),
    "error status": (lambda conn, _: conn.sendall(_response(b"503 Service Unavailable", b"busy")),
                     "status '503 Service Unavailable', not 200"),
    "wrong body": (lambda conn, _: conn.sendall(_response(b"200 OK", b"Hello, Werld!")),
                   "at byte 8"),
    "chunked": (lambda conn, _: conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                                             b"\r\nd\r\nHello, World!\r\n0\r\n\r\n"),
                "without Content-Length"),
}


def test_an_error_status_is_a_mismatch_not_a_traceback() -> None:
    answer, words = ANSWERS["error status"]
    with listener(answer) as port:
        summary = json_bench("--target", f"http://127.0.0.1:{port}", "--connections", "1",
                             "--reopens", "1", "--duration", "1", "--warmup", "0", status=1)
    assert summary["expect"] == "http" and summary["requests"] == 0 and not summary["ok"]
    assert summary["errors"]["mismatch"] == 2 and summary["error_count"] == 2
    assert words in summary["error_details"]["mismatch"], summary["error_details"]


@pytest.mark.parametrize("case", ["garbage", "wrong body", "chunked"])
def test_a_wrong_http_answer_is_a_mismatch(case: str) -> None:
    answer, words = ANSWERS[case]
    with listener(answer) as port:
        with ClosedLoop("127.0.0.1", port, framing=HttpFraming("127.0.0.1", port),
                        connections=1, reopens=1) as loop:
            result = loop.run(2.0)
    assert result.requests == 0 and result.gave_up == 1
    assert result.errors["mismatch"] == 2 and result.error_count == 2
    assert words in result.details["mismatch"], result.details


def test_responses_out_of_order_are_mismatches() -> None:
    """A server answering a pipelined GET /health before the GET / ahead of it."""
    def swapped(conn: socket.socket, _: bytes) -> None:
        conn.sendall(_response(b"200 OK", b"ok\n") + _response(b"200 OK", HELLO))

    with listener(swapped) as port:
        framing = HttpFraming("127.0.0.1", port, 2, paths=("/", "/health"),
                              answers={"/": HELLO, "/health": b"ok\n"})
        with ClosedLoop("127.0.0.1", port, framing=framing, pipeline=2, connections=1,
                        reopens=0) as loop:
            result = loop.run(2.0)
        assert result.requests == 0 and result.errors["mismatch"] == 1
        assert "Content-Length 3, not 13" in result.details["mismatch"]


def test_framing_reads_a_real_response_in_any_pieces(serve: Any) -> None:
    """Two pipelined responses of a real server, split at every byte: two whole replies,
    never a false mismatch; a response that changed (its Date) is read again."""
    server = serve("select", "http", "--quiet")
    framing = HttpFraming(server.host, server.port, 2)
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"".join(framing.requests))
        data = b""
        while data.count(HELLO) < 2:
            data += sock.recv(65536)
    for cut in range(len(data) + 1):
        fresh = HttpFraming(server.host, server.port, 2)
        count, used = fresh.split(data[:cut], 0, 2)
        whole = count * len(data) // 2
        assert used == whole and cut - used < len(data) // 2
        rest, _ = fresh.split(data[used:], count, 2 - count)
        assert count + rest == 2
    first = data[:len(data) // 2]
    assert framing.split(data, 0, 2) == (2, len(data)) and framing.fast[0] == first
    framing.fast[0] = first.replace(b" 20", b" 19", 1)  # the same response a second earlier
    assert framing.split(data, 0, 2) == (2, len(data)) and framing.fast[0] == first
    with pytest.raises(ExchangeError, match="mismatch"):
        framing.split(data + b"H", 0, 2)  # bytes beyond the replies in flight
