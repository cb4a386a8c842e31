"""``select``: one thread multiplexing non-blocking sockets with the ``select`` module's epoll.

No thread or process per client. A ``--delay`` is a timer in the loop, so other
clients are served while one waits; ``--work-ms`` is CPU and blocks the loop,
which is what it is there to show. Replies are sent at once when the socket
takes them and buffered otherwise; a client whose unsent replies pass
``HIGH_WATER`` is no longer read until it reads (backpressure), so a client
that sends but never reads cannot grow the server's memory.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import select
import socket
import time
from collections import deque
from collections.abc import Callable

from servers.models import logs
from servers.models.base import STOP_CHECK, Model
from servers.models.support import (
    LINGER,
    RECV_SIZE,
    disconnect_reason,
    kernel_send_queue,
    make_listener,
    pending_datagrams,
    send_datagram,
    time_limit,
)
from servers.services import Session

HIGH_WATER = 1024 * 1024  # stop reading a client owed more than this
ACCEPTS_PER_WAKEUP = 64
DATAGRAMS_PER_WAKEUP = 64
MAX_EVENTS = 256  # events taken per wake-up; the rest come on the next one
EXHAUSTED_PAUSE = 0.1  # seconds without accepting after EMFILE


# epoll's and poll's event bits are the same numbers.
READABLE = select.POLLIN
WRITABLE = select.POLLOUT


class Poller:
    """epoll where there is one (Linux), else poll: which fds to watch, and for what.

    The loop keeps its own table of handlers by fd and asks only for ``(fd, events)``
    pairs: ``selectors`` would build a key object and a tuple per event on top, which is
    a good share of what a small request costs the loop. clients/bench.py has one like it
    (``_Poller``): clients/ and servers/ do not import each other.
    """

    def __init__(self) -> None:
        if hasattr(select, "epoll"):
            self._poller = select.epoll()
            self.poll: Callable[[float], list[tuple[int, int]]] = functools.partial(
                self._poller.poll, maxevents=MAX_EVENTS)
        else:  # pragma: no cover - macOS and the BSDs
            self._poller = select.poll()
            self.poll = lambda timeout, poll=self._poller.poll: poll(timeout * 1000)
        self.register = self._poller.register
        self.modify = self._poller.modify
        self.unregister = self._poller.unregister

    def close(self) -> None:
        if hasattr(self._poller, "close"):
            self._poller.close()


class Connection:
    """One client's state in the loop: framing, unsent bytes, replies waiting for their delay."""

    __slots__ = ("sock", "peer", "session", "out", "delayed", "delayed_bytes", "ready_at",
                 "eof", "closing", "lingering", "events", "last_active", "queued", "received",
                 "requests")

    def __init__(self, sock: socket.socket, peer: str, session: Session, now: float) -> None:
        self.sock = sock
        self.peer = peer
        self.session = session
        self.out = bytearray()  # ready to send
        self.delayed: deque[tuple[float, bytes]] = deque()  # (due, reply), in order
        self.delayed_bytes = 0
        self.ready_at = 0.0  # when the last delayed reply is due: later ones queue behind it
        self.eof = False  # nothing more is read: the client closed, or the session ends it
        self.closing = False  # the session ends the connection once all is sent
        self.lingering = False  # sent and half-closed: reading only to discard (support.linger)
        self.events = 0
        self.last_active = now  # last progress either way: bytes read, sent, or a reply released
        self.queued = -1  # bytes in the kernel's send queue when last looked (-1: not looked)
        self.received = 0
        self.requests = 0

    @property
    def owed(self) -> int:
        return len(self.out) + self.delayed_bytes


