"""One HTTP/1.1 connection, sans-I/O: fed bytes, returns the responses owed and how many.

The parser (httptools or h11) frames the requests; this builds every response:
status line, ``Server``, ``Date``, ``Content-Type``, ``Content-Length`` (always:
no chunked responses), ``Allow`` on a 405, ``Connection`` when it is not the
version's default. Keep-alive is the default of HTTP/1.1, HTTP/1.0 keeps the
connection only when asked (``Connection: keep-alive``); pipelined requests are
answered in order, each once its body has come.

After a response that ends the connection (``Connection: close``, HTTP/1.0, an
error) :attr:`closing` is True and the session takes no more input. Its
:attr:`timeout` is how long the connection may wait for the client now: the
header timeout while a request's head is incomplete (measured from the head's
first byte, or from the connection's start for the first request: a client
that trickles its headers is closed however steadily it trickles), the
keep-alive timeout between requests, none of its own inside a body.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate

from servers.services.http import routes
from servers.services.http.parsers import MAX_HEAD, PARSERS

SERVER = b"testbed"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


#: Requests without a body whose whole response is kept for the second (a bound: the
#: targets come from clients), and the longest target kept.
KEPT_ROUTES = 64
KEPT_TARGET = 256


class Responses:
    """Response bytes: the ``Date`` header formatted once a second (RFC 9110's IMF-fixdate),
    and the whole response of a static answer kept for that second, found by the answer
    or, for a request without a body (``GET /``), by its method, target and ``Connection``
    header: such a request costs one dictionary lookup, not a route and a build."""

    __slots__ = ("_expires", "_date", "_kept", "_routes")

    def __init__(self) -> None:
        self._expires = 0.0
        self._date = b""
        self._kept: dict[tuple[int, bool, bytes], bytes] = {}
        self._routes: dict[tuple[bytes, bytes, bytes], bytes] = {}

    def date_line(self) -> bytes:
        now = time.time()
        if now >= self._expires:
            second = int(now)
            self._expires = second + 1
            self._date = b"Date: " + formatdate(second, usegmt=True).encode() + b"\r\n"
            self._kept.clear()
            self._routes.clear()
        return self._date

    def get(self, answer: routes.Answer, head_only: bool = False, connection: bytes = b"") -> bytes:
        """The bytes of one response; ``connection``: the ``Connection`` header's value, if any."""
        date = self.date_line()
        if not answer.static:
            return build(answer, date, head_only, connection)
        key = (id(answer), head_only, connection)
        data = self._kept.get(key)
        if data is None:
            data = self._kept[key] = build(answer, date, head_only, connection)
        return data

    def answer(self, method: bytes, target: bytes, connection: bytes = b"",
               body: bytes = b"") -> bytes:
        """The response to one request: the application's answer (``HEAD``: ``GET``'s, without
        its body)."""
        answer, head = _routed(method, target, body)
        return self.get(answer, head, connection)

    def bodiless(self, method: bytes, target: bytes, connection: bytes = b"") -> bytes:
        """:meth:`answer` to a request without a body, kept for the second when it is static."""
        if time.time() >= self._expires:
            self.date_line()
        key = (method, target, connection)
        data = self._routes.get(key)
        if data is None:
            answer, head = _routed(method, target)
            data = self.get(answer, head, connection)
            if answer.static and len(self._routes) < KEPT_ROUTES and len(target) <= KEPT_TARGET:
                self._routes[key] = data
        return data


def _routed(method: bytes, target: bytes, body: bytes = b"") -> tuple[routes.Answer, bool]:
    """The application's answer, and whether only its head is sent: ``HEAD`` is answered
    as ``GET``, without the body."""
    head = method == b"HEAD"
    return routes.answer(b"GET" if head else method, target, body), head


RESPONSES = Responses()


def build(answer: routes.Answer, date_line: bytes, head_only: bool, connection: bytes) -> bytes:
    status = answer.status
    parts = [b"HTTP/1.1 %d %s\r\nServer: %s\r\n" % (status, routes.REASONS[status].encode(), SERVER),
             date_line,
             b"Content-Type: %s\r\nContent-Length: %d\r\n" % (answer.content_type, len(answer.body))]
    if answer.allow:
        parts.append(b"Allow: %s\r\n" % answer.allow)
    if connection:
        parts.append(b"Connection: %s\r\n" % connection)
    parts.append(b"\r\n")
    if not head_only:
        parts.append(answer.body)
    return b"".join(parts)


class HttpSession:
    """One connection's HTTP state: a :class:`~servers.services.base.Session`."""

    def __init__(self, parser: str, max_body: int, keepalive_timeout: float,
                 header_timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout or None
        self.header_timeout = header_timeout or None
        self.clock = clock
        self.closing = False  # the last response returned ends the connection: no more input
        self._out: list[bytes] = []
        self._done = 0
        self._phase = "head"  # "head": waiting for (the rest of) a head; "body"; "idle"
        self._head_started = self._last_feed = clock()
        self._method = b""
        self._target = b""
        self._version = "1.1"
        self._keep_alive = True
        self._body = bytearray()
        self._parser = PARSERS[parser](self)

    # -- the Session contract -------------------------------------------------

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """Take received bytes; return the responses now complete and how many there are."""
        if self.closing:
            return b"", 0
        self._last_feed = self.clock()
        self._parser.feed(data)
        out = self._out  # _flush, inlined: this runs once per request
        if not out:
            return b"", 0
        reply = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        done, self._done = self._done, 0
        return reply, done

    def close(self) -> tuple[bytes, int]:
        """The client finished sending: a request left incomplete gets no answer."""
        self.closing = True
        return self._flush()

    @property
    def buffered(self) -> int:
        """Bytes of a request body held until it is complete (at most --max-body)."""
        return len(self._body)

    @property
    def timeout(self) -> float | None:
        """How long, from the last feed, the connection may wait for the client's next bytes."""
        if self._phase == "idle":
            return self.keepalive_timeout
        if self._phase == "head" and self.header_timeout is not None:
            return max(0.0, self.header_timeout - (self._last_feed - self._head_started))
        return None

    def _flush(self) -> tuple[bytes, int]:
        out, done = self._out, self._done
        if not out:
            return b"", 0
        reply = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._done = 0
        return reply, done

    # -- what the parser calls ------------------------------------------------

    def begin(self) -> None:
        self._method = b""
        if self._phase == "idle":
            self._phase = "head"
            self._head_started = self._last_feed

    def request(self, method: bytes, target: bytes, version: str, keep_alive: bool,
                length: int | None, expect_continue: bool, head_size: int) -> None:
        self._phase = "body"
        self._method, self._target, self._version = method, target, version
        self._keep_alive = keep_alive
        if head_size > MAX_HEAD:
            self.error(431)
        elif version not in ("1.1", "1.0"):
            self.error(505)
        elif length is not None and length > self.max_body:
            self.error(413)
        elif expect_continue and version == "1.1":
            self._out.append(CONTINUE)

    def body(self, data: bytes) -> None:
        body = self._body
        body += data
        if len(body) > self.max_body:
            self.error(413)

    def complete(self) -> None:
        if not self._keep_alive:
            connection = b"close"
            self.closing = True
        else:
            connection = b"keep-alive" if self._version == "1.0" else b""
        if self._body:
            body = bytes(self._body)
            self._body.clear()
            self._out.append(RESPONSES.answer(self._method, self._target, connection, body))
        else:
            self._out.append(RESPONSES.bodiless(self._method, self._target, connection))
        self._done += 1
        self._phase = "idle"

    def error(self, status: int) -> None:
        """Answer ``status`` and end the connection: what follows cannot be trusted as HTTP."""
        self._body.clear()
        self._answer(routes.error(status), self._method == b"HEAD", b"close")
        self.closing = True

    def end(self) -> None:
        self.closing = True

    def _answer(self, answer: routes.Answer, head: bool, connection: bytes = b"") -> None:
        self._out.append(RESPONSES.get(answer, head, connection))
        self._done += 1
