"""``testbed nc``: netcat with OpenBSD netcat's options, on the testbed's client harness.

Connect (``nc HOST PORT``), listen (``-l``, ``-k``), scan (``-z``), TCP or UDP (``-u``),
IPv4 or IPv6 (``-4``/``-6``). stdin goes to the socket and the socket to stdout,
binary-safe and in constant memory: one 64 KiB piece at a time in each direction,
and nothing more is read from one side until the other side took the last piece.

Connections, datagram sockets and listeners are made by :mod:`clients.harness`; the
byte pump below is nc's own. Where this differs from netcat-openbsd 1.219 (Debian),
on purpose:

- a refused or failed connect is always reported on stderr (netcat says it only with
  ``-v``); scans stay quiet without ``-v``, as in netcat;
- in connect mode nc exits once the peer has closed and everything it sent is on
  stdout, even if stdin is still open (netcat waits for stdin);
- ``-q SECS`` quits SECS seconds after EOF on stdin even if the peer keeps the
  connection open (1.219 waits for the peer to close first);
- ``-l`` without an address listens on loopback (127.0.0.1, or ::1 with ``-6``), not
  on every interface: give ``-l 0.0.0.0 PORT`` to be reachable from other machines;
- a UDP scan sends one empty datagram per port instead of "X"s.
"""

from __future__ import annotations

import getopt
import os
import select
import socket
import sys
import time
from dataclasses import dataclass, field

from clients.harness import (
    Attempt,
    ExchangeError,
    ResolveError,
    open_connection,
    open_datagram,
    open_listener,
)

PROG = "nc"
CHUNK = 64 * 1024  # one read or write on a stream, each direction
MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
UDP_SCAN_WAIT = 1.0  # seconds a UDP scan waits for an ICMP "port unreachable", without -w

USAGE = ("usage: nc [-46dhklNnuvz] [-p port] [-q seconds] [-s sourceaddr] [-w timeout] "
         "[destination] [port ...]")

HELP = f"""{USAGE}
  testbed nc HOST PORT         connect; stdin goes to the socket, the socket to stdout
  testbed nc -l [HOST] PORT    listen (on loopback unless HOST is given), serve one client
\t-4\t\tUse IPv4
\t-6\t\tUse IPv6
\t-d\t\tDetach from stdin (send nothing)
\t-h\t\tThis help text
\t-k\t\tKeep listening: serve clients one after another (with -l)
\t-l\t\tListen mode, for inbound connects (port 0: any free port, see -v)
\t-N\t\tShutdown the network socket after EOF on stdin
\t-n\t\tSuppress name/port resolutions
\t-p port\t\tSpecify local port for remote connects (the port to listen on, with -l)
\t-q secs\t\tquit after EOF on stdin and delay of secs (negative: never)
\t-s sourceaddr\tLocal source address
\t-u\t\tUDP mode
\t-v\t\tVerbose
\t-w timeout\tTimeout for connects and idle connections, in seconds
\t-z\t\tZero-I/O mode [used for scanning]
\tPort numbers can be individual or ranges: lo-hi [inclusive]
"""


class Usage(Exception):
    """Bad command line: one line on stderr, exit status 1 (as netcat)."""


class Fatal(Exception):
    """A failure that ends nc with status 1 after one line on stderr."""


@dataclass
class Options:
    """The command line, parsed."""

    listen: bool = False
    keep: bool = False
    udp: bool = False
    scan: bool = False
    verbose: bool = False
    numeric: bool = False
    detach: bool = False
    half_close: bool = False
    quit_after: float | None = None
    wait: float | None = None
    source: str | None = None
    local_port: int | None = None
    family: int = socket.AF_UNSPEC
    host: str | None = None
    ports: list[int] = field(default_factory=list)
    help: bool = False

    @property
    def proto(self) -> str:
        return "udp" if self.udp else "tcp"


