"""What every check shares: the scale, the figures, server and process helpers, and
the client helpers used by several checks."""

from __future__ import annotations

import errno
import os
import random
import select
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import psutil

from clients.harness import ExchangeError, TCPClient, classify
from servers import registry
from servers.config import ServerConfig
from testbed.processes import ServerProcess, start_server

MiB = 1024 * 1024
#: the largest UDP payload over IPv4 (65535 - 8 bytes of UDP - 20 of IP)
MAX_UDP_PAYLOAD = 65507
#: above this a payload is sent by a second thread while the reply is read
INLINE_SEND = 64 * 1024


@dataclass(frozen=True)
class Scale:
    """How hard each check pushes: the full figures, or a reduced form for the default suite."""

    name: str
    exchanges: int  # integrity: exchanges over `connections` concurrent connections
    datagrams: int  # integrity: UDP datagrams of 0..65507 bytes
    examples: int  # properties: hypothesis examples per service
    slowloris_seconds: float  # the normal client exchanges every `period` for this long
    fuzz: int  # bad input: random byte strings
    stall: float  # non-reader: the socket took nothing for this long, so stop sending
    connections: int = 20
    max_size: int = MiB
    idle: int = 200  # slowloris: idle connections held open
    period: float = 0.1
    nonreader_bytes: int = 100 * MiB
    descriptors: int = 200  # connections attempted against a server limited to `nofile`
    nofile: int = 64
    overlap: bool = False  # slowloris: run the --idle-timeout phase meanwhile (CI: saves time)


FULL = Scale("full", exchanges=2000, datagrams=300, examples=300, slowloris_seconds=5.0,
             fuzz=10_000, stall=1.0)
REDUCED = Scale("reduced", exchanges=200, datagrams=30, examples=25, slowloris_seconds=1.5,
                fuzz=600, stall=0.5, overlap=True)

#: the thresholds a model must hold
P99_LIMIT = 2.0  # s: the normal client's p99 beside 200 idle connections (wide: busy machines)
RSS_LIMIT = 64 * MiB  # select model's RSS growth under a non-reader
CPU_LIMIT = 20.0  # % of one core while descriptors are exhausted
EXIT_LIMIT = 5.0  # s from SIGTERM to exit
IDLE_TIMEOUT = 1.0  # s: --idle-timeout of the slowloris defence phase
IDLE_SLACK = 3.0  # s: how late past IDLE_TIMEOUT the idle connections may go, on a busy machine


@dataclass
class Figures:
    """What one check did to one model and what the model withstood."""

    model: str
    check: str
    exchanges: int = 0  # exchanges whose reply was verified byte for byte
    bytes_verified: int = 0
    bytes_lost: int = 0  # lost or altered: missing from a reply, or different in it
    faults: int = 0  # faults injected
    survived: int = 0  # ... after which the server still served (or, SIGTERM, exited cleanly)
    denied: Counter[str] = field(default_factory=Counter)  # failure class -> count
    expected_denial: str = ""  # why denial is this model's expected result here
    measures: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def expect(self, ok: bool, problem: str) -> None:
        """Record ``problem`` unless ``ok``: each threshold is one expect()."""
        if not ok:
            self.problems.append(problem)

    def deny(self, kind: str, count: int = 1) -> None:
        self.denied[kind] += count

    def measure(self, name: str, value: str) -> None:
        self.measures[name] = value

    def served(self, size: int) -> None:
        self.exchanges += 1
        self.bytes_verified += size

    def merge(self, other: Figures) -> None:
        """Add the counts of another part of the same check (run on its own server)."""
        self.exchanges += other.exchanges
        self.bytes_verified += other.bytes_verified
        self.bytes_lost += other.bytes_lost
        self.faults += other.faults
        self.survived += other.survived
        self.denied.update(other.denied)
        self.measures.update(other.measures)
        self.problems += other.problems

    @property
    def total_denied(self) -> int:
        return sum(self.denied.values())


