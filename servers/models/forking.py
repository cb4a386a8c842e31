"""``forking``: socketserver.ForkingTCPServer / ForkingUDPServer, a process per client."""

from __future__ import annotations

import os
import socketserver

from servers.models.base import reap_children
from servers.models.socketserver_base import SocketServerModel


class ForkingModel(SocketServerModel):
    name = "forking"
    description = "socketserver.ForkingTCPServer/UDPServer: a process per connection (per datagram)"
    tcp_class = socketserver.ForkingTCPServer
    udp_class = socketserver.ForkingUDPServer

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
        for pid in list(children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                children.discard(pid)
        return len(children)

    def stop_workers(self, grace: float) -> None:
        reap_children(set(self.server.active_children or ()), grace)
