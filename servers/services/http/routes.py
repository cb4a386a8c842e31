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
    """What the application answers: status, body, its type, and ``Allow`` for a 405.

    ``static``: the same object answers every such request, so a server may keep its bytes.
    """

    status: int
    body: bytes
    content_type: bytes = TEXT
    allow: bytes = b""
    static: bool = False


def error(status: int) -> Answer:
    """The short answer of an error status: its reason phrase, one line."""
    return ERRORS[status]


ERRORS = {status: Answer(status, REASONS[status].encode() + b"\n", static=True)
          for status in REASONS if status >= 400}
HELLO = Answer(200, b"Hello, World!", static=True)
HEALTHY = Answer(200, b"ok\n", static=True)
NOT_FOUND = ERRORS[404]
GET_ONLY = Answer(405, ERRORS[405].body, allow=b"GET, HEAD", static=True)
POST_ONLY = Answer(405, ERRORS[405].body, allow=b"POST", static=True)

#: path -> (allowed methods, the 405 of the others, the handler of the body)
ROUTES: dict[bytes, tuple[frozenset[bytes], Answer, Callable[[bytes], Answer]]] = {
    b"/": (frozenset({b"GET", b"HEAD"}), GET_ONLY, lambda body: HELLO),
    b"/health": (frozenset({b"GET", b"HEAD"}), GET_ONLY, lambda body: HEALTHY),
    b"/echo": (frozenset({b"POST"}), POST_ONLY, lambda body: Answer(200, body, BINARY)),
    b"/upper": (frozenset({b"POST"}), POST_ONLY, lambda body: Answer(200, body.upper(), BINARY)),
}


def answer(method: bytes, target: bytes, body: bytes = b"") -> Answer:
    """The application's answer to one request (``target``: the path, maybe with a query)."""
    route = ROUTES.get(target.partition(b"?")[0])
    if route is None:
        return NOT_FOUND
    methods, refusal, handler = route
    if method not in methods:
        return refusal
    return handler(body)