def capacity(model: str) -> int | None:
    """How many clients ``model`` serves at once with default options (None: unbounded)."""
    cls = registry.get_model(model)
    return cls.capacity(ServerConfig()) if hasattr(cls, "capacity") else None


def holds_up_to(model: str, clients: int) -> bool:
    """Can ``model`` serve ``clients`` at once (and one more beside them)?"""
    cap = capacity(model)
    return cap is None or cap > clients


def slots(model: str) -> str:
    cap = capacity(model)
    return "one client at a time" if cap == 1 else f"{cap} clients at once"


def serves_udp(model: str) -> bool:
    return registry.get_model(model).udp


# -- servers ----------------------------------------------------------------------------

@contextmanager
def running(model: str, service: str = "upper", *options: str, udp: bool = False,
            nofile: int = 0) -> Iterator[ServerProcess]:
    """A quiet server on port 0, stopped and reaped (its whole group) however the block ends."""
    args = ["--model", model, "--service", service, "--quiet", *options]
    if udp:
        args.append("--udp")
    proc = start_server(args, nofile=nofile or None)
    try:
        yield proc
    finally:
        proc.cleanup()


def family_of(pid: int) -> list[psutil.Process]:
    """The process and every descendant (the forking model's children)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def settled_family(pid: int, within: float = 2.0) -> int:
    """How many processes the server runs once it has forked its workers (pool models fork
    them after the ready line): the count that holds for 0.2 s, or the last one seen."""
    deadline = time.monotonic() + within
    last, same = len(family_of(pid)), 0
    while same < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
        count = len(family_of(pid))
        same = same + 1 if count == last else 0
        last = count
    return last


def tree_rss(pid: int) -> int:
    total = 0
    for proc in family_of(pid):
        with suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def tree_cpu_percent(pid: int, seconds: float) -> float:
    """CPU used by the process tree over ``seconds`` (100 = one core busy)."""
    procs = family_of(pid)
    for proc in procs:
        with suppress(psutil.Error):
            proc.cpu_percent(None)
    time.sleep(seconds)
    total = 0.0
    for proc in procs:
        with suppress(psutil.Error):
            total += proc.cpu_percent(None)
    return total


def group_survivors(pgid: int) -> list[int]:
    """Live (non-zombie) processes still in process group ``pgid``."""
    found = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return found


def count_tracebacks(stderr: str) -> int:
    return stderr.count("Traceback (most recent call last)")


def count_handler_errors(stderr: str) -> int:
    """Lines where a model caught an exception it did not expect (socketserver handle_error)."""
    return sum(1 for line in stderr.splitlines() if ": unexpected " in line)


# -- clients ------------------------------------------------------------------------------

def probe(address: tuple[str, int], service: str, timeout: float = 2.0,
          payload: bytes = b"are you there?\n") -> tuple[float | None, str | None]:
    """One verified exchange on a fresh connection: (latency, None) or (None, failure class)."""
    start = time.perf_counter()
    try:
        with TCPClient(*address, expect=service, connect_timeout=timeout,
                       io_timeout=timeout) as client:
            client.exchange(payload)
    except ExchangeError as exc:
        return None, exc.kind
    except OSError as exc:
        return None, classify(exc)
    return time.perf_counter() - start, None


def served_again(address: tuple[str, int], service: str, within: float,
                 figures: Figures | None = None) -> bool:
    """Retry a normal exchange until one succeeds or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    while True:
        latency, _kind = probe(address, service, timeout=min(2.0, max(0.5, within / 3)))
        if latency is not None:
            if figures is not None:
                figures.served(15)
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def paced_probes(address: tuple[str, int], service: str, seconds: float, period: float,
                 timeout: float, figures: Figures) -> list[float]:
    """A normal client: a fresh exchange every ``period`` for ``seconds``; returns latencies."""
    latencies: list[float] = []
    start = time.monotonic()
    next_at = start
    while time.monotonic() - start < seconds:
        latency, kind = probe(address, service, timeout=timeout)
        if latency is None:
            figures.deny(kind or "other")
        else:
            latencies.append(latency)
            figures.served(15)
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    return latencies


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def open_idle(address: tuple[str, int], count: int,
              within: float) -> tuple[list[tuple[socket.socket, float]], int]:
    """Open ``count`` connections at once (non-blocking connects) and send nothing.

    Returns the connected sockets with the time each connected, and how many did not
    connect within ``within`` seconds (a full listen queue drops SYNs).
    """
    selector = selectors.DefaultSelector()
    connected: list[tuple[socket.socket, float]] = []
    failed = 0
    try:
        for _ in range(count):
            sock = socket.socket(_family(address[0]), socket.SOCK_STREAM)
            sock.setblocking(False)
            err = sock.connect_ex(address)
            if err == 0:
                connected.append((sock, time.monotonic()))
            elif err in (errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK):
                selector.register(sock, selectors.EVENT_WRITE)
            else:
                sock.close()
                failed += 1
        deadline = time.monotonic() + within
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in selector.select(left):
                sock = key.fileobj  # type: ignore[assignment]
                selector.unregister(sock)
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    sock.close()
                    failed += 1
                else:
                    connected.append((sock, time.monotonic()))
        for key in list(selector.get_map().values()):
            selector.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
            failed += 1
    except BaseException:
        for sock, _ in connected:
            sock.close()
        raise
    finally:
        selector.close()
    return connected, failed


