"""A lean closed-loop load generator: N persistent TCP connections, one request in flight on each.

Locust spends about 25 µs of CPU per request, more than a fast server does, so
against one it measures itself. This loop spends a few µs: one thread, the
sockets non-blocking, multiplexed by epoll (``poll`` where there is no epoll).
Each connection sends a request, waits for the whole reply, verifies it, and
sends the next one at once (no think time): the server always has work, and
the number of requests in flight is the number of connections.

Every reply is compared with the expected one (the caller says what the service
must answer, see :func:`clients.harness.expected_reply`). A wrong reply, a
reset, an early close, or no reply within ``io_timeout`` is counted by its
failure class (:data:`clients.harness.FAILURE_CLASSES`); the connection is
closed and reopened at most ``reopens`` times, and the others go on.

Bounded in time (``duration``) and in count (``max_requests``; the loop stops
within one round of it). A :class:`ClosedLoop` is one set of connections for one
phase: the caller opens it, measures what it wants around :meth:`ClosedLoop.run`,
and closes it. It knows nothing about the server.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clients.harness import (
    FAILURE_CLASSES,
    ExchangeError,
    as_exchange_error,
    expected_reply,
    open_connection,
    verify,
)

MAX_CONNECTIONS = 10_000
#: Seconds between two scans for replies that are overdue (the io_timeout's resolution).
TIMEOUT_SCAN = 0.05


@dataclass
class Result:
    """What one phase did: replies verified, errors by class, how long, and the client's CPU."""

    connections: int
    requests: int = 0
    elapsed: float = 0.0  # seconds from the first request sent to the loop's end
    cpu_s: float = 0.0  # user+system CPU of this process over the same span
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_CLASSES, 0))
    details: dict[str, str] = field(default_factory=dict)  # the first detail of each class
    replies: list[int] = field(default_factory=list)  # verified replies per connection slot
    gave_up: int = 0  # connection slots closed for good (their reopens used up)
    capped: bool = False  # stopped by max_requests, not by the clock

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def served_connections(self) -> int:
        """Connection slots that got at least one verified reply."""
        return sum(1 for n in self.replies if n)

    def as_dict(self) -> dict[str, Any]:
        return {"connections": self.connections, "requests": self.requests,
                "elapsed_s": self.elapsed, "rps": self.rps, "cpu_s": self.cpu_s,
                "errors": dict(self.errors), "error_count": self.error_count,
                "error_details": dict(self.details), "gave_up": self.gave_up,
                "served_connections": self.served_connections,
                "replies_per_connection": list(self.replies), "capped": self.capped}


class _Conn:
    """One connection: its socket, its slot, a partial reply, unsent request bytes."""

    __slots__ = ("sock", "fd", "slot", "buf", "out", "sent_at")

    def __init__(self, sock: socket.socket, slot: int) -> None:
        self.sock, self.fd, self.slot = sock, sock.fileno(), slot
        self.buf: bytearray | None = None
        self.out: memoryview | None = None
        self.sent_at = 0.0


class _Poller:
    """epoll where there is one, poll elsewhere; ``poll`` takes seconds either way.

    The select model has one like it: clients/ and servers/ do not import each other.
    """

    def __init__(self) -> None:
        if hasattr(select, "epoll"):
            self._impl: Any = select.epoll()
            self.poll: Callable[[float], list[tuple[int, int]]] = self._impl.poll
            self.IN, self.OUT = select.EPOLLIN, select.EPOLLOUT
        else:  # pragma: no cover - not Linux
            self._impl = select.poll()
            impl = self._impl
            self.poll = lambda seconds: impl.poll(seconds * 1000)
            self.IN, self.OUT = select.POLLIN, select.POLLOUT
        self.register, self.modify = self._impl.register, self._impl.modify
        self.unregister = self._impl.unregister

    def close(self) -> None:
        if hasattr(self._impl, "close"):
            self._impl.close()


