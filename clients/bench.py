"""A lean closed-loop load generator: N persistent TCP connections, K requests in flight on each.

Locust spends about 25 µs of CPU per request, more than a fast server does, so
against one it measures itself. This loop spends a few µs: one thread, the
sockets non-blocking, multiplexed by epoll (``poll`` where there is no epoll).
Each connection sends a request, waits for the whole reply, verifies it, and
sends the next one at once (no think time): the server always has work, and
the number of requests in flight is the number of connections.

Every reply is verified by the loop's framing (:mod:`clients.framing`): for the
line services it is compared with the expected one (the caller says what the
service must answer, see :func:`clients.harness.expected_reply`); for HTTP each
response's status, length and body are checked. A wrong reply, a
reset, an early close, or no reply within ``io_timeout`` is counted by its
failure class (:data:`clients.harness.FAILURE_CLASSES`); the connection is
closed and reopened at most ``reopens`` times, and the others go on.

Bounded in time (``duration``) and in count (``max_requests``; the loop stops
within one round of it). A :class:`ClosedLoop` is one set of connections for one
phase: the caller opens it, measures what it wants around :meth:`ClosedLoop.run`,
and closes it. It knows nothing about the server.

Many mostly idle connections (``active`` < ``connections``): only the first
``active`` slots carry the loop; the others are opened, left silent, and
:meth:`ClosedLoop.check_idle` proves each still alive at the end with one request
whose reply is verified (a read that sees no EOF would miss a server that keeps
the socket but no longer serves it). Opening is non-blocking and paced: at most
``open_window`` handshakes in flight, the whole bounded by ``open_timeout``; a
connection that can't be opened is counted by its failure class.

Pipelining (``pipeline`` K > 1): K requests in flight on each active connection,
each reply verified against the request it answers, in order (a line request is
tagged with its index in its first bytes, so a reply out of order is a
``mismatch`` like a wrong one); a verified reply makes its request go again.
Each reply's latency (from its request's send to its last byte) is kept, the first
:data:`LATENCY_SAMPLES` of a phase.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clients.framing import Framing, LineFraming
from clients.harness import (
    FAILURE_CLASSES,
    ExchangeError,
    as_exchange_error,
    expected_reply,
    open_connection,
    resolve,
)

MAX_CONNECTIONS = 20_000
#: Most requests in flight on one connection.
MAX_PIPELINE = 1024
#: Seconds between two scans for replies that are overdue (the io_timeout's resolution).
TIMEOUT_SCAN = 0.05
#: Latencies kept per phase (8 bytes each): 10 s at 200,000 requests/s.
LATENCY_SAMPLES = 2_000_000
#: Handshakes in flight at once while connections are opened.
OPEN_WINDOW = 64
#: Idle connections checked at once at the end.
IDLE_BATCH = 500
#: What an unserved active connection was waiting for, when nothing failed on it.
WAITING = "no_reply_yet"


def percentile(ordered: Any, share: float) -> float | None:
    """The value below which ``share`` (0-1) of the sorted ``ordered`` values lie; None if empty."""
    if not len(ordered):
        return None
    return ordered[min(int(share * len(ordered)), len(ordered) - 1)]


@dataclass
class Result:
    """What one phase did: replies verified, errors by class, how long, and the client's CPU.

    ``errors`` counts every failure of the active connections, their opening included;
    ``open_failed`` the ones met while opening (of any slot), ``idle_failed`` the ones of
    the final check of the idle connections (:meth:`ClosedLoop.check_idle`).
    """

    connections: int
    active: int = 0
    pipeline: int = 1
    requests: int = 0
    elapsed: float = 0.0  # seconds from the first request sent to the loop's end
    cpu_s: float = 0.0  # user+system CPU of this process over the same span
    errors: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_CLASSES, 0))
    details: dict[str, str] = field(default_factory=dict)  # the first detail of each class
    replies: list[int] = field(default_factory=list)  # verified replies per active slot
    last_failure: list[str | None] = field(default_factory=list)  # per active slot
    gave_up: int = 0  # connection slots closed for good (their reopens used up)
    capped: bool = False  # stopped by max_requests, not by the clock
    latencies: array = field(default_factory=lambda: array("d"))  # seconds, in reply order
    opened: int = 0  # slots connected by open()
    open_s: float = 0.0  # seconds open() took
    open_failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_CLASSES, 0))
    idle_alive: int | None = None  # idle connections that answered the final check
    idle_failed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_CLASSES, 0))
    idle_details: dict[str, str] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def served_connections(self) -> int:
        """Active connection slots that got at least one verified reply."""
        return sum(1 for n in self.replies if n)

    @property
    def unserved(self) -> dict[str, int]:
        """The active slots without a verified reply, by the class of their last failure
        (:data:`WAITING` for one that met none: still waiting when the phase ended)."""
        counts: dict[str, int] = {}
        for served, failure in zip(self.replies, self.last_failure, strict=True):
            if not served:
                counts[failure or WAITING] = counts.get(failure or WAITING, 0) + 1
        return counts

    def latency_ms(self) -> dict[str, Any]:
        """p50, p99 and max of the replies' latencies (ms), and how many were kept."""
        ordered = sorted(self.latencies)
        at = {name: percentile(ordered, share) for name, share in (("p50", 0.5), ("p99", 0.99))}
        return {"p50_ms": None if at["p50"] is None else at["p50"] * 1e3,
                "p99_ms": None if at["p99"] is None else at["p99"] * 1e3,
                "max_ms": ordered[-1] * 1e3 if ordered else None, "samples": len(ordered)}

    def as_dict(self) -> dict[str, Any]:
        return {"connections": self.connections, "active": self.active,
                "pipeline": self.pipeline, "requests": self.requests,
                "elapsed_s": self.elapsed, "rps": self.rps, "cpu_s": self.cpu_s,
                "errors": dict(self.errors), "error_count": self.error_count,
                "error_details": dict(self.details), "gave_up": self.gave_up,
                "served_connections": self.served_connections, "unserved": self.unserved,
                "replies_per_connection": list(self.replies), "capped": self.capped,
                "latency": self.latency_ms(), "opened": self.opened, "open_s": self.open_s,
                "open_failed": dict(self.open_failed), "idle_alive": self.idle_alive,
                "idle_failed": dict(self.idle_failed)}


