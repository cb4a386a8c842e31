"""``asyncio``: asyncio streams (``asyncio.start_server``), what most Python users pick today.

One thread, one event loop, a coroutine per connection reading with
``reader.read`` and answering with ``writer.write`` + ``await writer.drain()``
(backpressure: a client that does not read its replies stops being read once
the transport's buffer is full; with ``--idle-timeout`` a client that reads
nothing for that long is closed, as one that sends nothing is). A read's time
limit (``--idle-timeout``, a session's ``timeout``) is kept by one sweep task
for all connections, not by a timer per read. A ``--delay``
is ``await asyncio.sleep``, so other clients are served meanwhile;
``--work-ms`` burns CPU in the coroutine and blocks the loop, on purpose.
``--loop uvloop`` runs the same code on libuv when uvloop is installed
(``pip install 'testbed[uvloop]'``).

Signals: the ``Shutdown`` that ``testbed serve``'s handler raises cannot be
trusted to leave a running loop: raised inside a task it becomes that task's
exception, inside a callback it goes to the loop's exception handler, and the
server would keep running. So while the loop runs, SIGTERM and SIGINT go
through ``loop.add_signal_handler``, which stops the loop; ``serve_forever``
then raises ``Shutdown`` itself and ``close()`` cancels the tasks, aborts the
transports and closes the loop.

UDP: an ``asyncio.DatagramProtocol``; a delayed reply is a ``call_later``; an empty
reply goes out on the socket itself (the transport would drop it).
"""

from __future__ import annotations

import asyncio
import signal
import socket
from typing import Any

from servers.models import logs
from servers.models.base import STOP_SIGNALS, ConfigError, Model, Shutdown
from servers.models.support import (
    LINGER,
    RECV_SIZE,
    disconnect_reason,
    kernel_send_queue,
    make_listener,
    peer_name,
    send_datagram,
    time_limit,
)
from servers.services import Session

SWEEP = 0.25  # the longest a read waits past its time limit (seconds)


def new_event_loop(kind: str) -> asyncio.AbstractEventLoop:
    """A fresh loop of the kind ``--loop`` names; ConfigError (one clear line) if it is missing."""
    if kind == "uvloop":
        try:
            import uvloop  # an optional extra
        except ImportError:
            raise ConfigError("--loop uvloop needs uvloop, which is not installed "
                          "(pip install 'testbed[uvloop]')") from None
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class AsyncioModel(Model):
    name = "asyncio"
    description = "asyncio streams (start_server): a coroutine per connection; --loop uvloop for libuv"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.server: asyncio.Server | None = None
        self.datagrams: asyncio.DatagramTransport | None = None
        self.writers: set[asyncio.StreamWriter] = set()  # every open connection's transport
        self.tasks: set[asyncio.Task] = set()
        self.waits: dict[asyncio.Task, Wait] = {}  # connections whose reads have a time limit
        self.sweeper: asyncio.Task | None = None

    # -- contract -------------------------------------------------------------

    def bind(self) -> tuple[str, int]:
        self.loop = loop = new_event_loop(self.config.loop)
        loop.set_exception_handler(self._on_loop_error)
        sock = make_listener(self.config)
        host, port = sock.getsockname()[:2]
        try:
            if self.config.udp:
                self.datagrams, _ = loop.run_until_complete(loop.create_datagram_endpoint(
                    lambda: Datagrams(self, sock), sock=sock))
            else:
                self.server = loop.run_until_complete(asyncio.start_server(
                    self._accepted, sock=sock, limit=RECV_SIZE,
                    backlog=self.config.backlog))  # start_server would listen(100) again
        except BaseException:
            sock.close()
            raise
        return host, port

    def serve_forever(self) -> None:
        loop = self.loop
        assert loop is not None
        caught: list[int] = []

        def on_signal(signum: int) -> None:
            caught.append(signum)
            self.signalled = signal.Signals(signum).name
            loop.stop()

        previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            self.stop_requested()  # a signal whose Shutdown a callback in bind() swallowed
            loop.run_forever()
        finally:
            # Hand the signals back to testbed serve's handlers, with no gap in between.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:
                for signum, handler in previous.items():
                    loop.remove_signal_handler(signum)
                    signal.signal(signum, handler)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if caught:
            raise Shutdown(signal.Signals(caught[0]).name)

    def close(self, grace: float = 3.0) -> None:
        self.stopping.set()
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.run_until_complete(self._stop(grace))
        finally:
            loop.close()

    async def _stop(self, grace: float) -> None:
        """Stop listening, cancel every client's task, abort what is left, let them close."""
        if self.server is not None:
            self.server.close()
        if self.datagrams is not None:
            self.datagrams.abort()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        # Transports close their sockets in callbacks of the next loop iterations.
        for _ in range(3):
            await asyncio.sleep(0)
        await asyncio.get_running_loop().shutdown_asyncgens()

    # -- TCP ------------------------------------------------------------------

    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Called as each connection is made: count it, then give it a task."""
        self.accept_succeeded()
        address = writer.get_extra_info("peername")
        peer = peer_name(address) if address else "(gone)"
        if self.over_limit(len(self.writers), peer):
            writer.transport.abort()
            return
        self.writers.add(writer)
        task = asyncio.get_running_loop().create_task(self._client(reader, writer, peer))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      peer: str) -> None:
        """Pump one connection through the service until the client is done."""
        session = self.service.session()
        cost = self.cost
        idle = self.config.idle_timeout
        received = requests = 0
        ending = False  # the session ends the connection once its reply is sent
        loop = asyncio.get_running_loop()
        wait = None  # watched by the sweep if a time limit applies to its reads
        if time_limit(idle, session.timeout) is not None:
            wait = self._watch(session)
        logs.connected(peer)
        try:
            while True:
                if wait is not None:
                    wait.reading = True
                    data = await reader.read(RECV_SIZE)
                    wait.reading = False
                    wait.since = loop.time()
                else:
                    data = await reader.read(RECV_SIZE)
                if data:
                    received += len(data)
                    reply, done = session.feed(data)
                else:
                    reply, done = session.close()
                if done:
                    requests += done
                    cost.burn(done)  # CPU work blocks the loop: that is the point
                    if cost.delay:
                        await asyncio.sleep(cost.delay * done)
                if reply:
                    writer.write(reply)
                    if idle:
                        await drain_while_reading(writer, idle)  # TimeoutError: not reading
                    else:
                        await writer.drain()  # backpressure: wait while the client does not read
                if not data:
                    break
                if session.closing:
                    ending = True
                    break
        except asyncio.CancelledError:
            if wait is None or wait.expired is None:
                raise  # the server is stopping
            logs.idle(peer, wait.expired)
        except TimeoutError:  # a drain that --idle-timeout bounds
            logs.not_reading(peer, idle)
        except ConnectionError as exc:
            logs.closed(peer, disconnect_reason(exc), received)
        except OSError as exc:
            logs.failed(peer, exc)
        except Exception as exc:  # noqa: BLE001 - a bug in one client must not stop the loop
            logs.unexpected(peer, exc)
        else:
            logs.disconnected(peer, received, requests)
            if ending:
                await linger(reader, writer)
            writer.close()  # graceful: what is buffered is still sent, then FIN
        finally:
            self.writers.discard(writer)
            if wait is not None:
                self.waits.pop(wait.task, None)
            if not writer.transport.is_closing():
                writer.transport.abort()  # failed or cancelled: drop it now

    # -- time limits on reads: one sweep, nothing per request -----------------

    def _watch(self, session: Session) -> Wait:
        """Have the sweep watch the current task's reads; start the sweep if it is not running."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        wait = self.waits[task] = Wait(task, session, loop.time())
        if self.sweeper is None:
            self.sweeper = loop.create_task(self._sweep())
        return wait

    async def _sweep(self) -> None:
        """Cancel the reads that have waited longer than their limit (--idle-timeout, or the
        session's own timeout if smaller), every SWEEP seconds at most. An ``asyncio.timeout``
        around each read would cost a timer per request; this costs a clock read."""
        idle = self.config.idle_timeout
        every = min(idle / 4, SWEEP) if idle else SWEEP
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            now = loop.time()
            for wait in list(self.waits.values()):
                if not wait.reading or wait.expired is not None:
                    continue
                limit = time_limit(idle, wait.session.timeout)
                if limit is not None and now - wait.since >= limit:
                    wait.expired = limit
                    wait.task.cancel()

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's errors as one log line each, never a traceback; EMFILE as the others log it."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and self.accept_failed(exc):
            return  # asyncio itself pauses accepting for a second
        logs.loop_error(context.get("message", "error"), exc)


