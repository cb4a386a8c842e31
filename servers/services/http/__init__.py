"""``http``: HTTP/1.1 over TCP, the small application of :mod:`.routes` (``GET /``: Hello, World!).

A sans-I/O service like the line services: :class:`HttpSession` is fed bytes
and returns the responses owed and how many requests they answer, so the
models apply ``--delay`` and ``--work-ms`` per HTTP request. Requests are
framed by a library (``--http-parser httptools``, llhttp, by default; ``h11``,
pure Python and strict), responses are built here (:mod:`.session`).

Limits: a body over ``--max-body`` gets 413, a head over 16 KiB 431;
``--keepalive-timeout`` closes a connection idle between requests,
``--header-timeout`` one whose request head has not all come in time (nginx's
``client_header_timeout``). The session asks the model to close the connection
after a response (``closing``) and says how long it may wait (``timeout``):
see :mod:`servers.services.base`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servers.services.http.parsers import PARSERS
from servers.services.http.session import HttpSession

MAX_BODY = 1024 * 1024
KEEPALIVE_TIMEOUT = 5.0
HEADER_TIMEOUT = 10.0


def _size(text: str) -> int:
    """``1048576``, ``64k``, ``1M``: a size in bytes."""
    units = {"k": 1024, "m": 1024 * 1024}
    factor = units.get(text[-1:].lower(), 1)
    digits = text[:-1] if factor > 1 else text
    try:
        value = int(digits)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 65536, 64k, 1M)") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text!r}")
    return value * factor


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text!r}")
    return value


@dataclass(frozen=True)
class HttpService:
    """HTTP/1.1 with the project's routes: a :class:`~servers.services.base.Service`."""

    parser: str = "httptools"
    max_body: int = MAX_BODY
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    header_timeout: float = HEADER_TIMEOUT
    name: str = "http"
    description: str = ("HTTP/1.1: GET / says Hello, World!, POST /echo and /upper answer the body; "
                        "keep-alive, pipelining")
    transports: frozenset[str] = frozenset({"tcp"})

    def add_options(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument("--http-parser", choices=tuple(PARSERS), default=self.parser,
                           help="what frames the requests: httptools (llhttp, C) or h11 (pure "
                           "Python, strict) (default %(default)s)")
        group.add_argument("--max-body", type=_size, default=self.max_body, metavar="BYTES",
                           help="a request body longer than this gets 413 (default 1M)")
        group.add_argument("--keepalive-timeout", type=_seconds, default=self.keepalive_timeout,
                           metavar="S", help="close a keep-alive connection idle this long "
                           "between requests (default %(default)g; 0: never)")
        group.add_argument("--header-timeout", type=_seconds, default=self.header_timeout,
                           metavar="S", help="close a connection whose request head has not all "
                           "come within S seconds (default %(default)g; 0: never)")

    def configure(self, options: Mapping[str, Any]) -> HttpService:
        parser = options.get("http_parser", self.parser)
        # The parser's library is imported here, in the server's first process, so that the
        # processes a model forks inherit it: imported in each forked child instead, httptools
        # alone cost every connection 6 ms.
        importlib.import_module(PARSERS[parser].LIBRARY)
        return dataclasses.replace(
            self, parser=parser, max_body=options.get("max_body", self.max_body),
            keepalive_timeout=options.get("keepalive_timeout", self.keepalive_timeout),
            header_timeout=options.get("header_timeout", self.header_timeout))

    def session(self) -> HttpSession:
        return HttpSession(self.parser, self.max_body, self.keepalive_timeout, self.header_timeout)

    def datagram(self, data: bytes) -> bytes:
        raise NotImplementedError("http is served over TCP only")


SERVICE = HttpService()

__all__ = ["SERVICE", "HttpService", "HttpSession"]