def close_all(socks: Sequence[tuple[socket.socket, float]]) -> None:
    for sock, _ in socks:
        sock.close()


def wait_for_eof(socks: Sequence[tuple[socket.socket, float]], within: float,
                 enough: int = 0, quiet: float = 0.0) -> list[float]:
    """Seconds from connect to the server's close (EOF or reset), per socket closed in time.

    Stop early once ``enough`` have closed, or (``quiet``) when none has for that long.
    """
    waiting = {sock: since for sock, since in socks}
    closed: list[float] = []
    deadline = time.monotonic() + within
    last = time.monotonic()
    while waiting and not (enough and len(closed) >= enough):
        left = deadline - time.monotonic()
        if left <= 0 or (quiet and time.monotonic() - last > quiet):
            break
        readable, _, _ = select.select(list(waiting), [], [], min(left, 0.2))
        now = time.monotonic()
        for sock in readable:
            try:
                data = sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed.append(now - waiting.pop(sock))
                last = now
    return closed


def cut(rnd: random.Random, data: bytes, largest: int = 128 * 1024) -> list[bytes]:
    """Random chunking: pieces of log-uniform size from 1 byte to ``largest``."""
    pieces, pos, bits = [], 0, max(1, largest.bit_length() - 1)
    while pos < len(data):
        step = max(1, int(2 ** (rnd.random() * bits)))
        pieces.append(data[pos:pos + step])
        pos += step
    return pieces


def read_up_to(sock: socket.socket, size: int) -> tuple[bytes, str | None]:
    """Read ``size`` bytes; returns what came and the failure class if it stopped short."""
    buffer = bytearray()
    try:
        while len(buffer) < size:
            chunk = sock.recv(min(size - len(buffer), MiB))
            if not chunk:
                return bytes(buffer), "closed_early"
            buffer += chunk
    except OSError as exc:
        return bytes(buffer), classify(exc)
    return bytes(buffer), None


def stream_exchange(sock: socket.socket, pieces: Sequence[bytes], *, final: bool,
                    pause: float = 0.0) -> tuple[bytes, str | None]:
    """Send ``pieces`` (as separate writes) while reading as many bytes back.

    ``final``: half-close after sending, and require the server to close after the reply.
    Returns the reply and the failure class if it fell short (or ran long).
    """
    size = sum(map(len, pieces))
    failure: list[BaseException] = []

    def send() -> None:
        try:
            for piece in pieces:
                sock.sendall(piece)
                if pause:
                    time.sleep(pause)
            if final:
                sock.shutdown(socket.SHUT_WR)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side
            failure.append(exc)

    sender = None
    if size <= INLINE_SEND:
        send()
    else:
        sender = threading.Thread(target=send, name="resilience-sender", daemon=True)
        sender.start()
    reply, kind = read_up_to(sock, size)
    if sender is not None:
        sender.join(sock.gettimeout())
    if failure and kind is None and len(reply) < size:
        kind = classify(failure[0])
    if kind is None and final:
        extra, extra_kind = read_up_to(sock, 1)
        if extra:
            return reply + extra, "mismatch"  # more bytes than were sent
        if extra_kind not in ("closed_early", "reset"):
            return reply, extra_kind or "other"
    return reply, kind