async def linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The session ends the connection: FIN once all is sent, then discard what the client
    still sends until it closes, LINGER seconds at most (see support.linger)."""
    try:
        if writer.can_write_eof():
            writer.write_eof()
        async with asyncio.timeout(LINGER):
            while await reader.read(RECV_SIZE):
                pass
    except (TimeoutError, OSError):
        pass


async def drain_while_reading(writer: asyncio.StreamWriter, idle: float) -> None:
    """``writer.drain()``, but TimeoutError once the client has read nothing for ``idle`` s.

    Progress is what the client takes: the bytes owed (the transport's buffer plus the
    kernel's send queue) going down. A slow but steady reader is kept, however long its
    reply takes; one that stopped reading is closed like a client that stopped sending.
    """
    loop = asyncio.get_running_loop()
    transport, sock = writer.transport, writer.get_extra_info("socket")
    step = idle / 4

    def owed() -> int | None:
        queued = kernel_send_queue(sock) if sock is not None else None
        return None if queued is None else queued + transport.get_write_buffer_size()

    # Measured only once a drain has waited: most drains return at once, and each
    # measure costs an ioctl.
    last: int | None = None
    since = loop.time()
    while True:
        try:
            async with asyncio.timeout(step):
                await writer.drain()
            return
        except TimeoutError:
            now = owed()
            if last is None:
                last = now
            elif now is not None and now != last:
                last, since = now, loop.time()
            elif loop.time() - since >= idle:
                raise


class Wait:
    """What the sweep knows of one connection: whether it is reading, since when."""

    __slots__ = ("task", "session", "since", "reading", "expired")

    def __init__(self, task: asyncio.Task, session: Session, since: float) -> None:
        self.task = task
        self.session = session
        self.since = since  # the connection's start, or the last bytes read
        self.reading = False
        self.expired: float | None = None  # the limit that ran out: the sweep cancelled the read


class Datagrams(asyncio.DatagramProtocol):
    """UDP: each datagram is a request, answered to its sender (after the delay, if any)."""

    def __init__(self, model: AsyncioModel, sock: socket.socket) -> None:
        self.model = model
        self.sock = sock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        model = self.model
        reply = model.answer_datagram(data, peer_name(addr))
        if model.cost.delay:
            asyncio.get_running_loop().call_later(model.cost.delay, self.send, reply, addr)
        else:
            self.send(reply, addr)

    def send(self, reply: bytes, addr: tuple) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if reply:
            self.transport.sendto(reply, addr)
            return
        # asyncio's transport silently drops an empty datagram (CPython 3.11): answer the
        # zero-length request on the socket itself, as every other model does.
        send_datagram(self.sock, reply, addr, peer_name(addr))

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        logs.receive_failed(exc)

