"""The small web application every HTTP server of the project serves, free of any server.

``testbed serve --service http`` answers with it, and so do the ASGI and WSGI
apps the contenders run (servers/apps/), so that every server's answers are the
same bytes in status and body:

- ``GET /``: ``Hello, World!`` as text/plain (TechEmpower's plaintext test);
- ``GET /health``: ``ok``;
- ``POST /echo``: the request body; ``POST /upper``: the body with ASCII letters upper-cased;
- ``HEAD`` wherever ``GET`` is; another method: 405 with ``Allow``; another path: 404.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 404: "Not Found",
    405: "Method Not Allowed", 408: "Request Timeout", 413: "Content Too Large",
    431: "Request Header Fields Too Large", 500: "Internal Server Error",
    505: "HTTP Version Not Supported",
}

TEXT = b"text/plain; charset=utf-8"
BINARY = b"application/octet-stream"


@dataclass(frozen=True, slots=True)
class Answer:
    """What the application answers: status, body, its type, and ``Allow`` for a 405."""

    status: int
    body: bytes
    content_type: bytes = TEXT
    allow: bytes = b""


def error(status: int) -> Answer:
    """The short answer of an error status: its reason phrase, one line."""
    return Answer(status, REASONS[status].encode() + b"\n")


HELLO = Answer(200, b"Hello, World!")
HEALTHY = Answer(200, b"ok\n")
NOT_FOUND = error(404)

#: path -> (allowed methods, the header that lists them, the handler of the body)
ROUTES: dict[bytes, tuple[frozenset[bytes], bytes, Callable[[bytes], Answer]]] = {
    b"/": (frozenset({b"GET", b"HEAD"}), b"GET, HEAD", lambda body: HELLO),
    b"/health": (frozenset({b"GET", b"HEAD"}), b"GET, HEAD", lambda body: HEALTHY),
    b"/echo": (frozenset({b"POST"}), b"POST", lambda body: Answer(200, body, BINARY)),
    b"/upper": (frozenset({b"POST"}), b"POST", lambda body: Answer(200, body.upper(), BINARY)),
}


def answer(method: bytes, target: bytes, body: bytes = b"") -> Answer:
    """The application's answer to one request (``target``: the path, maybe with a query)."""
    route = ROUTES.get(target.partition(b"?")[0])
    if route is None:
        return NOT_FOUND
    methods, allow, handler = route
    if method not in methods:
        return Answer(405, b"Method Not Allowed\n", allow=allow)
    return handler(body)
