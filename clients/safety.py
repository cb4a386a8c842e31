"""The loopback guard: the testbed's traffic goes to this machine unless the user says otherwise.

Names are resolved first and every address they resolve to must be loopback
(``localhost`` is fine; a name that resolves elsewhere is refused). The check
runs before any socket is made, so a refused target never sees a packet.
"""

from __future__ import annotations

import ipaddress
import socket


class UnsafeTarget(ValueError):
    """The target is not a loopback address and ``--allow-remote`` was not given."""


def resolve(host: str) -> list[str]:
    """Every address ``host`` names (an address names itself)."""
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError as exc:
        raise UnsafeTarget(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    return sorted({info[4][0] for info in infos})


def ensure_loopback(host: str, *, allow_remote: bool = False) -> None:
    """Raise UnsafeTarget unless ``host`` is loopback only, or remote targets are allowed."""
    if allow_remote:
        return
    outside = [a for a in resolve(host) if not ipaddress.ip_address(a.split("%")[0]).is_loopback]
    if outside:
        raise UnsafeTarget(
            f"refusing to send traffic to {host} ({', '.join(outside)}): not a loopback "
            "address; pass --allow-remote to load a machine you are allowed to test")