class SelectModel(Model):
    name = "select"
    description = "epoll event loop in one thread: non-blocking sockets, timers for delays"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.poller = Poller()
        self.handlers: dict[int, Callable[[int], None]] = {}  # by fd: what to do when it is ready
        self.listener: socket.socket | None = None
        self.connections: dict[socket.socket, Connection] = {}
        self.timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self.immediate = not (self.cost.delay or self.cost.work_ms)  # replies go out at once
        self.idle = self.config.idle_timeout
        # Connections are swept for timeouts with --idle-timeout, or once a session has its own.
        self.sweep = bool(self.idle)
        self.sweep_every = min(self.idle / 4, 0.25) if self.idle else 0.25
        self.next_sweep = 0.0

    # -- contract -----------------------------------------------------------

    def bind(self) -> tuple[str, int]:
        self.listener = make_listener(self.config)
        self.listener.setblocking(False)
        self._listen()
        host, port = self.listener.getsockname()[:2]
        return host, port

    def serve_forever(self) -> None:
        self.next_sweep = time.monotonic() + self.sweep_every
        poll, handlers, timers = self.poller.poll, self.handlers, self.timers
        while True:
            timeout = STOP_CHECK  # a signal whose Shutdown was swallowed is noticed by then
            if timers:
                timeout = min(timeout, max(0.0, timers[0][0] - time.monotonic()))
            if self.sweep:
                timeout = min(timeout, max(0.0, self.next_sweep - time.monotonic()))
            for fd, events in poll(timeout):
                handler = handlers.get(fd)  # None: closed by an earlier handler of this batch
                if handler is not None:
                    handler(events)
            if timers:
                self._run_timers()
            if self.sweep and time.monotonic() >= self.next_sweep:
                self._close_idle()
                self.next_sweep = time.monotonic() + self.sweep_every
            if self.signalled:
                self.stop_requested()

    def close(self, grace: float = 3.0) -> None:
        self.stopping.set()
        for conn in list(self.connections.values()):
            self._drop(conn)
        if self.listener is not None:
            self.handlers.pop(self.listener.fileno(), None)
            self.listener.close()
        self.poller.close()

    # -- timers -------------------------------------------------------------

    def call_at(self, when: float, callback: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (when, next(self._seq), callback))

    def _run_timers(self) -> None:
        now = time.monotonic()
        timers = self.timers
        while timers and timers[0][0] <= now:
            _, _, callback = heapq.heappop(timers)
            callback()

    # -- listening ----------------------------------------------------------

    def _listen(self) -> None:
        fd = self.listener.fileno()
        self.handlers[fd] = self._on_datagrams if self.config.udp else self._on_accept
        self.poller.register(fd, READABLE)

    def _on_accept(self, events: int) -> None:
        listener = self.listener
        for _ in range(ACCEPTS_PER_WAKEUP):
            accepted = self.accept_client(listener)
            if accepted is None:
                if self.accept_starved:
                    # Stop watching the listener for a moment instead of spinning on it.
                    self.poller.unregister(listener.fileno())
                    del self.handlers[listener.fileno()]
                    self.call_at(time.monotonic() + EXHAUSTED_PAUSE, self._listen)
                return
            sock, peer = accepted
            if self.over_limit(len(self.connections), peer):
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(sock, peer, self.service.session(), time.monotonic())
            if not self.sweep and conn.session.timeout is not None:
                self.sweep = True  # this service has timeouts of its own: start sweeping
                self.next_sweep = time.monotonic() + self.sweep_every
            self.connections[sock] = conn
            self.handlers[sock.fileno()] = functools.partial(self._on_ready, conn)
            self._watch(conn, READABLE)
            logs.connected(peer)

    # -- one connection -----------------------------------------------------

    def _watch(self, conn: Connection, events: int) -> None:
        if events == conn.events:
            return
        fd = conn.sock.fileno()
        if not conn.events:
            self.poller.register(fd, events)
        elif not events:
            self.poller.unregister(fd)
        else:
            self.poller.modify(fd, events)
        conn.events = events

    def _on_ready(self, conn: Connection, events: int) -> None:
        sock = conn.sock
        try:
            # Readable, or hung up or in error (recv says which); not while backpressure
            # has stopped the reading: then the send below meets the error instead.
            if events & ~WRITABLE and conn.events & READABLE:
                try:
                    data = sock.recv(RECV_SIZE)
                except BlockingIOError:
                    data = None
                if data and self.immediate and not conn.out:
                    # The common case, kept short: a request in, its whole reply out at once,
                    # nothing to wait for afterwards but the next request.
                    conn.received += len(data)
                    session = conn.session
                    reply, done = session.feed(data)
                    conn.requests += done
                    if self.sweep:
                        conn.last_active = time.monotonic()
                    if session.closing:  # the general path sends it, then ends the connection
                        conn.eof = conn.closing = True
                        conn.out += reply
                    elif reply:
                        try:
                            sent = sock.send(reply)
                        except BlockingIOError:
                            sent = 0
                        if sent == len(reply):
                            return
                        conn.out += memoryview(reply)[sent:]
                        self._settle(conn)  # the rest goes once the socket is writable
                        return
                elif data is not None:
                    self._read(conn, data)
            if conn.out:
                self._flush(conn)
        except OSError as exc:
            self._drop(conn, disconnect_reason(exc))
            return
        self._settle(conn)

    def _read(self, conn: Connection, data: bytes) -> None:
        """What was received (b"": end of stream), on the general path: costs and delays."""
        conn.last_active = time.monotonic()
        if data:
            conn.received += len(data)
            reply, done = conn.session.feed(data)
            if conn.session.closing:
                conn.eof = conn.closing = True
        else:
            conn.eof = True
            reply, done = conn.session.close()
        if done:
            conn.requests += done
            self.cost.burn(done)  # CPU work blocks the loop: that is the point
        self._owe(conn, reply, done)

    def _owe(self, conn: Connection, reply: bytes, done: int) -> None:
        """Queue a reply: at once, or after the delay of the ``done`` requests it ends."""
        delay = self.cost.delay * done
        if not delay and not conn.delayed:
            conn.out += reply
            return
        due = max(time.monotonic(), conn.ready_at) + delay
        conn.ready_at = due
        conn.delayed.append((due, reply))
        conn.delayed_bytes += len(reply)
        if delay:
            self.call_at(due, lambda: self._release(conn))

    def _release(self, conn: Connection) -> None:
        """A delay ran out: move the replies now due to the send buffer."""
        if self.connections.get(conn.sock) is not conn:
            return
        now = conn.last_active = time.monotonic()  # the idle clock starts once the reply is due
        while conn.delayed and conn.delayed[0][0] <= now:
            _, reply = conn.delayed.popleft()
            conn.delayed_bytes -= len(reply)
            conn.out += reply
        try:
            self._flush(conn)
        except OSError as exc:
            self._drop(conn, disconnect_reason(exc))
            return
        self._settle(conn)

    def _flush(self, conn: Connection) -> None:
        out = conn.out
        while out:
            try:
                sent = conn.sock.send(out)
            except BlockingIOError:
                return
            del out[:sent]
            conn.last_active = time.monotonic()

    def _settle(self, conn: Connection) -> None:
        """Decide what to wait for next on this connection, or close it when all is sent."""
        if conn.eof and not conn.owed:
            self._finish(conn)
            return
        events = 0
        if not conn.eof and conn.owed < HIGH_WATER:
            events |= READABLE
        if conn.out:
            events |= WRITABLE
        self._watch(conn, events)

    def _close_idle(self) -> None:
        """Close what made no progress for its time limit (``--idle-timeout``, or the session's
        own ``timeout`` if smaller): a client that sends nothing, and one that stopped reading
        its replies (as the blocking models' socket timeouts do). A client waiting for its
        own --delay is not idle: the wait is the server's."""
        now = time.monotonic()
        for conn in list(self.connections.values()):
            if conn.lingering:
                continue
            idle = time_limit(self.idle, conn.session.timeout)
            if idle is None:
                continue
            limit = now - idle
            if conn.out:
                # The kernel's send queue shrinking means the client is reading, even while a
                # send() could not go through: a full send buffer takes a third of its size
                # drained before the socket counts as writable again.
                queued = kernel_send_queue(conn.sock)
                if queued is not None and queued != conn.queued:
                    conn.queued = queued
                    conn.last_active = now
            if conn.last_active >= limit or conn.delayed:
                continue
            if conn.out:
                logs.not_reading(conn.peer, idle)
            else:
                logs.idle(conn.peer, idle)
            self._drop(conn)

    def _finish(self, conn: Connection) -> None:
        logs.disconnected(conn.peer, conn.received, conn.requests)
        if conn.closing:
            self._linger(conn)
        else:
            self._drop(conn)

    def _linger(self, conn: Connection) -> None:
        """The session ended the connection and all is sent: FIN, then discard what the client
        still sends until it closes, LINGER seconds at most (see support.linger)."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(conn)
            return
        conn.lingering = True
        self.handlers[conn.sock.fileno()] = functools.partial(self._on_linger, conn)
        self._watch(conn, READABLE)
        self.call_at(time.monotonic() + LINGER, lambda: self._drop(conn))

    def _on_linger(self, conn: Connection, events: int) -> None:
        try:
            data = conn.sock.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)

    def _drop(self, conn: Connection, reason: str | None = None) -> None:
        if self.connections.get(conn.sock) is not conn:
            return  # already dropped (a linger's timer after the client closed)
        if reason:
            logs.closed(conn.peer, reason, conn.received)
        self.connections.pop(conn.sock, None)
        self.handlers.pop(conn.sock.fileno(), None)
        self._watch(conn, 0)
        conn.sock.close()

    # -- UDP ----------------------------------------------------------------

    def _on_datagrams(self, events: int) -> None:
        sock = self.listener
        for data, address, peer in pending_datagrams(sock, DATAGRAMS_PER_WAKEUP):
            reply = self.answer_datagram(data, peer)
            if self.cost.delay:
                self.call_at(time.monotonic() + self.cost.delay,
                             lambda r=reply, a=address, p=peer: send_datagram(sock, r, a, p))
            else:
                send_datagram(sock, reply, address, peer)
