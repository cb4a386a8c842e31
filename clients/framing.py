"""What the bench's closed loop sends and how it knows a reply is whole and right: a framing.

A framing is sans-I/O: it holds the requests of one connection's pipeline (index
``i`` is the ``i``-th request in flight) and, given the bytes received so far,
says how many whole replies they start with, each verified against the request
it answers, in order. :class:`clients.bench.ClosedLoop` owns the sockets and the
loop; it asks a framing only that (:meth:`Framing.split`) and, for its fast path,
compares a whole recv with ``fast[i]``, the bytes a right reply to request ``i``
is known to have (empty while unknown).

- :class:`LineFraming`: the line services (echo, upper): a reply is as long as its
  request, known in advance; each request of a pipeline is tagged with its index.
- :class:`HttpFraming`: ``GET /`` over keep-alive HTTP/1.1, each response read by
  its head (status line, ``Content-Length``) and checked: status 200, body
  ``Hello, World!``. A response's bytes change once a second (its ``Date``), so
  the fast path keeps the last whole response verified for each request and parses
  again only when the bytes differ: the client stays cheap per request.

What a right reply is stays written here, apart from the servers' code, so the
clients check the servers instead of trusting them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from clients.harness import ExchangeError, verify


class Framing(Protocol):
    """What :class:`clients.bench.ClosedLoop` asks of a protocol."""

    #: the pipeline's requests, in the order they are in flight
    requests: list[bytes]
    #: for each request, the whole right reply when it is known (None: not yet)
    fast: list[bytes | None]
    #: the length of every reply when it is fixed, else None
    size: int | None

    def split(self, buf: bytes | bytearray, nxt: int, outstanding: int) -> tuple[int, int]:
        """The whole replies ``buf`` starts with, the first answering request ``nxt``, and the
        bytes they take: ``(count, used)``. At most ``outstanding`` are whole; bytes beyond
        them, or a reply (whole or the start of one) that can't be right, raise
        ExchangeError("mismatch") at once rather than after the timeout."""


def _extra() -> ExchangeError:
    return ExchangeError("mismatch", "a reply came with no request in flight")


class LineFraming:
    """The line services: the ``pipeline`` requests are ``payload`` with its index over its
    first bytes (``00``, ``01``...), each reply ``answer(request)``, all the same length."""

    def __init__(self, payload: bytes, answer: Callable[[bytes], bytes], pipeline: int = 1) -> None:
        self.requests = tagged(payload, pipeline)
        self.replies = [answer(request) for request in self.requests]
        self.fast: list[bytes | None] = list(self.replies)
        self.size = len(self.replies[0])
        if any(len(reply) != self.size for reply in self.replies):
            raise ValueError("every tagged request must have a reply of the same length")

    def split(self, buf: bytes | bytearray, nxt: int, outstanding: int) -> tuple[int, int]:
        expected, size, depth = self.replies, self.size, len(self.replies)
        count, pos, end = 0, 0, len(buf)
        while end - pos >= size:
            if count >= outstanding:
                raise _extra()
            if buf[pos:pos + size] != expected[nxt]:
                verify(bytes(buf[pos:pos + size]), expected[nxt])
            pos, count, nxt = pos + size, count + 1, (nxt + 1) % depth
        if pos < end:
            if count >= outstanding:
                raise _extra()
            verify(bytes(buf[pos:]), expected[nxt][:end - pos])
        return count, pos


def tagged(payload: bytes, pipeline: int) -> list[bytes]:
    """The ``pipeline`` requests of one connection: ``payload`` with its index written over
    its first bytes (``00``, ``01``...), so each reply can be matched to its request."""
    if pipeline == 1:
        return [payload]
    width = len(str(pipeline - 1))
    if len(payload) <= width:
        raise ValueError(f"a pipeline of {pipeline} needs requests of at least {width + 1} bytes")
    return [f"{index:0{width}d}".encode() + payload[width:] for index in range(pipeline)]


#: The longest response head read; a longer one is a mismatch.
MAX_RESPONSE_HEAD = 64 * 1024
HELLO = b"Hello, World!"


class HttpFraming:
    """Keep-alive HTTP/1.1: ``pipeline`` requests in flight (``GET /`` by default, or the
    ``paths`` given, one per request in turn), each response verified in order: an
    ``HTTP/1.x`` status line, the ``status`` expected, a ``Content-Length`` and the body
    expected (``answers``: path -> body; ``GET /``: ``Hello, World!``).

    Chunked responses are not read (a mismatch): every server of the project, and the
    contenders serving its app, frame theirs with ``Content-Length``.
    """

    size = None

    def __init__(self, host: str, port: int, pipeline: int = 1, *,
                 paths: tuple[str, ...] = ("/",), status: int = 200,
                 answers: dict[str, bytes] | None = None) -> None:
        answers = {"/": HELLO} if answers is None else answers
        host_header = f"[{host}]" if ":" in host else host
        chosen = [paths[index % len(paths)] for index in range(pipeline)]
        self.requests = [f"GET {path} HTTP/1.1\r\nHost: {host_header}:{port}\r\n\r\n".encode()
                         for path in chosen]
        self.bodies = [answers[path] for path in chosen]
        self.status = status
        self.fast: list[bytes | None] = [None] * pipeline

    def split(self, buf: bytes | bytearray, nxt: int, outstanding: int) -> tuple[int, int]:
        fast, depth = self.fast, len(self.fast)
        count, pos, end = 0, 0, len(buf)
        while pos < end:
            known = fast[nxt]
            if known and buf.startswith(known, pos):
                size = len(known)
            else:
                size = self._read(buf, pos, nxt)
                if not size:
                    if count >= outstanding:
                        raise _extra()
                    break
            if count >= outstanding:
                raise _extra()
            pos, count, nxt = pos + size, count + 1, (nxt + 1) % depth
        return count, pos

    def _read(self, buf: bytes | bytearray, pos: int, nxt: int) -> int:
        """The length of the whole response at ``pos``, verified (and kept in ``fast``), or 0
        while it is incomplete and still may be right."""
        end = len(buf)
        head_end = buf.find(b"\r\n\r\n", pos, pos + MAX_RESPONSE_HEAD)
        if head_end < 0:
            start = bytes(buf[pos:pos + 9])
            if not (b"HTTP/1.1 ".startswith(start) or b"HTTP/1.0 ".startswith(start)):
                raise ExchangeError("mismatch", f"not an HTTP response: {start!r}...")
            if end - pos >= MAX_RESPONSE_HEAD:
                raise ExchangeError("mismatch", f"a response head over {MAX_RESPONSE_HEAD} bytes")
            return 0
        lines = bytes(buf[pos:head_end]).split(b"\r\n")
        status_line = lines[0]
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code.isdigit() or rest[3:4] not in (b"", b" "):
            raise ExchangeError("mismatch", f"not an HTTP status line: {status_line[:60]!r}")
        if int(code) != self.status:
            raise ExchangeError("mismatch", f"status {status_line[9:].decode('latin-1')[:60]!r}, "
                                f"not {self.status}")
        length = None
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise ExchangeError("mismatch", f"not a header line: {line[:60]!r}")
            name = name.lower()
            if name == b"content-length":
                value = value.strip()
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise ExchangeError("mismatch", f"a bad Content-Length: {value[:20]!r}")
                length = int(value)
            elif name == b"transfer-encoding":
                raise ExchangeError("mismatch", "a response without Content-Length "
                                    f"(Transfer-Encoding: {value.strip()[:20].decode('latin-1')})")
        body = self.bodies[nxt]
        if length is None:
            raise ExchangeError("mismatch", "a response without Content-Length")
        if length != len(body):
            raise ExchangeError("mismatch", f"Content-Length {length}, not {len(body)}")
        start = head_end + 4
        got = bytes(buf[start:start + length])
        if got != body[:len(got)]:
            at = next(i for i, (a, b) in enumerate(zip(got, body, strict=False)) if a != b)
            raise ExchangeError("mismatch", f"the body differs from {body[:40]!r} at byte {at}")
        if len(got) < length:
            return 0
        size = start + length - pos
        self.fast[nxt] = bytes(buf[pos:pos + size])
        return size
