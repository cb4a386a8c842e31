"""``forking``: socketserver.ForkingTCPServer / ForkingUDPServer, a process per client."""

from __future__ import annotations

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
        self.server.open_connections = lambda: len(self.server.active_children or ())
        return address

    def stop_workers(self, grace: float) -> None:
        reap_children(set(self.server.active_children or ()), grace)
