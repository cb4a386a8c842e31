"""``threadpool``: a fixed pool of W threads fed from a bounded queue of accepted connections.

The main thread accepts; each connection goes to a free worker thread, or
waits in the queue when all W are busy, or, when ``--queue`` connections
already wait, is closed at once and counted (``rejected: queue full``). So
the server shows queueing instead of unbounded thread growth, and what a full
queue does to clients. A connection holds its thread until the client is
done: with persistent connections, W clients at a time are served.

UDP: datagrams go through the same pool and the same queue; when it is full
the datagram is dropped (and logged), which is what UDP allows.
"""

from __future__ import annotations

import queue
import selectors
import signal
import socket
import threading
import time
from collections.abc import Callable

from servers.config import ServerConfig
from servers.models import logs
from servers.models.base import STOP_CHECK, STOP_SIGNALS, Model
from servers.models.blocking import serve_connection, serve_datagram
from servers.models.support import SignalWakeup, join_threads, make_listener, pending_datagrams

DEFAULT_WORKERS = 8
DEFAULT_QUEUE = 16
ACCEPTS_PER_WAKEUP = 64

#: what a worker takes: a connection (socket, peer), a datagram (data, address, peer) or None
Job = tuple | None


class ThreadPoolModel(Model):
    name = "threadpool"
    description = "a fixed pool of --workers threads fed by a bounded --queue; turns clients away when full"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.workers = self.config.workers or DEFAULT_WORKERS
        self.queue_size = self.config.queue or DEFAULT_QUEUE
        self.jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.admitted = 0  # being served + waiting in the queue
        self.queue_full = 0  # turned away because the queue was full
        self.live: set[socket.socket] = set()  # client sockets, to wake their threads on close
        self.threads: list[threading.Thread] = []
        self.listener: socket.socket | None = None

    @classmethod
    def capacity(cls, config: ServerConfig) -> int | None:
        """The pool's threads: that many clients are served at once, the others wait."""
        return config.workers or DEFAULT_WORKERS

    # -- contract -------------------------------------------------------------

    def bind(self) -> tuple[str, int]:
        self.listener = make_listener(self.config)
        host, port = self.listener.getsockname()[:2]
        return host, port

    def serve_forever(self) -> None:
        target = self._datagram_worker if self.config.udp else self._connection_worker
        # The threads inherit a mask that blocks SIGTERM and SIGINT, so the kernel delivers
        # them to the main thread, the only one that can run their handler; the main thread
        # waits in a selector that includes a signal wakeup socket, so none is missed while
        # the GIL passes between threads.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            for i in range(self.workers):
                thread = threading.Thread(target=target, name=f"pool-{i}", daemon=True)
                thread.start()
                self.threads.append(thread)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if self.config.udp:
            self._watch(self._receive_some)
        else:
            self._watch(self._accept_some)

    def close(self, grace: float = 3.0) -> None:
        self.stopping.set()
        if self.listener is not None:
            self.listener.close()
        with self.lock:
            live = list(self.live)
        for sock in live:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a worker blocked in recv or send
            except OSError:
                pass
        for _ in self.threads:
            self.jobs.put(None)
        join_threads(grace)

    # -- admission: one lock, so "busy + waiting" is exact --------------------

    def _admit(self, peer: str, what: str) -> bool:
        """Count a new job in, or say why not (the queue is full, or --max-connections)."""
        with self.lock:
            admitted = self.admitted
            if what == "client" and self.over_limit(admitted, peer):
                return False
            waiting = admitted - self.workers
            if waiting >= self.queue_size:
                self.queue_full += 1
                logs.queue_full(what, peer, waiting)
                return False
            self.admitted = admitted + 1
        if waiting >= 0:
            logs.queued(what, peer, self.workers, waiting + 1)
        return True

    def _done(self) -> None:
        with self.lock:
            self.admitted -= 1

    # -- TCP ------------------------------------------------------------------

    def _watch(self, ready: Callable[[socket.socket], None]) -> None:
        """Call ``ready(listener)`` whenever it is readable, until a stop signal comes."""
        listener = self.listener
        assert listener is not None
        listener.setblocking(False)
        with SignalWakeup() as wakeup, selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wakeup.reader, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select(STOP_CHECK):
                    if key.fileobj is wakeup.reader:
                        wakeup.drain()  # the signal's handler raises Shutdown right after
                    else:
                        ready(listener)
                self.stop_requested()  # in case the handler's Shutdown was swallowed

    def _accept_some(self, listener: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            accepted = self.accept_client(listener)
            if accepted is None:
                if self.accept_starved:
                    time.sleep(0.05)  # out of descriptors: the listener stays readable
                return
            sock, peer = accepted
            sock.setblocking(True)
            if not self._admit(peer, "client"):
                sock.close()
                continue
            with self.lock:
                self.live.add(sock)
            self.jobs.put((sock, peer))

    def _connection_worker(self) -> None:
        while (job := self.jobs.get()) is not None:
            sock, peer = job
            try:
                if not self.stopping.is_set():
                    serve_connection(self, sock, peer)
            except Exception as exc:  # noqa: BLE001 - a bug must not shrink the pool
                logs.unexpected(peer, exc)
            finally:
                with self.lock:
                    self.live.discard(sock)
                sock.close()
                self._done()

    # -- UDP ------------------------------------------------------------------

    def _receive_some(self, listener: socket.socket) -> None:
        for data, address, peer in pending_datagrams(listener, ACCEPTS_PER_WAKEUP):
            if self._admit(peer, "datagram from"):
                self.jobs.put((data, address, peer))

    def _datagram_worker(self) -> None:
        while (job := self.jobs.get()) is not None:
            data, address, peer = job
            try:
                serve_datagram(self, data, self.listener, address, peer)
            except Exception as exc:  # noqa: BLE001 - a bug must not shrink the pool
                logs.unexpected(peer, exc)
            finally:
                self._done()
