"""``sequential``: socketserver.TCPServer / UDPServer, one client at a time, as in the course."""

from __future__ import annotations

import socketserver

from servers.config import ServerConfig
from servers.models.socketserver_base import SocketServerModel


class SequentialModel(SocketServerModel):
    name = "sequential"
    description = "socketserver.TCPServer/UDPServer: one client at a time, the others wait"
    tcp_class = socketserver.TCPServer
    udp_class = socketserver.UDPServer

    @classmethod
    def capacity(cls, config: ServerConfig) -> int | None:
        return 1  # one client at a time, the others wait in the listen queue
