"""The contract every concurrency model keeps: read :class:`Model` to write a new one.

The rest a model needs is in two modules beside this one:
:mod:`servers.models.logs` (every line a model logs) and
:mod:`servers.models.support` (listener, datagrams, reaping, signal wake-up).
A model imports from those three and from nothing else in ``servers/models/``,
except a model built on another one (``reuseport`` runs ``select`` loops).
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from abc import ABC, abstractmethod
from typing import ClassVar

from servers.config import ServerConfig
from servers.models import logs
from servers.models.support import peer_name
from servers.services import Service

#: the signals that stop a server; threads and children block or reset them (see Model)
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})

#: the longest any loop may wait before it calls Model.stop_requested (seconds)
STOP_CHECK = 0.5

#: accept() errors that mean "out of descriptors or memory for now", not "broken".
EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

#: an EMFILE burst is over once accepts have succeeded this long without one failing
BURST_QUIET = 1.0


class ConfigError(Exception):
    """A model cannot run as configured (e.g. an optional extra is missing): one clear line."""


class Shutdown(BaseException):
    """Raised (by a signal handler) to stop a model; a BaseException so handlers don't eat it."""


class Model(ABC):
    """One way of organising concurrency, serving any service over TCP (and UDP if ``udp``).

    Methods for the caller (``testbed serve``, in servers/cli.py)::

        model = SomeModel(config, service)
        host, port = model.bind()   # open the socket(s); OSError, or ConfigError: one line
        model.serve_forever()       # until a Shutdown is raised in it
        model.close(grace)          # always, in the process that built the model

    Class attributes a model sets: ``name`` (its name in the registry),
    ``description`` (one line for ``testbed models``), ``udp`` (False: TCP only).

    Methods a subclass must override:

    - ``bind()``: open the listening socket(s) (:func:`support.make_listener
      <servers.models.support.make_listener>` does host, port, udp and backlog)
      and return the address actually bound; serve nothing yet.
    - ``serve_forever()``: serve until a :class:`Shutdown` is raised. ``testbed
      serve``'s handler of :data:`STOP_SIGNALS` raises it in the main thread;
      call :meth:`stop_requested` at least every :data:`STOP_CHECK` seconds in
      any loop that waits, because Python swallows an exception raised in a few
      places. Threads the model starts block :data:`STOP_SIGNALS`
      (``signal.pthread_sigmask``) so that only the main thread handles them;
      a forked child resets them and must never run the parent's shutdown (it
      leaves with ``os._exit``). A main thread that blocks in a call a signal
      does not interrupt waits in ``select`` with a
      :class:`~servers.models.support.SignalWakeup`.
    - ``close(grace)``: set :attr:`stopping`, close the listener, wake the
      handlers blocked on a client (``shutdown(SHUT_RDWR)``), drop what is in
      flight, and reap every thread and process started, within ``grace``
      seconds (``support.join_threads``, ``support.reap_children``).

    A subclass may override :meth:`capacity` (a fixed number of clients served at once).

    Methods for derived classes (call them; don't override them):

    - :meth:`stop_requested`: between events, see above.
    - :meth:`accept_client`: ``accept()`` with the bookkeeping below, for a model
      that accepts itself; ``None`` means try again later, and after an EMFILE
      (:attr:`accept_starved`) stop accepting for a moment instead of spinning.
      A model whose accept is made by a library (socketserver, asyncio) calls
      :meth:`accept_failed` when it fails and :meth:`accept_succeeded` when it
      succeeds, which log a burst of EMFILE as two lines, not thousands.
    - :meth:`over_limit`: once per accepted TCP connection, before serving it, with
      the connections this model has open; True: close it at once.
    - :meth:`answer_datagram`: each UDP datagram (logged, CPU cost burnt); the
      model then waits the delay its own way and sends the reply with
      ``support.send_datagram``.

    A TCP connection, whatever the model (``servers.models.blocking.serve_connection``
    is the whole of it for a blocking model, ``select.py`` for an event loop):

    - ``session = self.service.session()``; ``logs.connected(peer)``;
    - each chunk received: ``reply, requests = session.feed(data)``; at end of
      stream ``session.close()`` instead; the reply goes out in order, after the
      cost of the ``requests`` it completes (below), and the connection closes
      once the client has closed and all is sent: ``logs.disconnected(peer,
      bytes received, requests)``;
    - any other end is one line of :mod:`~servers.models.logs` (``closed``
      with ``support.disconnect_reason``, ``idle``, ``not_reading``, ``failed``,
      ``unexpected``), never a traceback, and never stops the others.

    Each field of :class:`~servers.config.ServerConfig`:

    - ``host``, ``port``, ``udp``, ``backlog``: what ``bind()`` listens on, and the
      listen queue (``make_listener`` passes it to ``listen()``; a library gets
      it too: socketserver's ``request_queue_size``, asyncio's ``backlog=``).
      A model without UDP sets ``udp = False`` and ``testbed serve`` refuses it.
    - ``cost`` (also :attr:`cost`), per request the session says it completed:
      ``cost.burn(requests)`` in the thread that serves (CPU, holding the GIL:
      an event loop is blocked meanwhile, which is the point), then
      ``cost.delay * requests`` seconds before the reply goes out. A blocking
      model sleeps (``cost.block(requests, self.stopping)``: False means the
      server is stopping, drop the client with ``logs.dropped_stopping``); an
      event loop arms a timer and serves the others meanwhile, keeping each
      connection's replies in order.
    - ``max_connections`` (0: no limit): :meth:`over_limit`.
    - ``idle_timeout`` (0: never): close a connection that made no progress for
      that long: nothing received while the server waits for a request
      (``logs.idle``), or replies owed that the client does not read
      (``logs.not_reading``; ``support.kernel_send_queue`` going down counts as
      reading). Waiting for a reply's own delay is the server's wait, not idleness.
    - ``workers`` (0: the model's default): the size of a pool of threads or
      processes; models without a pool ignore it.
    - ``queue``: the threadpool model's waiting room (``logs.queued``,
      ``logs.queue_full``); ``loop``: the asyncio model's event loop. Others ignore them.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    udp: ClassVar[bool] = True

    def __init__(self, config: ServerConfig, service: Service) -> None:
        self.config = config
        self.service = service
        self.cost = config.cost
        self.stopping = threading.Event()  # cuts delays short when the server stops
        self.rejected = 0  # connections turned away by --max-connections
        self.accept_starved = False  # the last accept_client failed for want of descriptors
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

    # -- for derived classes --------------------------------------------------

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

    def accept_client(self, listener: socket.socket) -> tuple[socket.socket, str] | None:
        """Accept one client: (socket, peer), or None when there is none or accept failed.

        Failures are logged (an EMFILE burst once, see :meth:`accept_failed`);
        :attr:`accept_starved` says whether this one was for want of descriptors.
        """
        try:
            sock, address = listener.accept()
        except BlockingIOError:
            self.accept_starved = False
            return None
        except OSError as exc:
            self.accept_starved = self.accept_failed(exc)
            if not self.accept_starved and not self.stopping.is_set():
                logs.accept_error(exc)
            return None
        self.accept_starved = False
        self.accept_succeeded()
        return sock, peer_name(address)

    def accept_failed(self, exc: OSError) -> bool:
        """Log the first EMFILE-like accept failure of a burst; True if it was one."""
        if exc.errno not in EXHAUSTED:
            return False
        self._exhausted_at = time.monotonic()
        self._failed_accepts += 1
        if not self._exhausted:
            self._exhausted = True
            logs.accepts_paused(exc.errno or 0)
        return True

    def accept_succeeded(self) -> None:
        """End the burst once accepts have gone BURST_QUIET seconds without failing.

        While a queue of clients drains, each freed descriptor lets one accept through
        before the next fails: that is still the same burst, not a new one to log.
        """
        if self._exhausted and time.monotonic() - self._exhausted_at >= BURST_QUIET:
            self._exhausted = False
            logs.accepts_resumed(self._failed_accepts)
            self._failed_accepts = 0

    def over_limit(self, open_connections: int, peer: str) -> bool:
        """True (and logged, and counted) when --max-connections turns this client away."""
        limit = self.config.max_connections
        if limit and open_connections >= limit:
            self.rejected += 1
            logs.over_limit(peer, open_connections, limit)
            return True
        return False

    def answer_datagram(self, data: bytes, peer: str) -> bytes | None:
        """Log one UDP datagram, burn its CPU cost and return its reply (None: no reply);
        the model then applies the delay its own way and sends it with
        ``support.send_datagram``."""
        logs.datagram(peer, len(data))
        reply = self.service.datagram(data)
        self.cost.burn(1)
        return reply
