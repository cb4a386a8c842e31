"""Line services: a byte-wise transform over newline-terminated requests (echo, upper).

A line service is a byte transform. A :class:`Session` holds one connection's state:
it is fed the bytes a model received and hands back the reply bytes together
with the number of requests (newline-terminated lines) they complete, so each
model can apply the per-request cost in its own way and then send the reply.

Transforms must work byte by byte (``t(a + b) == t(a) + t(b)`` and
``len(t(x)) == len(x)``): that is what lets a session flush part of an overlong
line early and keep its memory bounded, and lets clients know how many bytes
of reply to wait for.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Transform = Callable[[bytes], bytes]

#: A line longer than this is streamed back in pieces instead of being held
#: whole, so a 10 MiB line with no newline costs the server 64 KiB, not 10 MiB.
MAX_PENDING_LINE = 64 * 1024


@dataclass(frozen=True)
class LineService:
    """A named, byte-wise transform over lines: a :class:`~servers.services.base.Service`."""

    name: str
    description: str
    transform: Transform
    transports: frozenset[str] = frozenset({"tcp", "udp"})

    def add_options(self, group: argparse._ArgumentGroup) -> None:
        """Line services have no options of their own."""

    def configure(self, options: Mapping[str, Any]) -> LineService:
        return self

    def session(self) -> LineSession:
        """Start the state of one connection (or of one datagram)."""
        return LineSession(self.transform)

    def datagram(self, data: bytes) -> bytes:
        """Answer one UDP datagram: each datagram is one whole request."""
        return self.transform(data)


class LineSession:
    """One connection's line framing: fed bytes, returns (reply, requests completed)."""

    __slots__ = ("_transform", "_pending", "_in_line")

    closing = False  # a line client decides when the connection ends
    timeout = None  # no limit of its own: --idle-timeout alone applies

    def __init__(self, transform: Transform) -> None:
        self._transform = transform
        self._pending = b""  # the start of a line whose newline has not come yet
        self._in_line = False  # part of the current line was already flushed

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """Take received bytes; return the reply owed now and how many requests it ends."""
        if not self._pending and data[-1:] == b"\n":  # whole lines: the common case, short
            self._in_line = False
            return self._transform(data), data.count(b"\n")
        if self._pending:
            data = self._pending + data
            self._pending = b""
        end = data.rfind(b"\n") + 1
        requests = data.count(b"\n", 0, end)
        tail = len(data) - end
        if not tail:
            self._in_line = False
        elif tail > MAX_PENDING_LINE:
            self._in_line = True  # an overlong line: stream it now rather than hold it whole
        else:
            self._pending = data[end:]
            data = data[:end]
            if requests:
                self._in_line = False
        return (self._transform(data) if data else b""), requests

    def close(self) -> tuple[bytes, int]:
        """The peer finished sending: a final partial line counts as one request."""
        data, self._pending = self._pending, b""
        finished = 1 if (data or self._in_line) else 0
        self._in_line = False
        return (self._transform(data) if data else b""), finished

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for a newline (at most MAX_PENDING_LINE)."""
        return len(self._pending)