def _seconds(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise Usage(f"{what} invalid: {text}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise Usage(f"{what} invalid: {text}")
    return value


def _port(text: str, proto: str, *, zero_ok: bool = False) -> int:
    """A port number or service name, in netcat's words when it is neither."""
    if text.isdigit():
        value = int(text)
        if value > 65535:
            raise Usage(f"port number too large: {text}")
        if value < (0 if zero_ok else 1):
            raise Usage(f"port number too small: {text}")
        return value
    try:
        return socket.getservbyname(text, proto)
    except OSError:
        raise Usage(f"port number invalid: {text}") from None


def _ports(words: list[str], proto: str, *, zero_ok: bool = False) -> list[int]:
    """Ports from arguments: numbers, service names and ``lo-hi`` ranges."""
    ports: list[int] = []
    for word in words:
        low, dash, high = word.partition("-")
        if dash and low.isdigit():
            first, last = sorted((_port(low, proto), _port(high, proto)))
            ports.extend(range(first, last + 1))
        else:
            ports.append(_port(word, proto, zero_ok=zero_ok))
    return ports


def parse_args(argv: list[str]) -> Options:
    """netcat's command line (GNU getopt: options may come after the operands)."""
    try:
        pairs, operands = getopt.gnu_getopt(argv, "46dhklNnp:q:s:uvw:z")
    except getopt.GetoptError as exc:
        if "requires argument" in exc.msg:
            raise Usage(f"option requires an argument -- '{exc.opt}'") from None
        raise Usage(f"invalid option -- '{exc.opt}'") from None
    opts = Options()
    port_text: str | None = None
    for flag, value in pairs:
        match flag:
            case "-4":
                opts.family = socket.AF_INET
            case "-6":
                opts.family = socket.AF_INET6
            case "-d":
                opts.detach = True
            case "-h":
                opts.help = True
            case "-k":
                opts.keep = True
            case "-l":
                opts.listen = True
            case "-N":
                opts.half_close = True
            case "-n":
                opts.numeric = True
            case "-p":
                port_text = value
            case "-q":
                quit_after = _seconds(value, "quit timer")
                opts.quit_after = quit_after if quit_after >= 0 else None
            case "-s":
                opts.source = value
            case "-u":
                opts.udp = True
            case "-v":
                opts.verbose = True
            case "-w":
                wait = _seconds(value, "timeout")
                if wait <= 0:
                    raise Usage(f"timeout invalid: {value}")
                opts.wait = wait
            case "-z":
                opts.scan = True
    if opts.help:
        return opts
    if opts.keep and not opts.listen:
        raise Usage("must use -l with -k")
    if opts.listen and opts.scan:
        raise Usage("cannot use -z and -l")
    if port_text is not None:
        opts.local_port = _port(port_text, opts.proto, zero_ok=True)
    if opts.listen:
        if opts.local_port is not None and len(operands) > 1:
            raise Usage("cannot use -p and a port argument")
        if len(operands) > 2:
            raise Usage(f"listen mode takes one port, not: {' '.join(operands[1:])}")
        if opts.local_port is None:
            if not operands:
                raise Usage("missing port number")
            opts.local_port = _port(operands.pop(), opts.proto, zero_ok=True)
        opts.host = operands[0] if operands else opts.source
        return opts
    if not operands:
        raise Usage("missing destination and port (nc -h for help)")
    if len(operands) == 1:
        raise Usage("missing port number")
    opts.host = operands[0]
    opts.ports = _ports(operands[1:], opts.proto)
    return opts


# -- what netcat says -------------------------------------------------------------------

def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _strerror(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) and not getattr(exc, "strerror", None):
        return "Connection timed out"
    if isinstance(exc, ExchangeError):
        return exc.detail
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _host_name(address: tuple, numeric: bool) -> str:
    """The name (or, with -n, the number) netcat prints for an address."""
    if numeric:
        return address[0]
    try:
        return socket.getnameinfo(address, socket.NI_NUMERICSERV)[0]
    except OSError:
        return address[0]


def _service(port: int, proto: str, numeric: bool) -> str:
    if numeric:
        return "*"
    try:
        return socket.getservbyport(port, proto)
    except OSError:
        return "*"


def _succeeded(opts: Options, host: str, address: tuple, port: int) -> None:
    shown = host if host == address[0] else f"{host} ({address[0]})"
    _say(f"Connection to {shown} {port} port [{opts.proto}/"
         f"{_service(port, opts.proto, opts.numeric)}] succeeded!")


def _failed(opts: Options, address: tuple | str, port: int, exc: BaseException) -> None:
    host = address if isinstance(address, str) else address[0]
    _say(f"{PROG}: connect to {host} port {port} ({opts.proto}) failed: {_strerror(exc)}")


def _unresolved(error: ResolveError) -> Fatal:
    return Fatal(f'getaddrinfo for host "{error.host}" port {error.port}: {error.detail}')


# -- the pump ---------------------------------------------------------------------------

class Stdin:
    """stdin, shared by the connections of ``-k``: once at EOF it stays there."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd
        self.open = fd is not None


def _stdio_fd(fd: int) -> int | None:
    try:
        os.fstat(fd)
    except OSError:
        return None
    return fd


def pump(sock: socket.socket, stdin: Stdin, stdout_fd: int, opts: Options, *,
         udp: bool = False, peer: tuple | None = None, pending: bytes = b"") -> int:
    """Move bytes stdin -> socket and socket -> stdout until the conversation is over.

    Over when the peer closed and stdout has everything (TCP), or the quit timer after
    EOF on stdin (``-q``) or the idle timeout (``-w``) ran out. ``peer`` is for an
    unconnected UDP socket (``-lku``): replies go to whoever spoke last. Returns the
    exit status: 0, or 1 after a socket or stdout error.
    """
    sock.setblocking(False)
    sock_fd = sock.fileno()
    stdin_fd = stdin.fd if stdin.fd is not None else -1
    to_net = memoryview(b"")
    to_out = memoryview(pending)
    net_in = True  # TCP: until the peer's FIN; UDP: until an error
    net_out = True  # until a send fails
    eof_handled = False
    quit_at: float | None = None
    last_activity = time.monotonic()
    status = 0
    read_size = MAX_DATAGRAM if udp else CHUNK
    while True:
        now = time.monotonic()
        if not stdin.open and not to_net and not eof_handled:
            eof_handled = True  # stdin is done and all of it went out
            if not udp and net_out and (opts.half_close or opts.quit_after is not None):
                try:
                    sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
            if opts.quit_after is not None:
                quit_at = now + opts.quit_after
        if not net_in and not to_out:
            return status  # the peer is done and stdout has everything it sent
        deadlines = [t for t in (quit_at, opts.wait and last_activity + opts.wait)
                     if t is not None]
        if deadlines and now >= min(deadlines):
            return status
        want: dict[int, int] = {}
        reading_stdin = stdin.open and net_out and not to_net
        if reading_stdin:
            want[stdin_fd] = select.POLLIN
        if net_in and not to_out:
            want[sock_fd] = want.get(sock_fd, 0) | select.POLLIN
        if to_net:
            want[sock_fd] = want.get(sock_fd, 0) | select.POLLOUT
        if to_out:
            want[stdout_fd] = want.get(stdout_fd, 0) | select.POLLOUT
        if not want:
            return status
        poller = select.poll()
        for fd, events in want.items():
            poller.register(fd, events)
        timeout_ms = None if not deadlines else max(0, int((min(deadlines) - now) * 1000) + 1)
        try:
            ready = dict(poller.poll(timeout_ms))
        except InterruptedError:
            continue
        trouble = select.POLLHUP | select.POLLERR | select.POLLNVAL

        if reading_stdin and ready.get(stdin_fd, 0):
            try:
                data = os.read(stdin_fd, read_size)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data is not None:
                if data:
                    to_net = memoryview(data)
                    last_activity = time.monotonic()
                else:
                    stdin.open = False

        events = ready.get(sock_fd, 0)
        if to_net and events & (select.POLLOUT | trouble):
            try:
                if udp:
                    sent = sock.sendto(to_net, peer) if peer else sock.send(to_net)
                    sent = len(to_net)  # a datagram goes whole or not at all
                else:
                    sent = sock.send(to_net)
                to_net = to_net[sent:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                if not (udp and isinstance(exc, ConnectionRefusedError)):
                    _say(f"{PROG}: write failed: {_strerror(exc)}")
                    to_net, net_out, status = memoryview(b""), False, 1
                # else: an ICMP error left by an earlier datagram; this one goes next time
        if net_in and not to_out and events & (select.POLLIN | trouble):
            try:
                if udp and peer is not None:
                    data, peer = sock.recvfrom(MAX_DATAGRAM)
                else:
                    data = sock.recv(read_size)
                if data:
                    to_out = memoryview(data)
                    last_activity = time.monotonic()
                elif not udp:
                    net_in = False  # FIN: the peer sends no more
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                if udp and isinstance(exc, ConnectionRefusedError):
                    if opts.verbose:  # nobody listens there (yet): keep going, as netcat
                        _say(f"{PROG}: read failed: Connection refused")
                else:
                    _say(f"{PROG}: read failed: {_strerror(exc)}")
                    net_in, net_out, to_net, status = False, False, memoryview(b""), 1

        events = ready.get(stdout_fd, 0)
        if to_out and events & (select.POLLOUT | trouble):
            try:
                written = os.write(stdout_fd, to_out)
                to_out = to_out[written:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                return 1  # nobody reads stdout any more


# -- the three modes --------------------------------------------------------------------

def _source(opts: Options) -> tuple[str, int] | None:
    if opts.source is None and not opts.local_port:
        return None
    return (opts.source or "", opts.local_port or 0)


def connect(opts: Options) -> int:
    """``nc HOST PORT``: for each port, connect and pump; 0 if any port connected."""
    assert opts.host is not None
    stdin = Stdin(None if opts.detach else _stdio_fd(0))
    status = 1
    for port in opts.ports:
        try:
            sock, address = _open(opts, port)
        except _PortFailed:
            continue
        status = 0
        with sock:
            if opts.verbose:
                _succeeded(opts, opts.host, address, port)
            if pump(sock, stdin, 1, opts, udp=opts.udp):
                status = 1
    return status


class _PortFailed(Exception):
    """This port did not connect (already reported)."""


def _open(opts: Options, port: int, *, scanning: bool = False) -> tuple[socket.socket, tuple]:
    """Connect to one port through the harness, saying what failed the way netcat does."""
    assert opts.host is not None
    report = opts.verbose or not scanning

    def failed(attempt: Attempt) -> None:
        if attempt.step == "bind":
            raise Fatal(f"bind failed: {_strerror(attempt.error)}")
        if report:
            _failed(opts, attempt.address, port, attempt.error)

    opener = open_datagram if opts.udp else open_connection
    try:
        sock = opener(opts.host, port, timeout=opts.wait, source=_source(opts),
                      family=opts.family, numeric=opts.numeric, on_error=failed)
    except ResolveError as exc:
        raise _unresolved(exc) from None
    except ExchangeError:
        raise _PortFailed from None
    return sock, sock.getpeername()


def scan(opts: Options) -> int:
    """``nc -z``: which ports answer, without sending data; 0 if any is open."""
    assert opts.host is not None
    status = 1
    for port in opts.ports:
        try:
            sock, address = _open(opts, port, scanning=True)
        except _PortFailed:
            continue
        with sock:
            if opts.udp and not _udp_open(sock, opts):
                if opts.verbose:
                    _failed(opts, address, port, ConnectionRefusedError(111, "Connection refused"))
                continue
        status = 0
        if opts.verbose:
            _succeeded(opts, opts.host, address, port)
    return status


def _udp_open(sock: socket.socket, opts: Options) -> bool:
    """Send an empty datagram: an ICMP port unreachable means closed, anything else open."""
    sock.settimeout(opts.wait or UDP_SCAN_WAIT)
    try:
        sock.send(b"")
        sock.recv(MAX_DATAGRAM)
    except ConnectionRefusedError:
        return False
    except OSError:
        pass  # silence: open, or filtered
    return True


def listen(opts: Options) -> int:
    """``nc -l``: serve one client (``-k``: one after another) with stdin and stdout."""
    host = opts.host or ("::1" if opts.family == socket.AF_INET6 else "127.0.0.1")
    assert opts.local_port is not None
    try:
        sock = open_listener(host, opts.local_port, udp=opts.udp, family=opts.family,
                             numeric=opts.numeric, backlog=5 if opts.keep else 1)
    except ResolveError as exc:
        raise _unresolved(exc) from None
    except OSError as exc:
        raise Fatal(f"bind failed: {_strerror(exc)}") from None
    stdin = Stdin(None if opts.detach else _stdio_fd(0))
    with sock:
        if opts.verbose:
            bound = sock.getsockname()
            word = "Bound on" if opts.udp else "Listening on"
            _say(f"{word} {_host_name(bound, opts.numeric)} {bound[1]}")
        if opts.udp:
            return _listen_udp(sock, stdin, opts)
        status = 0
        while True:
            conn, address = sock.accept()
            if opts.verbose:
                _say(f"Connection received on {_host_name(address, opts.numeric)} {address[1]}")
            if not opts.keep:
                sock.close()  # one client only: nobody else may queue up
            with conn:
                status = pump(conn, stdin, 1, opts)
            if not opts.keep:
                return status


def _listen_udp(sock: socket.socket, stdin: Stdin, opts: Options) -> int:
    """The first datagram names the peer; without -k nc then talks to it alone."""
    data, peer = sock.recvfrom(MAX_DATAGRAM)
    if opts.verbose:
        _say(f"Connection received on {_host_name(peer, opts.numeric)} {peer[1]}")
    if opts.keep:
        return pump(sock, stdin, 1, opts, udp=True, peer=peer, pending=data)
    sock.connect(peer)
    return pump(sock, stdin, 1, opts, udp=True, pending=data)


def main(argv: list[str] | None = None) -> int:
    """Run netcat; returns its exit status (0, or 1 on any failure, as netcat)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        opts = parse_args(argv)
        if opts.help:
            sys.stdout.write(HELP)
            return 0
        if opts.listen:
            return listen(opts)
        if opts.scan:
            return scan(opts)
        return connect(opts)
    except Usage as exc:
        _say(f"{PROG}: {exc}")
        return 1
    except Fatal as exc:
        _say(f"{PROG}: {exc}")
        return 1
    except OSError as exc:
        _say(f"{PROG}: {_strerror(exc)}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