class ClosedLoop:
    """``connections`` connections to ``host``:``port``, each with one ``payload`` in flight."""

    def __init__(self, host: str, port: int, payload: bytes, *,
                 expect: str | Callable[[bytes], bytes] = "echo", connections: int = 10,
                 io_timeout: float = 5.0, connect_timeout: float = 5.0, reopens: int = 3) -> None:
        if not 1 <= connections <= MAX_CONNECTIONS:
            raise ValueError(f"connections must be 1-{MAX_CONNECTIONS}, not {connections}")
        if not payload:
            raise ValueError("the payload can't be empty")
        if io_timeout <= 0 or connect_timeout <= 0 or reopens < 0:
            raise ValueError("timeouts must be above 0 s and reopens 0 or more")
        transform = expected_reply(expect)
        assert transform is not None
        self.host, self.port = host, port
        self.payload = payload
        self.expected = transform(payload)
        self.io_timeout, self.connect_timeout, self.reopens = io_timeout, connect_timeout, reopens
        self.result = Result(connections, replies=[0] * connections)
        self._reopened = [0] * connections
        self._conns: dict[int, _Conn] = {}
        self._poller = _Poller()
        self._bufsize = max(65536, min(len(self.expected), 1 << 20))
        self._deadline = float("inf")  # no reopening after the phase's end

    # -- opening, failing, closing -------------------------------------------------------

    def open(self) -> ClosedLoop:
        """Connect every slot (a failed connect is counted and retried within ``reopens``)."""
        for slot in range(self.result.connections):
            self._connect(slot)
        return self

    def _connect(self, slot: int) -> _Conn | None:
        """A new connection for ``slot``; None once its reopens are used up or time is over."""
        result = self.result
        while True:
            left = self._deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                sock = open_connection(self.host, self.port,
                                       timeout=min(self.connect_timeout, left))
            except ExchangeError as exc:
                self._count(exc.kind, exc.detail)
                if self._reopened[slot] >= self.reopens:
                    result.gave_up += 1
                    return None
                self._reopened[slot] += 1
                continue
            sock.setblocking(False)
            conn = _Conn(sock, slot)
            self._conns[conn.fd] = conn
            self._poller.register(conn.fd, self._poller.IN)
            return conn

    def _count(self, kind: str, detail: str) -> None:
        self.result.errors[kind] += 1
        self.result.details.setdefault(kind, detail)

    def _fail(self, conn: _Conn, kind: str, detail: str) -> None:
        """Count the failure, drop the connection, reopen its slot if it may be."""
        self._count(kind, detail)
        self._drop(conn)
        if self._reopened[conn.slot] >= self.reopens:
            self.result.gave_up += 1
            return
        self._reopened[conn.slot] += 1
        new = self._connect(conn.slot)
        if new is not None:
            self._send(new, time.monotonic())

    def _drop(self, conn: _Conn) -> None:
        self._conns.pop(conn.fd, None)
        try:
            self._poller.unregister(conn.fd)
        except (OSError, KeyError, ValueError):
            pass
        conn.sock.close()

    def close(self) -> None:
        """Close every connection (and the poller)."""
        for conn in list(self._conns.values()):
            self._drop(conn)
        self._poller.close()

    def __enter__(self) -> ClosedLoop:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending and receiving -------------------------------------------------------------

    def _send(self, conn: _Conn, now: float) -> None:
        """Send the request; what the socket won't take now goes when it is writable."""
        conn.sent_at = now
        try:
            sent = conn.sock.send(self.payload)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            error = as_exchange_error(exc)
            self._fail(conn, error.kind, error.detail)
            return
        if sent < len(self.payload):
            conn.out = memoryview(self.payload)[sent:]
            self._poller.modify(conn.fd, self._poller.IN | self._poller.OUT)

    def _flush(self, conn: _Conn) -> bool:
        """Send more of a request; False if the connection failed."""
        assert conn.out is not None
        try:
            sent = conn.sock.send(conn.out)
        except BlockingIOError:
            return True
        except OSError as exc:
            error = as_exchange_error(exc)
            self._fail(conn, error.kind, error.detail)
            return False
        conn.out = conn.out[sent:] if sent < len(conn.out) else None
        if conn.out is None:
            self._poller.modify(conn.fd, self._poller.IN)
        return True

    def _piece(self, conn: _Conn, data: bytes) -> bool:
        """Add a piece of a reply; True once the whole reply has come and is right."""
        expected = self.expected
        size = len(expected)
        got = len(conn.buf) if conn.buf is not None else 0
        if not data:
            self._fail(conn, "closed_early", f"peer closed after {got} of {size} bytes")
            return False
        if conn.buf is None:
            conn.buf = bytearray(data)
        else:
            conn.buf += data
        buf = conn.buf
        try:
            if len(buf) < size:  # a wrong start fails now, not after the timeout
                verify(bytes(buf), expected[:len(buf)])
                return False
            conn.buf = None
            verify(bytes(buf), expected)
            if conn.out is not None:
                raise ExchangeError("mismatch", "a whole reply came before the whole request went")
        except ExchangeError as exc:
            self._fail(conn, exc.kind, exc.detail)
            return False
        return True

    def _overdue(self, now: float) -> None:
        """Fail the connections whose reply is later than ``io_timeout``."""
        limit = now - self.io_timeout
        for conn in [c for c in self._conns.values() if c.sent_at <= limit]:
            if conn.fd in self._conns:
                self._fail(conn, "io_timeout", f"no reply in {self.io_timeout:g}s")

    # -- the loop --------------------------------------------------------------------------

    def run(self, duration: float, max_requests: int = 50_000_000) -> Result:
        """Keep every connection busy for ``duration`` s or ``max_requests`` replies."""
        result = self.result
        conns, replies = self._conns, result.replies
        poll, out_flag = self._poller.poll, self._poller.OUT
        expected, bufsize = self.expected, self._bufsize
        monotonic = time.monotonic
        done = 0
        cpu_start = time.process_time()
        start = now = monotonic()
        end = self._deadline = start + duration
        for conn in list(conns.values()):
            self._send(conn, start)
        next_scan = start + TIMEOUT_SCAN
        while conns and done < max_requests:
            events = poll(max(min(end, next_scan) - now, 0.0))
            now = monotonic()
            for fd, flags in events:
                conn = conns.get(fd)
                if conn is None:
                    continue  # failed earlier in this round
                if flags & out_flag:
                    if conn.out is not None and not self._flush(conn):
                        continue
                    if flags == out_flag:
                        continue
                try:
                    data = conn.sock.recv(bufsize)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:
                    error = as_exchange_error(exc)
                    self._fail(conn, error.kind, error.detail)
                    continue
                if conn.buf is not None or data != expected:
                    if not self._piece(conn, data):
                        continue
                done += 1
                replies[conn.slot] += 1
                self._send(conn, now)  # the next request
            if now >= end:
                break
            if now >= next_scan:
                self._overdue(now)
                next_scan = now + TIMEOUT_SCAN
        result.elapsed = monotonic() - start
        result.cpu_s = time.process_time() - cpu_start
        result.requests += done
        result.capped = done >= max_requests
        return result