def altered(reply: bytes, expected: bytes) -> int:
    """Bytes missing from ``reply`` or different in it."""
    if reply == expected:
        return 0
    common = min(len(reply), len(expected))
    lost = len(expected) - common
    if reply[:common] == expected[:common]:
        return lost
    return lost + sum(1 for a, b in zip(reply[:common], expected[:common], strict=True) if a != b)


def tally(figures: Figures, expected: bytes, reply: bytes, kind: str | None) -> bool:
    """Count one exchange: verified, or denied by class with its lost/altered bytes."""
    if kind is None and reply == expected:
        figures.served(len(expected))
        return True
    figures.deny(kind or "mismatch")
    figures.bytes_lost += altered(reply, expected)
    return False


def random_payload(rnd: random.Random, largest: int, final: bool) -> bytes:
    """0..``largest`` bytes, sizes log-uniform; a quarter are one long line with no newline.

    A payload that is not the connection's last ends with a newline, so its whole reply
    is owed at once; the last may end anywhere (the half-close completes it).
    """
    size = 0 if rnd.random() < 0.03 else min(largest, int(2 ** (rnd.random() * 20)))
    data = rnd.randbytes(size)
    if rnd.random() < 0.25:
        data = data.replace(b"\n", b"N")
    if not final:
        data = data[:-1] + b"\n" if data else b"\n"
    return data


def _pattern(size: int = MiB, seed: int = 4) -> bytes:
    """Random bytes with a newline every 80 bytes or so, so replies are owed as lines."""
    rnd = random.Random(seed)
    data = bytearray(rnd.randbytes(size))
    for at in range(79, size, 80):
        data[at] = 10
    return bytes(data)


@dataclass
class Pumped:
    """What :func:`pump` did: bytes the socket took, when it last took any, and whether the
    peer closed or reset the connection meanwhile (which ends the pump, not an error)."""

    sent: int
    last_taken: float  # time.monotonic() of the last send that took bytes (or of the start)
    peer_closed: bool = False


def pump(sock: socket.socket, block: bytes, limit: int, stall: float,
         time_limit: float) -> Pumped:
    """Send ``block`` over and over without reading, until the socket has taken nothing
    for ``stall`` seconds, ``limit`` bytes were sent, ``time_limit`` passed, or the peer
    closed the connection."""
    sock.setblocking(False)
    view = memoryview(block)
    pumped = Pumped(0, time.monotonic())
    deadline = pumped.last_taken + time_limit
    try:
        while pumped.sent < limit and time.monotonic() < deadline:
            at = pumped.sent % len(block)
            try:
                pumped.sent += sock.send(view[at:at + min(len(block) - at, limit - pumped.sent)])
                pumped.last_taken = time.monotonic()
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], stall)
                if not writable:
                    break
            except (ConnectionResetError, BrokenPipeError):
                # A server that sheds a stuck client (--idle-timeout) may do so while we
                # still wait for room: that is the shed arriving, not a broken check.
                pumped.peer_closed = True
                break
    finally:
        sock.setblocking(True)
    return pumped


class Quota:
    """A count of exchanges shared by worker threads, each taking a random batch at a time."""

    def __init__(self, total: int) -> None:
        self._left = total
        self._lock = threading.Lock()

    def take(self, rnd: random.Random, most: int) -> int:
        """Up to ``most`` (at least one while any are left); 0 once none are left."""
        with self._lock:
            batch = min(self._left, rnd.randint(1, most))
            self._left -= batch
            return batch
