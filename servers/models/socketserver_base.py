"""The glue between CPython's socketserver and the model contract.

The socketserver-based models are thin: a request handler that hands the
connection (or datagram) to the blocking loops, and the socketserver class of
the right kind, extended by :class:`TestbedServerMixIn` with the limits every
model keeps.
"""

from __future__ import annotations

import socket
import socketserver
import sys
import time
from typing import Any, ClassVar

from servers.models import logs
from servers.models.base import STOP_CHECK, Model
from servers.models.blocking import serve_connection, serve_datagram
from servers.models.support import MAX_DATAGRAM, peer_name


class StreamHandler(socketserver.BaseRequestHandler):
    """One TCP connection, pumped through the service by the shared blocking loop."""

    def handle(self) -> None:
        serve_connection(self.server.model, self.request, peer_name(self.client_address))


class DatagramHandler(socketserver.BaseRequestHandler):
    """One UDP datagram, answered to its sender."""

    def handle(self) -> None:
        data, sock = self.request
        serve_datagram(self.server.model, data, sock, self.client_address,
                       peer_name(self.client_address))


class TestbedServerMixIn:
    """Limits for any socketserver class: backlog, --max-connections, EMFILE, quiet errors."""

    model: SocketServerModel
    allow_reuse_address = True
    max_packet_size = MAX_DATAGRAM  # socketserver's 8192 would truncate big datagrams
    daemon_threads = True  # shutdown joins them itself, with a deadline
    block_on_close = False
    max_children = 256  # ForkingMixIn's 40 would make the 41st client wait for a child to end

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.live: set[socket.socket] = set()  # open client sockets, to wake them at shutdown
        super().__init__(*args, **kwargs)

    def get_request(self) -> Any:
        try:
            request = super().get_request()
        except OSError as exc:
            if self.model.accept_failed(exc):
                time.sleep(0.05)  # the listener stays readable: don't spin on it
            raise
        self.model.accept_succeeded()
        return request

    def open_connections(self) -> int:
        return len(self.live)

    def service_actions(self) -> None:
        """Between requests (at least every poll interval): reap children, honour a signal."""
        super().service_actions()
        self.model.stop_requested()

    def verify_request(self, request: Any, client_address: Any) -> bool:
        if self.socket_type == socket.SOCK_DGRAM or not self.model.config.max_connections:
            return True
        return not self.model.over_limit(self.open_connections(), peer_name(client_address))

    def process_request(self, request: Any, client_address: Any) -> None:
        if self.socket_type == socket.SOCK_STREAM:
            self.live.add(request)
        super().process_request(request, client_address)

    def close_request(self, request: Any) -> None:
        self.live.discard(request)
        super().close_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        logs.unexpected(peer_name(client_address), exc)


class SocketServerModel(Model):
    """A model made of a socketserver class for TCP and one for UDP."""

    tcp_class: ClassVar[type[socketserver.BaseServer]]
    udp_class: ClassVar[type[socketserver.BaseServer]]
    #: mix-ins placed between TestbedServerMixIn and the socketserver class
    server_mixins: ClassVar[tuple[type, ...]] = ()
    server: Any

    def bind(self) -> tuple[str, int]:
        config = self.config
        base = self.udp_class if config.udp else self.tcp_class
        cls = type(base.__name__, (TestbedServerMixIn, *self.server_mixins, base), {
            "address_family": config.family,
            "request_queue_size": config.backlog,
        })
        handler = DatagramHandler if config.udp else StreamHandler
        self.server = cls((config.host, config.port), handler, bind_and_activate=False)
        self.server.model = self
        try:
            self.server.server_bind()
            self.server.server_activate()
        except BaseException:
            self.server.server_close()
            raise
        host, port = self.server.server_address[:2]
        return host, port

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=STOP_CHECK)

    def close(self, grace: float = 3.0) -> None:
        self.stopping.set()
        self.server.socket.close()
        for sock in list(self.server.live):
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a handler blocked in recv or send
            except OSError:
                pass
        self.stop_workers(grace)

    def stop_workers(self, grace: float) -> None:
        """Reap the threads or processes serving clients (none for the sequential model)."""
