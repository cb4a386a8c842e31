"""What a model is built from: where to listen, and the limits it must keep."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from servers.costs import Cost


@dataclass(frozen=True)
class ServerConfig:
    """Everything `testbed serve` passes to a model; every field has a safe default."""

    host: str = "127.0.0.1"
    port: int = 0
    udp: bool = False
    backlog: int = 128
    cost: Cost = field(default_factory=Cost)
    max_connections: int = 0  # 0: no limit
    idle_timeout: float = 0.0  # 0: wait for ever
    workers: int = 0  # pool-based models; 0: the model's default
    queue: int = 0  # threadpool model: accepted connections waiting for a thread
    loop: str = "asyncio"  # asyncio model: "asyncio" or "uvloop"

    @property
    def transport(self) -> str:
        return "udp" if self.udp else "tcp"

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AF_INET6 if ":" in self.host else socket.AF_INET


def format_address(transport: str, host: str, port: int) -> str:
    """``tcp://127.0.0.1:43127`` or ``udp://[::1]:43127``: the form every line uses."""
    shown = f"[{host}]" if ":" in host else host
    return f"{transport}://{shown}:{port}"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
