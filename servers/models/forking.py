"""``forking``: socketserver.ForkingTCPServer / ForkingUDPServer, a process per client."""

from __future__ import annotations

import os
import signal
import socketserver
from typing import Any

from servers.models.base import STOP_SIGNALS
from servers.models.socketserver_base import SocketServerModel
from servers.models.support import reap_children, reap_finished


class ForkWithSignalsBlocked:
    """ForkingMixIn.process_request with SIGTERM and SIGINT blocked around ``os.fork()``.

    ``os.fork()`` runs Python at-fork hooks (logging's lock release, among others), and an
    exception raised in one is swallowed: a SIGTERM whose handler raised Shutdown there was
    lost, and the server served on.
    Blocked, the signal waits until the child is forked and recorded, then is handled in
    ordinary code; the child starts with no pending signal and the parent's handlers.
    """

    active_children: set[int] | None

    def process_request(self, request: Any, client_address: Any) -> None:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = 0
        try:
            pid = os.fork()
            if pid:
                if self.active_children is None:
                    self.active_children = set()
                self.active_children.add(pid)  # recorded before a pending SIGTERM can stop us
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if pid:
            self.close_request(request)  # type: ignore[attr-defined]
            return
        # The child, as in ForkingMixIn: this must never return, hence os._exit().
        status = 1
        try:
            self.finish_request(request, client_address)  # type: ignore[attr-defined]
            status = 0
        except Exception:
            self.handle_error(request, client_address)  # type: ignore[attr-defined]
        finally:
            try:
                self.shutdown_request(request)  # type: ignore[attr-defined]
            finally:
                os._exit(status)


class ForkingModel(SocketServerModel):
    name = "forking"
    description = "socketserver.ForkingTCPServer/UDPServer: a process per connection (per datagram)"
    tcp_class = socketserver.ForkingTCPServer
    udp_class = socketserver.ForkingUDPServer
    server_mixins = (ForkWithSignalsBlocked,)

    def bind(self) -> tuple[str, int]:
        address = super().bind()
        # The parent closes its copy of each client socket at once; what is open is the children.
        self.server.open_connections = self.open_connections
        return address

    def open_connections(self) -> int:
        """Live children: those that ended are reaped first, or a client arriving after the
        others left would be turned away for connections that are already closed (socketserver
        reaps only between requests)."""
        children = self.server.active_children
        if not children:
            return 0
        reap_finished(children)
        return len(children)

    def stop_workers(self, grace: float) -> None:
        reap_children(set(self.server.active_children or ()), grace)
