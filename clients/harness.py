"""The one client library: connect, exchange, verify, and say why it failed.

Everything in the testbed that talks to a server goes through here: the tests,
``testbed nc``, ``testbed probe``, ``testbed storm`` and the locust users. It
uses only the ``socket`` and ``threading`` modules, so it works unchanged on
gevent-patched sockets.

Every failure is an :class:`ExchangeError` whose ``kind`` is one of
:data:`FAILURE_CLASSES`:

``refused``          nothing listens there (RST to the SYN, or ICMP port unreachable for UDP)
``reset``            the peer reset the connection, or closed it while we were still sending
``connect_timeout``  the handshake did not complete within the connect timeout
``io_timeout``       connected, but the reply did not come within the I/O timeout
                     (also: a UDP datagram that got no answer)
``closed_early``     the peer closed the connection before the whole reply came back
``mismatch``         the reply came back, but not what the service should have answered
``unreachable``      no route to the address, or the name does not resolve
``other``            anything else
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

FAILURE_CLASSES = ("refused", "reset", "connect_timeout", "io_timeout", "closed_early",
                   "mismatch", "unreachable", "other")

#: What each service must answer; written here on purpose, apart from the servers'
#: code, so the clients check the servers instead of trusting them.
EXPECTED: dict[str, Callable[[bytes], bytes]] = {
    "echo": lambda data: data,
    "upper": bytes.upper,
}

#: Replies up to this size are first read with one plain recv.
RECV_AT_ONCE = 64 * 1024

#: Payloads above this are sent by a second thread while the reply is read.
CONCURRENT_SEND_ABOVE = 256 * 1024

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN,
                errno.EHOSTDOWN, errno.EAFNOSUPPORT}


class ExchangeError(Exception):
    """A failed exchange; ``kind`` is its failure class, ``detail`` says more."""

    def __init__(self, kind: str, detail: str = "") -> None:
        assert kind in FAILURE_CLASSES, kind
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail or kind

    def __str__(self) -> str:
        return self.kind

    def __repr__(self) -> str:  # locust groups failures by repr: show the class alone
        return self.kind


def classify(exc: BaseException, *, connecting: bool = False) -> str:
    """The failure class of an exception raised while connecting or exchanging."""
    if isinstance(exc, ExchangeError):
        return exc.kind
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, TimeoutError):
        return "connect_timeout" if connecting else "io_timeout"
    if isinstance(exc, socket.gaierror):
        return "unreachable"
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE:
        return "unreachable"
    if isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT:
        return "connect_timeout" if connecting else "io_timeout"
    return "other"


def as_exchange_error(exc: BaseException, *, connecting: bool = False) -> ExchangeError:
    if isinstance(exc, ExchangeError):
        return exc
    detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError) and detail in ("timed out", "TimeoutError"):
        detail = "Connection timed out" if connecting else "no reply in time"
    return ExchangeError(classify(exc, connecting=connecting), detail)


def expected_reply(expect: str | Callable[[bytes], bytes] | None) -> Callable[[bytes], bytes] | None:
    if expect is None or callable(expect):
        return expect
    try:
        return EXPECTED[expect]
    except KeyError:
        raise ValueError(f"unknown service {expect!r} (choose from {', '.join(EXPECTED)})")


@dataclass(frozen=True)
class Exchange:
    """A verified reply and how long it took, in seconds."""

    reply: bytes
    latency: float


class ResolveError(ExchangeError):
    """The name (or the address text) did not resolve: an ``unreachable`` that happened
    before any socket existed, so callers can word it the way netcat does."""

    def __init__(self, host: str, port: int | str, detail: str) -> None:
        super().__init__("unreachable", detail)
        self.host, self.port = host, port


@dataclass(frozen=True)
class Attempt:
    """One address tried by :func:`open_connection` that failed, and at which step."""

    address: tuple
    step: str  # "bind" (the source address) or "connect"
    error: OSError


def resolve(host: str | None, port: int, *, family: int = socket.AF_UNSPEC, udp: bool = False,
            numeric: bool = False, passive: bool = False) -> list[tuple]:
    """``getaddrinfo`` for one transport; ``numeric`` forbids name lookups (netcat's ``-n``).

    Raises :class:`ResolveError` (class ``unreachable``) when nothing comes back.
    """
    kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    flags = (socket.AI_NUMERICHOST if numeric else 0) | (socket.AI_PASSIVE if passive else 0)
    try:
        infos = socket.getaddrinfo(host, port, family, kind, 0, flags)
    except OSError as exc:
        detail = getattr(exc, "strerror", None) or str(exc)
        raise ResolveError(host or "", port, detail) from exc
    if not infos:
        raise ResolveError(host or "", port, "no address")
    return infos


def _bind_source(sock: socket.socket, source: tuple[str, int] | None) -> None:
    """Bind to the source address (and port) the caller asked for, if any."""
    if source is None:
        return
    if sock.type == socket.SOCK_STREAM:  # a fixed source port is reusable at once after close
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(source)


def parse_endpoint(url: str | None, default_scheme: str = "tcp",
                   port_required: bool = True) -> tuple[str, str, int | None]:
    """``tcp://127.0.0.1:9000`` -> ``("tcp", "127.0.0.1", 9000)``; ValueError if malformed.

    With ``port_required=False`` a missing port is None (so a caller can check the host first).
    """
    if not url:
        raise ValueError("no address given: expected tcp://HOST:PORT, udp://HOST:PORT or "
                         "http://HOST:PORT")
    text = url if "://" in url else f"{default_scheme}://{url}"
    parts = urlsplit(text)
    if parts.scheme not in ("tcp", "udp", "http"):
        raise ValueError(f"the host's scheme must be tcp://, udp:// or http://, "
                         f"not {parts.scheme}://")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if not parts.hostname or (port is None and port_required):
        raise ValueError(f"the host must look like tcp://HOST:PORT, not {url!r}")
    return parts.scheme, parts.hostname, port


def format_host(host: str) -> str:
    """``::1`` -> ``[::1]``: a host as it stands before ``:PORT``."""
    return f"[{host}]" if ":" in host else host


def open_connection(host: str, port: int, *, timeout: float | None = 5.0,
                    source: tuple[str, int] | None = None,
                    family: int = socket.AF_UNSPEC, numeric: bool = False,
                    on_error: Callable[[Attempt], None] | None = None) -> socket.socket:
    """Connect over TCP; failures become an ExchangeError (``refused``, ``connect_timeout``...).

    Every address the name resolves to is tried in turn; ``on_error`` hears about each
    one that failed (netcat prints one line per address), the last failure is raised.
    """
    infos = resolve(host, port, family=family, numeric=numeric)
    last: BaseException | None = None
    for af, kind, proto, _, address in infos:
        sock = socket.socket(af, kind, proto)
        step = "bind"
        try:
            sock.settimeout(timeout)
            _bind_source(sock, source)
            step = "connect"
            sock.connect(address)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
            if on_error is not None:
                on_error(Attempt(address, step, exc))
    raise as_exchange_error(last or OSError("no address"), connecting=True)


def open_datagram(host: str, port: int, *, timeout: float | None = 1.0,
                  source: tuple[str, int] | None = None,
                  family: int = socket.AF_UNSPEC, numeric: bool = False,
                  on_error: Callable[[Attempt], None] | None = None) -> socket.socket:
    """A UDP socket connected to the server, so replies from others are filtered out and
    an ICMP port unreachable shows as ``refused``. No datagram is sent here."""
    af, kind, proto, _, address = resolve(host, port, family=family, udp=True,
                                          numeric=numeric)[0]
    sock = socket.socket(af, kind, proto)
    step = "bind"
    try:
        sock.settimeout(timeout)
        _bind_source(sock, source)
        step = "connect"
        sock.connect(address)
    except OSError as exc:
        sock.close()
        if on_error is not None:
            on_error(Attempt(address, step, exc))
        raise as_exchange_error(exc, connecting=True)
    return sock


def open_listener(host: str | None, port: int, *, udp: bool = False,
                  family: int = socket.AF_UNSPEC, numeric: bool = False,
                  backlog: int = 5) -> socket.socket:
    """A socket bound to ``host``:``port`` (port 0: any free one), listening if TCP.

    For the listening side of ``testbed nc -l`` and for tests' small servers. Raises
    :class:`ResolveError` if the name does not resolve and ``OSError`` if no address
    it resolves to can be bound.
    """
    last: OSError | None = None
    for af, kind, proto, _, address in resolve(host, port, family=family, udp=udp,
                                               numeric=numeric, passive=True):
        sock = socket.socket(af, kind, proto)
        try:
            if not udp:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            if not udp:
                sock.listen(backlog)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    assert last is not None
    raise last


class TCPClient:
    """One TCP connection carrying any number of verified exchanges."""

    def __init__(self, host: str, port: int, *, expect: str | Callable | None = "echo",
                 connect_timeout: float = 5.0, io_timeout: float = 5.0,
                 source: tuple[str, int] | None = None, family: int = socket.AF_UNSPEC) -> None:
        self.host, self.port = host, port
        self.expect = expected_reply(expect)
        self.connect_timeout, self.io_timeout = connect_timeout, io_timeout
        self.source, self.family = source, family
        self.sock: socket.socket | None = None

    def connect(self) -> TCPClient:
        self.sock = open_connection(self.host, self.port, timeout=self.connect_timeout,
                                    source=self.source, family=self.family)
        self.sock.settimeout(self.io_timeout)
        return self

    def exchange(self, payload: bytes) -> Exchange:
        """Send ``payload``, read the whole reply (as long as the payload), verify it.

        A request is a line: a payload that does not end with a newline can only be
        completed by the end of the stream, so after it the write side is shut down
        (the connection then carries no more requests).
        """
        if self.sock is None:
            self.connect()
        sock = self.sock
        assert sock is not None
        last = not payload.endswith(b"\n")
        start = time.perf_counter()
        try:
            if len(payload) > CONCURRENT_SEND_ABOVE:
                reply = _send_while_reading(sock, payload, half_close=last)
            else:
                sock.sendall(payload)
                if last:
                    sock.shutdown(socket.SHUT_WR)
                reply = read_exactly(sock, len(payload))
        except OSError as exc:
            raise as_exchange_error(exc)
        latency = time.perf_counter() - start
        if self.expect is not None:
            verify(reply, self.expect(payload))
        return Exchange(reply, latency)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> TCPClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()


class UDPClient:
    """Datagram exchanges with a timeout and a retry count; a lost datagram is ``io_timeout``."""

    def __init__(self, host: str, port: int, *, expect: str | Callable | None = "echo",
                 timeout: float = 1.0, retries: int = 0,
                 source: tuple[str, int] | None = None, family: int = socket.AF_UNSPEC) -> None:
        self.host, self.port = host, port
        self.expect = expected_reply(expect)
        self.timeout, self.retries = timeout, retries
        self.source, self.family = source, family
        self.sock: socket.socket | None = None
        self._late: deque[bytes] = deque(maxlen=32)  # replies owed to requests that timed out

    def connect(self) -> UDPClient:
        self.sock = open_datagram(self.host, self.port, timeout=self.timeout,
                                  source=self.source, family=self.family)
        return self

    def exchange(self, payload: bytes) -> Exchange:
        """Send ``payload`` as one datagram and wait for its reply, retrying on silence.

        With an expected reply, a late reply to an earlier request that timed out is
        recognised and skipped; any other wrong datagram is kept while the timeout
        lasts, and if nothing right came it makes the failure ``mismatch`` (silence
        makes it ``io_timeout``). Without an expected reply any datagram is the reply.
        """
        if self.sock is None:
            self.connect()
        sock = self.sock
        assert sock is not None
        expected = self.expect(payload) if self.expect is not None else None
        if self._late:  # a request timed out earlier: its reply may be queued now
            _drain(sock, self.timeout)
        wrong: bytes | None = None
        start = time.perf_counter()
        try:
            for _attempt in range(self.retries + 1):
                try:
                    sock.send(payload)
                except OSError as exc:
                    raise as_exchange_error(exc)
                until = time.monotonic() + self.timeout
                while (left := until - time.monotonic()) > 0:
                    sock.settimeout(left)
                    try:
                        reply = sock.recv(65536)
                    except TimeoutError:
                        break
                    except OSError as exc:
                        raise as_exchange_error(exc)
                    if expected is None or reply == expected:
                        return Exchange(reply, time.perf_counter() - start)
                    if reply not in self._late:
                        wrong = reply
        finally:
            sock.settimeout(self.timeout)
        if wrong is not None and expected is not None:
            verify(wrong, expected)
        if expected is not None:
            self._late.append(expected)  # its reply may still come: not a mismatch then
        raise ExchangeError("io_timeout", f"no reply after {self.retries + 1} attempt(s)")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self) -> UDPClient:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain(sock: socket.socket, timeout: float | None) -> None:
    """Drop datagrams already queued (late replies to requests that timed out), so they
    are not taken for the reply to the next request."""
    sock.setblocking(False)
    try:
        for _ in range(1024):
            sock.recv(65536)
    except OSError:
        pass  # empty, or a pending ICMP error that the next send and receive will meet again
    finally:
        sock.settimeout(timeout)


def exchange_once(host: str, port: int, payload: bytes, *, udp: bool = False,
                  expect: str | Callable | None = "echo", connect_timeout: float = 5.0,
                  io_timeout: float = 5.0, retries: int = 0) -> Exchange:
    """A fresh connection (or socket) for one exchange, as in the course's attackDDoS."""
    client: TCPClient | UDPClient
    if udp:
        client = UDPClient(host, port, expect=expect, timeout=io_timeout, retries=retries)
    else:
        client = TCPClient(host, port, expect=expect, connect_timeout=connect_timeout,
                           io_timeout=io_timeout)
    with client:
        return client.exchange(payload)


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """Read exactly ``size`` bytes (a stream gives them in any number of pieces)."""
    first = b""
    if size <= RECV_AT_ONCE:
        first = sock.recv(size)  # a small reply mostly comes in one piece: no buffer, no copy
        if len(first) == size:
            return first
    buffer = bytearray(size)
    got = len(first)
    buffer[:got] = first
    view = memoryview(buffer)
    while got < size:
        n = sock.recv_into(view[got:])
        if not n:
            raise ExchangeError("closed_early", f"peer closed after {got} of {size} bytes")
        got += n
    return bytes(buffer)


def verify(reply: bytes, expected: bytes) -> None:
    if reply != expected:
        at = next((i for i, (a, b) in enumerate(zip(reply, expected, strict=False)) if a != b),
                  min(len(reply), len(expected)))
        raise ExchangeError("mismatch", f"reply differs from the expected one at byte {at}")


def _send_while_reading(sock: socket.socket, payload: bytes, half_close: bool) -> bytes:
    """Send from a second thread while this one reads, so full buffers never deadlock."""
    failure: list[BaseException] = []

    def send() -> None:
        try:
            sock.sendall(payload)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            failure.append(exc)

    sender = threading.Thread(target=send, name="harness-sender", daemon=True)
    sender.start()
    try:
        reply = read_exactly(sock, len(payload))
    except BaseException:
        if failure:  # the send side failed first: that is the real cause
            raise failure[0]
        raise
    finally:
        sender.join(timeout=sock.gettimeout())
    if failure:
        raise failure[0]
    return reply
