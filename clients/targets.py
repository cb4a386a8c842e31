"""What the packet tools share: the guard on their targets, and how they report failures.

Every packet tool (ping, scan, arp, sntp) turns its HOST argument into one address
with :func:`pick_address`, which runs the project's guard first: a target outside
loopback and the project's own lab is refused in one line before any socket exists,
and there is no option to lift that for these tools.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys

from clients import safety


class ToolError(Exception):
    """A failure that ends a tool with exit status 2 after one line on stderr."""


def pick_address(host: str, family: int = socket.AF_UNSPEC) -> tuple[int, str]:
    """(family, address) of ``host`` after the guard, IPv4 first as ping does."""
    try:
        safety.ensure_loopback(host)
    except safety.UnsafeTarget as exc:
        raise ToolError(str(exc).split("; pass --allow-remote")[0] +
                        ": the packet tools reach only loopback and the project's lab") from None
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        found = socket.AF_INET6 if literal.version == 6 else socket.AF_INET
        if family not in (socket.AF_UNSPEC, found):
            raise ToolError(f"{host} is not an IPv{4 if family == socket.AF_INET else 6} address")
        return found, str(literal)
    try:
        infos = socket.getaddrinfo(host, None, family, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ToolError(f"{host}: {exc.strerror}") from None
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    return infos[0][0], infos[0][4][0]


def is_root() -> bool:
    return os.geteuid() == 0


def privilege_error(exc: OSError, what: str) -> ToolError:
    """One line for a socket the user may not open (raw sockets need CAP_NET_RAW)."""
    if exc.errno in (errno.EPERM, errno.EACCES):
        return ToolError(f"{what} needs root (CAP_NET_RAW): {exc.strerror}")
    return ToolError(f"{what}: {exc.strerror or exc}")


def fail(prog: str, message: str, status: int = 2) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return status