class _Conn:
    """One connection: its socket, its slot, a partial reply, unsent request bytes, the send
    times of its requests in flight and the index of the reply it waits for."""

    __slots__ = ("sock", "fd", "slot", "buf", "out", "sent", "nxt")

    def __init__(self, sock: socket.socket, slot: int) -> None:
        self.sock, self.fd, self.slot = sock, sock.fileno(), slot
        self.buf: bytearray | None = None
        self.out: memoryview | None = None
        self.sent: deque[float] = deque()
        self.nxt = 0


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


def _sent(conn: _Conn, data: bytes | memoryview, sent: int, poller: _Poller) -> None:
    """After a send that took ``sent`` bytes of ``data`` (``conn.out`` when flushing): the
    rest waits in ``conn.out``, with ``poller`` watching for writability until it has gone.

    The partial sending the closed loop and the idle check share; the send itself stays
    with each caller, which counts a failure its own way (and the closed loop's hot path
    calls this only when a send fell short, so a whole send costs it nothing more)."""
    queued = conn.out is not None
    conn.out = memoryview(data)[sent:] if sent < len(data) else None
    if (conn.out is not None) is not queued:
        poller.modify(conn.fd, poller.IN | poller.OUT if conn.out is not None else poller.IN)


class ClosedLoop:
    """``connections`` connections to ``host``:``port``; the first ``active`` (default: all)
    each keep ``pipeline`` requests (``payload``, tagged) in flight, the others stay idle.

    ``framing`` (:mod:`clients.framing`) replaces ``payload`` and ``expect``: its requests
    are the pipeline (``HttpFraming`` for HTTP), its ``split`` verifies the replies.
    """

    def __init__(self, host: str, port: int, payload: bytes = b"", *,
                 expect: str | Callable[[bytes], bytes] = "echo", connections: int = 10,
                 active: int | None = None, pipeline: int = 1,
                 io_timeout: float = 5.0, connect_timeout: float = 5.0, reopens: int = 3,
                 open_window: int = OPEN_WINDOW, open_timeout: float = 120.0,
                 framing: Framing | None = None) -> None:
        if not 1 <= connections <= MAX_CONNECTIONS:
            raise ValueError(f"connections must be 1-{MAX_CONNECTIONS}, not {connections}")
        active = connections if active is None else active
        if not 1 <= active <= connections:
            raise ValueError(f"active connections must be 1-{connections}, not {active}")
        if not 1 <= pipeline <= MAX_PIPELINE:
            raise ValueError(f"the pipeline must be 1-{MAX_PIPELINE} requests, not {pipeline}")
        if framing is None and not payload:
            raise ValueError("the payload can't be empty")
        if io_timeout <= 0 or connect_timeout <= 0 or reopens < 0 or open_timeout <= 0:
            raise ValueError("timeouts must be above 0 s and reopens 0 or more")
        if open_window < 1:
            raise ValueError("open_window must be 1 or more")
        if framing is None:
            transform = expected_reply(expect)
            assert transform is not None
            framing = LineFraming(payload, transform, pipeline)
        elif len(framing.requests) != pipeline:
            raise ValueError(f"the framing has {len(framing.requests)} requests in flight, "
                             f"not the pipeline's {pipeline}")
        self.host, self.port = host, port
        self.framing = framing
        self.variants = framing.requests
        self.payload, self.pipeline, self.active = payload, pipeline, active
        self._first = b"".join(self.variants)  # what a connection sends when it starts
        self.io_timeout, self.connect_timeout, self.reopens = io_timeout, connect_timeout, reopens
        self.open_window, self.open_timeout = open_window, open_timeout
        self.result = Result(connections, active=active, pipeline=pipeline,
                             replies=[0] * active, last_failure=[None] * active)
        self._reopened = [0] * connections
        self._conns: dict[int, _Conn] = {}  # the active ones, by descriptor
        self._idle: dict[int, _Conn] = {}
        self._poller = _Poller()
        self._bufsize = max(65536, min((framing.size or 0) * pipeline, 1 << 20))
        self._deadline = float("inf")  # no reopening after the phase's end

    # -- opening, failing, closing -------------------------------------------------------

    def open(self) -> ClosedLoop:
        """Connect every slot, ``open_window`` handshakes at a time, within ``open_timeout``.

        A failed connect is counted by class and retried within ``reopens``; a slot still
        not connected when the time is up counts as a ``connect_timeout``.
        """
        result = self.result
        started = time.monotonic()
        end = started + self.open_timeout
        try:
            family, _, _, _, address = resolve(self.host, self.port)[0]
        except ExchangeError as exc:
            for slot in range(result.connections):
                self._open_failure(slot, exc.kind, exc.detail, None)
            return self
        queue = deque(range(result.connections))
        pending: dict[int, tuple[socket.socket, int, float]] = {}
        poller = _Poller()
        try:
            while queue or pending:
                now = time.monotonic()
                if now >= end:
                    for sock, slot, _ in pending.values():
                        sock.close()
                        self._open_failure(slot, "connect_timeout",
                                           f"not connected within {self.open_timeout:g}s", None)
                    for slot in queue:
                        self._open_failure(slot, "connect_timeout",
                                           f"not connected within {self.open_timeout:g}s", None)
                    break
                while queue and len(pending) < self.open_window:
                    slot = queue.popleft()
                    try:
                        sock = socket.socket(family, socket.SOCK_STREAM)
                    except OSError as exc:
                        error = as_exchange_error(exc, connecting=True)
                        self._open_failure(slot, error.kind, error.detail, None)
                        continue
                    sock.setblocking(False)
                    code = sock.connect_ex(address)
                    if code in (0, errno.EINPROGRESS):
                        pending[sock.fileno()] = (sock, slot, now)
                        poller.register(sock.fileno(), poller.OUT)
                    else:
                        sock.close()
                        self._open_failed(slot, code, queue)
                for fd, _ in poller.poll(TIMEOUT_SCAN):
                    sock, slot, _ = pending.pop(fd)
                    poller.unregister(fd)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code:
                        sock.close()
                        self._open_failed(slot, code, queue)
                    else:
                        self._adopt(sock, slot)
                limit = time.monotonic() - self.connect_timeout
                for fd in [fd for fd, (_, _, t) in pending.items() if t <= limit]:
                    sock, slot, _ = pending.pop(fd)
                    poller.unregister(fd)
                    sock.close()
                    self._open_failed(slot, errno.ETIMEDOUT, queue)
        finally:
            for sock, _, _ in pending.values():
                sock.close()
            poller.close()
            result.open_s = time.monotonic() - started
        return self

    def _open_failed(self, slot: int, code: int, queue: deque[int]) -> None:
        """A connect that failed with errno ``code``: counted, its slot queued again if it may."""
        error = as_exchange_error(OSError(code, os.strerror(code)), connecting=True)
        if code == errno.ETIMEDOUT:
            error = ExchangeError("connect_timeout", f"no handshake in {self.connect_timeout:g}s")
        retry = self._reopened[slot] < self.reopens
        self._open_failure(slot, error.kind, error.detail, queue if retry else None)

    def _open_failure(self, slot: int, kind: str, detail: str, queue: deque[int] | None) -> None:
        result = self.result
        result.open_failed[kind] += 1
        if slot < self.active:
            self._count(kind, detail, slot)
        else:
            result.idle_details.setdefault(kind, detail)
        if queue is not None:
            self._reopened[slot] += 1
            queue.append(slot)
        else:
            result.gave_up += 1

    def _adopt(self, sock: socket.socket, slot: int) -> _Conn:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = _Conn(sock, slot)
        self.result.opened += 1
        if slot < self.active:
            self._conns[conn.fd] = conn
            self._poller.register(conn.fd, self._poller.IN)
        else:
            self._idle[conn.fd] = conn
        return conn

    def _connect(self, slot: int) -> _Conn | None:
        """A new connection for active ``slot``; None once its reopens are used up or time
        is over."""
        result = self.result
        while True:
            left = self._deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                sock = open_connection(self.host, self.port,
                                       timeout=min(self.connect_timeout, left))
            except ExchangeError as exc:
                self._count(exc.kind, exc.detail, slot)
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

    def _count(self, kind: str, detail: str, slot: int) -> None:
        self.result.errors[kind] += 1
        self.result.details.setdefault(kind, detail)
        self.result.last_failure[slot] = kind

    def _fail(self, conn: _Conn, kind: str, detail: str) -> None:
        """Count the failure, drop the connection, reopen its slot if it may be."""
        self._count(kind, detail, conn.slot)
        self._drop(conn)
        if self._reopened[conn.slot] >= self.reopens:
            self.result.gave_up += 1
            return
        self._reopened[conn.slot] += 1
        new = self._connect(conn.slot)
        if new is not None:
            self._start(new, time.monotonic())

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
        for conn in self._idle.values():
            conn.sock.close()
        self._idle.clear()
        self._poller.close()

    def __enter__(self) -> ClosedLoop:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending and receiving -------------------------------------------------------------

    def _start(self, conn: _Conn, now: float) -> None:
        """A connection's first ``pipeline`` requests, all at once."""
        conn.nxt, conn.buf = 0, None
        conn.sent.clear()
        self._send(conn, now, self._first, self.pipeline)

    def _send(self, conn: _Conn, now: float, data: bytes, count: int = 1) -> None:
        """Send ``count`` requests (``data``); what the socket won't take now goes when it
        is writable."""
        if count == 1:
            conn.sent.append(now)
        else:
            conn.sent.extend([now] * count)
        if conn.out is not None:  # still sending: queue behind it
            conn.out = memoryview(bytes(conn.out) + data)
            return
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            error = as_exchange_error(exc)
            self._fail(conn, error.kind, error.detail)
            return
        if sent < len(data):
            _sent(conn, data, sent, self._poller)

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
        _sent(conn, conn.out, sent, self._poller)
        return True

    def _closed_detail(self, got: int) -> str:
        size = self.framing.size
        return (f"peer closed after {got} of {size} bytes" if size is not None else
                f"peer closed after {got} bytes of a reply")

    def _replies(self, conn: _Conn, data: bytes) -> int:
        """Add received bytes; the number of whole replies they completed, each verified
        against its request in order by the framing (-1: the connection failed)."""
        got = len(conn.buf) if conn.buf is not None else 0
        if not data:
            self._fail(conn, "closed_early", self._closed_detail(got))
            return -1
        if conn.buf is None:
            buf = conn.buf = bytearray(data)
        else:
            buf = conn.buf
            buf += data
        try:
            count, pos = self.framing.split(buf, conn.nxt, len(conn.sent))
            if count and self.pipeline == 1 and conn.out is not None:
                raise ExchangeError("mismatch", "a whole reply came before the whole request went")
        except ExchangeError as exc:
            self._fail(conn, exc.kind, exc.detail)
            return -1
        if pos:
            conn.buf = buf[pos:] if pos < len(buf) else None
        conn.nxt = (conn.nxt + count) % self.pipeline
        return count

    def _overdue(self, now: float) -> None:
        """Fail the connections whose oldest reply is later than ``io_timeout``."""
        limit = now - self.io_timeout
        for conn in [c for c in self._conns.values() if c.sent and c.sent[0] <= limit]:
            if conn.fd in self._conns:
                self._fail(conn, "io_timeout", f"no reply in {self.io_timeout:g}s")

    # -- the loop --------------------------------------------------------------------------

    def run(self, duration: float, max_requests: int = 50_000_000) -> Result:
        """Keep every active connection busy for ``duration`` s or ``max_requests`` replies."""
        result = self.result
        conns, replies, latencies = self._conns, result.replies, result.latencies
        poll, out_flag = self._poller.poll, self._poller.OUT
        fast, bufsize, single = self.framing.fast, self._bufsize, self.pipeline == 1
        variants, depth = self.variants, self.pipeline
        monotonic, keep = time.monotonic, latencies.append
        room = LATENCY_SAMPLES - len(latencies)
        done = 0
        cpu_start = time.process_time()
        start = now = monotonic()
        end = self._deadline = start + duration
        for conn in list(conns.values()):
            self._start(conn, start)
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
                if single and conn.buf is None and data == fast[0]:
                    count = 1
                else:
                    count = self._replies(conn, data)
                    if count <= 0:
                        continue
                sent = conn.sent
                for _ in range(count):
                    if done < room:
                        keep(now - sent.popleft())
                    else:
                        sent.popleft()
                    done += 1
                replies[conn.slot] += count
                if single:
                    self._send(conn, now, variants[0])
                elif count == 1:
                    self._send(conn, now, variants[(conn.nxt - 1) % depth])
                else:
                    first = conn.nxt - count
                    self._send(conn, now, b"".join(variants[(first + i) % depth]
                                                   for i in range(count)), count)
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

    # -- the idle connections --------------------------------------------------------------

    def check_idle(self, timeout: float | None = None) -> int:
        """Prove each idle connection alive: one request on each, its reply verified within
        ``timeout`` (default ``io_timeout``), :data:`IDLE_BATCH` connections at a time (a
        thread-per-connection server woken 10,000 times at once answers few in time). The
        number alive; the others by failure class in ``result.idle_failed``."""
        result = self.result
        timeout = self.io_timeout if timeout is None else timeout
        idle = list(self._idle.values())
        alive = 0
        for first in range(0, len(idle), IDLE_BATCH):
            alive += self._check_batch(idle[first:first + IDLE_BATCH], timeout)
        result.idle_alive = alive
        return alive

    def _check_batch(self, batch: list[_Conn], timeout: float) -> int:
        result = self.result
        payload, split = self.variants[0], self.framing.split
        poller = _Poller()
        waiting: dict[int, _Conn] = {}
        alive = 0

        def failed(conn: _Conn, kind: str, detail: str) -> None:
            result.idle_failed[kind] += 1
            result.idle_details.setdefault(kind, detail)
            waiting.pop(conn.fd, None)

        for conn in batch:
            conn.buf = conn.out = None
            try:
                sent = conn.sock.send(payload)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                error = as_exchange_error(exc)
                failed(conn, error.kind, error.detail)
                continue
            poller.register(conn.fd, poller.IN)
            _sent(conn, payload, sent, poller)
            waiting[conn.fd] = conn
        deadline = time.monotonic() + timeout
        try:
            while waiting and (left := deadline - time.monotonic()) > 0:
                for fd, flags in poller.poll(min(left, TIMEOUT_SCAN)):
                    conn = waiting.get(fd)
                    if conn is None:
                        continue
                    try:
                        if flags & poller.OUT and conn.out is not None:
                            _sent(conn, conn.out, conn.sock.send(conn.out), poller)
                            if flags == poller.OUT:
                                continue
                        data = conn.sock.recv(self._bufsize)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:
                        error = as_exchange_error(exc)
                        failed(conn, error.kind, error.detail)
                        continue
                    got = len(conn.buf or b"")
                    if not data:
                        failed(conn, "closed_early", self._closed_detail(got))
                        continue
                    conn.buf = bytearray(data) if conn.buf is None else conn.buf + data
                    try:
                        whole, _ = split(conn.buf, 0, 1)  # bytes beyond the one reply: mismatch
                        if not whole:
                            continue
                    except ExchangeError as exc:
                        failed(conn, exc.kind, exc.detail)
                        continue
                    conn.buf = None
                    alive += 1
                    waiting.pop(fd)
            for conn in list(waiting.values()):
                failed(conn, "io_timeout", f"no reply in {timeout:g}s")
        finally:
            poller.close()
        return alive
