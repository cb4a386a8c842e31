"""``threading``: socketserver.ThreadingTCPServer / ThreadingUDPServer, a thread per client."""

from __future__ import annotations

import socketserver

from servers.models.socketserver_base import SocketServerModel
from servers.models.support import join_threads


class ThreadingModel(SocketServerModel):
    name = "threading"
    description = "socketserver.ThreadingTCPServer/UDPServer: a thread per connection (per datagram)"
    tcp_class = socketserver.ThreadingTCPServer
    udp_class = socketserver.ThreadingUDPServer

    def stop_workers(self, grace: float) -> None:
        join_threads(grace)
