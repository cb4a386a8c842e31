"""Plumbing the models share that is not the contract: sockets, datagrams, children, signals.

:mod:`servers.models.base` says what a model must do; this module holds the
pieces that help it do so, so that no model imports plumbing from another:

- :func:`make_listener`: the bound, listening socket of ``ServerConfig``;
- :func:`pending_datagrams`, :func:`send_datagram`: UDP receive and reply, errors logged;
- :func:`peer_name`, :func:`disconnect_reason`: how the log names a client and an end;
- :func:`reap_finished`, :func:`reap_children`, :func:`join_threads`: leave nothing behind;
- :func:`kernel_send_queue`: whether a client that cannot be sent to is still reading;
- :func:`time_limit`, :func:`linger`: a session's timeout, and the end a session asks for;
- :class:`SignalWakeup`: wait in ``select`` without missing a signal.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Iterator

from servers.config import ServerConfig
from servers.models import logs

try:
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # not a Unix with TIOCOUTQ: only sends count as progress
    fcntl = None  # type: ignore[assignment]
    _OUTQ = None

RECV_SIZE = 64 * 1024
MAX_DATAGRAM = 65535

#: how long a connection the server ends is read (and the bytes discarded) after its FIN
LINGER = 1.0


# -- sockets ------------------------------------------------------------------

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


def peer_name(address: tuple) -> str:
    """``127.0.0.1:5000`` or ``[::1]:5000``: how every log line names a client."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def disconnect_reason(exc: OSError) -> str:
    """How a client's connection ended, in the log's words."""
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, BrokenPipeError):
        return "stopped reading (broken pipe)"
    return exc.strerror or str(exc) or type(exc).__name__


def kernel_send_queue(sock: socket.socket) -> int | None:
    """Bytes sent to the kernel but not yet acknowledged by the peer (TIOCOUTQ), if known."""
    if _OUTQ is None:
        return None
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return None


def time_limit(idle: float | None, timeout: float | None) -> float | None:
    """How long a connection may wait for its client now: the smaller of ``--idle-timeout``
    (``idle``, None or 0 for none) and the session's own ``timeout`` (None for none)."""
    if timeout is None:
        return idle or None
    return min(idle, timeout) if idle else timeout


def linger(sock: socket.socket, seconds: float = LINGER) -> None:
    """End a blocking connection the server closes: FIN, then read and discard until the
    client closes too, for ``seconds`` at most (nginx's lingering close).

    Closing a socket with unread bytes sends a reset, and a reset can make the client's
    kernel discard a reply it has not read yet (a pipelined request after
    ``Connection: close``, a body still coming after a 413).
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(RECV_SIZE):
                return
    except OSError:  # TimeoutError included: the client kept the connection open
        return


# -- datagrams ----------------------------------------------------------------

def pending_datagrams(sock: socket.socket, limit: int = 64) -> Iterator[tuple[bytes, tuple, str]]:
    """(data, address, peer) of what a non-blocking UDP socket holds, at most ``limit``."""
    for _ in range(limit):
        try:
            data, address = sock.recvfrom(MAX_DATAGRAM)
        except BlockingIOError:
            return
        except OSError as exc:  # e.g. ICMP port unreachable from an earlier reply
            logs.receive_failed(exc)
            continue
        yield data, address, peer_name(address)


def send_datagram(sock: socket.socket, reply: bytes | None, address: tuple, peer: str) -> None:
    """Send a UDP reply (None: the service gives none); one that cannot go out is logged."""
    if reply is None:
        return
    try:
        sock.sendto(reply, address)
    except OSError as exc:
        logs.reply_lost(peer, exc)


# -- children and threads -----------------------------------------------------

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


# -- signals ------------------------------------------------------------------

class SignalWakeup:
    """Wait for signals without a race: a socket that the C-level handler writes to.

    A signal's Python handler runs between bytecodes; one that arrives just
    before a blocking call (``accept``, ``waitpid``, ``select`` with no timeout)
    has been "handled" at C level, so it does not interrupt the call, and the
    Shutdown is raised only when the call returns, maybe never. With
    ``signal.set_wakeup_fd`` every caught signal also writes a byte here, so a
    ``select`` that includes :attr:`reader` always wakes up and the handler runs.
    ``extra`` signals (e.g. SIGCHLD) get a no-op handler so that they wake it too.
    """

    def __init__(self, *extra: signal.Signals) -> None:
        self.extra = extra
        self.reader, self.writer = socket.socketpair()
        self.reader.setblocking(False)
        self.writer.setblocking(False)
        self.previous_fd = -1
        self.previous_handlers: dict[signal.Signals, object] = {}

    def __enter__(self) -> SignalWakeup:
        for signum in self.extra:
            self.previous_handlers[signum] = signal.signal(signum, _ignore)
        self.previous_fd = signal.set_wakeup_fd(self.writer.fileno(), warn_on_full_buffer=False)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.set_wakeup_fd(self.previous_fd)
        for signum, handler in self.previous_handlers.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        self.reader.close()
        self.writer.close()

    def wait(self, timeout: float | None = None) -> None:
        """Block until a signal came (or ``timeout`` passed), then empty the socket."""
        select.select([self.reader], [], [], timeout)
        self.drain()

    def drain(self) -> None:
        try:
            while self.reader.recv(512):
                pass
        except BlockingIOError:
            pass

    def forget(self) -> None:
        """In a forked child: detach from the parent's wakeup socket."""
        signal.set_wakeup_fd(-1)
        self.reader.close()
        self.writer.close()


def _ignore(signum: int, frame: object) -> None:
    """A handler that does nothing: the signal only has to write to the wakeup socket."""
