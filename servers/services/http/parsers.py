"""The two request parsers the HTTP session can use, behind one small interface.

A parser is fed bytes and calls its session back as it finds requests in them:
``begin()`` when the first byte of a request line comes, ``request(...)`` when
the head is complete, ``body(data)`` for each piece of the body (de-chunked),
``complete()`` at its end, ``error(status)`` when the input cannot be a
request, ``end()`` when nothing after the last request can be read as HTTP (an
upgrade); after either the session stops feeding it. The session builds every
response; the parsers only frame requests.

- ``httptools``: llhttp, the C parser of Node.js that uvicorn uses; fast and lenient.
- ``h11``: pure Python and strict; one ``h11.Connection`` per request, because the
  session, not h11, writes the responses (h11 would wait for them to start the next cycle).
"""

from __future__ import annotations

from typing import Protocol

#: the request line and headers together may not be longer than this (bytes): 431 beyond
MAX_HEAD = 16 * 1024


class Handler(Protocol):
    """What a parser calls back: the HTTP session."""

    closing: bool

    def begin(self) -> None: ...

    def request(self, method: bytes, target: bytes, version: str, keep_alive: bool,
                length: int | None, expect_continue: bool, head_size: int) -> None: ...

    def body(self, data: bytes) -> None: ...

    def complete(self) -> None: ...

    def error(self, status: int) -> None: ...

    def end(self) -> None: ...


class _Stop(Exception):
    """Raised in a callback to make httptools stop parsing at once (the session has answered)."""


class HttptoolsParser:
    """llhttp through httptools' callbacks.

    The callbacks are a request's whole Python cost, so they are few and short: the
    handler's ``begin`` is httptools' ``on_message_begin`` itself (no call in between), a
    request's state is reset once it is complete, and of the headers only
    ``Content-Length``, ``Expect`` and ``(Proxy-)Connection`` are looked at. The version is
    asked of httptools (which formats it, a third of a µs) only when it is not known
    already: a request that llhttp keeps alive without a ``(Proxy-)Connection`` header is
    HTTP/1.1 (HTTP/1.0 needs ``Connection: keep-alive``; 0.9 and 2.0 are never kept alive).
    """

    #: the library it parses with, imported when the service is configured (see
    #: :meth:`servers.services.http.HttpService.configure`)
    LIBRARY = "httptools"

    def __init__(self, handler: Handler) -> None:
        import httptools

        self._errors = (httptools.HttpParserError,)
        self._upgrade = httptools.HttpParserUpgrade
        self.handler = handler
        self.on_message_begin = handler.begin  # read by httptools once, when it is created
        self.parser = httptools.HttpRequestParser(self)
        self.in_head = True  # between requests or inside a head: bytes fed count towards MAX_HEAD
        self.head_bytes = 0
        self._reset()

    def _reset(self) -> None:
        """Ready for the next request (after one is complete, and at the start)."""
        self.url = b""
        self.header_bytes = 0
        self.length: int | None = None
        self.expect = False
        self.connection = False  # a Connection header came

    def feed(self, data: bytes) -> None:
        handler = self.handler
        if self.in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except self._upgrade:
            if not handler.closing:  # answered as a plain request; what follows is not HTTP
                handler.end()
        except self._errors as exc:
            if not handler.closing:
                handler.error(505 if "version" in str(exc).lower() else 400)
        if self.in_head and self.head_bytes > MAX_HEAD and not handler.closing:
            handler.error(431)

    # -- httptools' callbacks (on_message_begin: the handler's begin) ----------

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name)
        self.header_bytes += size + len(value) + 4
        if size == 14 and name.lower() == b"content-length":
            self.length = int(value)  # llhttp has checked it is digits
        elif size == 6 and name.lower() == b"expect":
            self.expect = value.lower() == b"100-continue"
        elif size >= 10 and name[-10:].lower() == b"connection":
            self.connection = True  # llhttp reads Proxy-Connection as Connection too

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        parser, handler = self.parser, self.handler
        keep_alive = parser.should_keep_alive()
        version = "1.1" if keep_alive and not self.connection else parser.get_http_version()
        handler.request(parser.get_method(), self.url, version, keep_alive, self.length,
                        self.expect, len(self.url) + self.header_bytes)
        if handler.closing:
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self.handler.body(body)
        if self.handler.closing:
            raise _Stop

    def on_message_complete(self) -> None:
        self.in_head = True
        self.head_bytes = 0
        self._reset()
        handler = self.handler
        handler.complete()
        if handler.closing:
            raise _Stop


class H11Parser:
    """h11's events, a fresh ``h11.Connection`` for each request."""

    LIBRARY = "h11"

    def __init__(self, handler: Handler) -> None:
        import h11

        self.h11 = h11
        self.handler = handler
        self.conn = self._connection()
        self.idle = True  # no byte of the next request yet

    def _connection(self):  # noqa: ANN202 - h11.Connection, imported lazily
        return self.h11.Connection(self.h11.SERVER, max_incomplete_event_size=MAX_HEAD)

    def feed(self, data: bytes) -> None:
        h11, handler = self.h11, self.handler
        conn = self.conn
        if self.idle:
            self.idle = False
            handler.begin()
        conn.receive_data(data)
        while not handler.closing:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                handler.error(exc.error_status_hint)
                return
            kind = type(event)
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if kind is h11.Request:
                version = event.http_version.decode()
                headers = event.headers
                tokens = {token.strip().lower() for name, value in headers
                          if name == b"connection" for token in value.split(b",")}
                keep_alive = b"close" not in tokens if version == "1.1" else b"keep-alive" in tokens
                length = next((int(value) for name, value in headers
                               if name == b"content-length"), None)
                size = len(event.target) + sum(len(name) + len(value) + 4 for name, value in headers)
                handler.request(event.method, event.target, version, keep_alive, length,
                                conn.they_are_waiting_for_100_continue, size)
            elif kind is h11.Data:
                handler.body(event.data)
            elif kind is h11.EndOfMessage:
                handler.complete()
                leftover, _ = conn.trailing_data
                self.conn = conn = self._connection()
                if leftover:
                    handler.begin()
                    conn.receive_data(leftover)
                else:
                    self.idle = True
            else:  # ConnectionClosed: the session was told by close()
                return


PARSERS = {"httptools": HttptoolsParser, "h11": H11Parser}
