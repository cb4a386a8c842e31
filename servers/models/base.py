"""The contract every concurrency model keeps, and the few things they all share.

A model is built from a :class:`~servers.config.ServerConfig` and a
:class:`~servers.services.Service`; ``bind()`` opens its socket(s) and returns
the address it got, ``serve_forever()`` runs until a :class:`Shutdown` is raised
in it (the signal handlers of ``testbed serve`` raise one), and ``close()``
stops accepting, drops what is in flight and reaps every thread and process the
model started, within the grace period it is given.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

from servers.config import ServerConfig
from servers.services import Service

log = logging.getLogger("testbed.server")

#: accept() errors that mean "out of descriptors or memory for now", not "broken".
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

#: an EMFILE burst is over once accepts have succeeded this long without one failing
BURST_QUIET = 1.0

RECV_SIZE = 64 * 1024
MAX_DATAGRAM = 65535


class ConfigError(Exception):
    """A model cannot run as configured (e.g. an optional extra is missing): one clear line."""


class Shutdown(BaseException):
    """Raised (by a signal handler) to stop a model; a BaseException so handlers don't eat it."""


class Model(ABC):
    """One way of organising concurrency, serving any service over TCP (and UDP if ``udp``)."""

    name: ClassVar[str]
    description: ClassVar[str]
    udp: ClassVar[bool] = True

    def __init__(self, config: ServerConfig, service: Service) -> None:
        self.config = config
        self.service = service
        self.cost = config.cost
        self.stopping = threading.Event()  # cuts delays short when the server stops
        self.rejected = 0  # connections turned away by --max-connections
        self._exhausted = False  # inside a burst of EMFILE on accept
        self._exhausted_at = 0.0  # when accept last failed for want of descriptors
        self._failed_accepts = 0  # accepts that failed in the current burst
        self.owner_pid = os.getpid()  # forked children must not run the parent's shutdown
        self.signalled: str | None = None  # set by testbed serve's signal handler (see stop_requested)

    @classmethod
    def capacity(cls, config: ServerConfig) -> int | None:
        """How many clients this model serves at once with ``config``.

        None: each client gets its own thread, process or coroutine, bounded only by the
        machine (and --max-connections). A number: one at a time, or a fixed pool of
        workers; the others wait or are turned away, so that many idle clients hold every
        slot. Denial under slowloris is then the model's expected result, not a fault: the
        resilience figures say so instead of hiding it.
        """
        return None

    @abstractmethod
    def bind(self) -> tuple[str, int]:
        """Open the listening socket(s); return the (host, port) actually bound."""

    @abstractmethod
    def serve_forever(self) -> None:
        """Serve until a Shutdown is raised in the calling thread."""

    @abstractmethod
    def close(self, grace: float = 3.0) -> None:
        """Stop: close the listener, drop in-flight work, reap everything started."""

    # -- shared by the models -------------------------------------------------

    def stop_requested(self) -> None:
        """Raise Shutdown if a signal asked this server to stop; loops call it between events.

        The handler of ``testbed serve`` raises Shutdown wherever the main thread is, but
        Python swallows an exception raised in a few places ("Exception ignored in ...":
        at-fork hooks, finalizers): a SIGTERM arriving while ``os.fork()`` runs logging's
        after-fork hook was lost that way. The handler also sets ``signalled`` (a plain
        attribute: safe in a handler, unlike an Event's lock), which this checks.
        """
        if self.signalled and os.getpid() == self.owner_pid:
            raise Shutdown(self.signalled)

    def answer_datagram(self, data: bytes, peer: str) -> bytes:
        """Log one UDP datagram, burn its CPU cost and return its reply; the model then
        applies the delay its own way and sends the reply with :func:`send_datagram`."""
        log.info("client %s sent %d bytes", peer, len(data))
        reply = self.service.datagram(data)
        self.cost.burn(1)
        return reply

    def accept_failed(self, exc: OSError) -> bool:
        """Log the first EMFILE-like accept failure of a burst; True if it was one."""
        if exc.errno not in EXHAUSTED:
            return False
        self._exhausted_at = time.monotonic()
        self._failed_accepts += 1
        if not self._exhausted:
            self._exhausted = True
            log.warning("accept failed (%s): pausing accepts until descriptors are free",
                        os.strerror(exc.errno or 0))
        return True

    def accept_succeeded(self) -> None:
        """End the burst once accepts have gone BURST_QUIET seconds without failing.

        While a queue of clients drains, each freed descriptor lets one accept through
        before the next fails: that is still the same burst, not a new one to log.
        """
        if self._exhausted and time.monotonic() - self._exhausted_at >= BURST_QUIET:
            self._exhausted = False
            log.warning("accepting again (%d accepts failed for want of descriptors)",
                        self._failed_accepts)
            self._failed_accepts = 0

    def over_limit(self, open_connections: int, peer: str) -> bool:
        """True (and logged, and counted) when --max-connections turns this client away."""
        limit = self.config.max_connections
        if limit and open_connections >= limit:
            self.rejected += 1
            log.warning("client %s rejected: %d connections open (--max-connections %d)",
                        peer, open_connections, limit)
            return True
        return False


def make_listener(config: ServerConfig, port: int | None = None,
                  reuse_port: bool = False) -> socket.socket:
    """A bound (and, for TCP, listening) socket for the models that don't use socketserver.

    ``port`` overrides the configured one; ``reuse_port`` joins the SO_REUSEPORT group of
    that port (the reuseport model's workers each bind their own socket to one port).
    """
    kind = socket.SOCK_DGRAM if config.udp else socket.SOCK_STREAM
    sock = socket.socket(config.family, kind)
    try:
        if not config.udp:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, config.port if port is None else port))
        if not config.udp:
            sock.listen(config.backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def pending_datagrams(sock: socket.socket, limit: int = 64) -> Iterator[tuple[bytes, tuple, str]]:
    """(data, address, peer) of what a non-blocking UDP socket holds, at most ``limit``."""
    for _ in range(limit):
        try:
            data, address = sock.recvfrom(MAX_DATAGRAM)
        except BlockingIOError:
            return
        except OSError as exc:  # e.g. ICMP port unreachable from an earlier reply
            log.info("receive failed: %s", exc.strerror or exc)
            continue
        yield data, address, peer_name(address)


def send_datagram(sock: socket.socket, reply: bytes, address: tuple, peer: str) -> None:
    """Send a UDP reply; a reply that cannot go out is logged, never raised."""
    try:
        sock.sendto(reply, address)
    except OSError as exc:
        log.info("client %s: reply lost: %s", peer, exc.strerror or exc)


def disconnect_reason(exc: OSError) -> str:
    """How a client's connection ended, in the log's words."""
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, BrokenPipeError):
        return "stopped reading (broken pipe)"
    return exc.strerror or str(exc) or type(exc).__name__


def peer_name(address: tuple) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reap_finished(pids: set[int]) -> None:
    """Reap the children of ``pids`` that have ended, and remove them from the set."""
    for pid in list(pids):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            pids.discard(pid)


def reap_children(pids: set[int], grace: float) -> None:
    """SIGTERM the given children, wait up to ``grace`` seconds, SIGKILL the rest, reap all."""
    for pid in list(pids):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while pids:
        reap_finished(pids)
        if not pids:
            break
        if time.monotonic() >= deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for pid in list(pids):
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
            pids.clear()
            break
        time.sleep(0.02)


def join_threads(grace: float) -> None:
    """Wait up to ``grace`` seconds for every other thread of this process to end."""
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is threading.current_thread() or not thread.is_alive():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
