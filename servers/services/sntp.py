"""``sntp``: an SNTP server (RFC 4330) over UDP, answering from the system clock.

Each datagram that is an NTP client request (48 bytes or more, mode 3, version 1-4)
gets one 48-byte server reply: mode 4, the request's version, the stratum and
reference id set by ``--stratum`` and ``--refid``, the request's transmit timestamp
as the originate timestamp, and the receive and transmit timestamps read from the
system clock, moved by ``--offset S`` seconds (a demonstration of a wrong clock).
Anything else gets no reply at all (``datagram`` returns None), as a real server does.

This module keeps its own few lines of NTP packing: ``servers/`` never imports ``clients/``.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

NTP_EPOCH_OFFSET = 2_208_988_800
PACKET = struct.Struct("!BBbbII4sQQQQ")
MODE_CLIENT, MODE_SERVER = 3, 4
PRECISION = -20  # about a microsecond: what time.time() resolves on Linux


def ntp_time(unix: float) -> int:
    return int((unix + NTP_EPOCH_OFFSET) * 2**32) & 0xFFFF_FFFF_FFFF_FFFF


def refid_bytes(text: str, stratum: int) -> bytes:
    """A reference id: up to 4 ASCII letters (stratum 1), or an IPv4 address (above)."""
    try:
        return ipaddress.IPv4Address(text).packed
    except ValueError:
        pass
    raw = text.encode("ascii", "replace")
    if not raw or len(raw) > 4:
        raise ValueError(f"a reference id is at most 4 ASCII letters or an IPv4 address: {text!r}")
    return raw.ljust(4, b"\0")


def _refid(text: str) -> str:
    try:
        refid_bytes(text, 1)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _stratum(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= value <= 15:
        raise argparse.ArgumentTypeError(f"a server's stratum is 1-15, not {text!r}")
    return value


def _offset(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or abs(value) > 10 * 365 * 86400:
        raise argparse.ArgumentTypeError(f"an offset of at most ten years, not {text!r}")
    return value


@dataclass(frozen=True)
class SntpService:
    """The SNTP server: a :class:`~servers.services.base.Service` over UDP only."""

    name: str = "sntp"
    description: str = "SNTP (RFC 4330) from the system clock, UDP only"
    transports: frozenset[str] = frozenset({"udp"})
    stratum: int = 1
    refid: bytes = b"LOCL"
    offset: float = 0.0

    def add_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--stratum", dest="sntp_stratum", type=_stratum, default=1,
                           metavar="N", help="the stratum the sntp service announces (default 1)")
        group.add_argument("--refid", dest="sntp_refid", type=_refid, default="LOCL", metavar="ID",
                           help="its reference id: 4 letters at stratum 1, else an IPv4 address "
                           "(default LOCL)")
        group.add_argument("--offset", dest="sntp_offset", type=_offset, default=0.0,
                           metavar="S", help="serve the clock S seconds off (a demonstration)")

    def configure(self, options: Mapping[str, Any]) -> SntpService:
        stratum = options.get("sntp_stratum", self.stratum)
        refid = options.get("sntp_refid")
        return replace(self, stratum=stratum, offset=options.get("sntp_offset", self.offset),
                       refid=refid_bytes(refid, stratum) if refid is not None else self.refid)

    def session(self) -> Any:
        raise NotImplementedError("the sntp service is served over UDP only")

    def datagram(self, data: bytes) -> bytes | None:
        """The reply to one request, or None: a datagram that is not a request gets none."""
        received = time.time() + self.offset
        if len(data) < PACKET.size:
            return None
        first = data[0]
        version, mode = (first >> 3) & 7, first & 7
        if mode != MODE_CLIENT or not 1 <= version <= 4:
            return None
        client_transmit = PACKET.unpack_from(data)[10]
        stamp = ntp_time(received)
        return PACKET.pack((version << 3) | MODE_SERVER, self.stratum, 6, PRECISION, 0, 0,
                           self.refid, stamp, client_transmit, stamp,
                           ntp_time(time.time() + self.offset))


SERVICE = SntpService()
