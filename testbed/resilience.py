"""``testbed resilience``: attack every model on loopback and print what it withstood.

The checks live here, once: each starts its own server(s) through
:mod:`testbed.processes`, attacks them within a bounded count and time, and
returns :class:`Figures` -- exchanges and bytes verified, faults injected and
survived, what was denied and how (counted by the harness's failure classes),
the measures taken, and ``problems``: every threshold of issue 6 that the
model missed. ``tests/resilience/`` asserts on those figures; this command
prints them. The reduced scale is what CI runs, ``--full`` the issue's figures.

A model that serves a bounded number of clients at once (``Model.capacity``:
one for sequential, the workers of a fixed pool) is expected to deny service
when idle clients or a non-reader hold every slot: its figures say so
(``expected_denial``) instead of hiding it, and that is not counted as a problem.
"""

from __future__ import annotations

import argparse
import errno
import os
import random
import re
import select
import selectors
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import psutil

from clients.harness import EXPECTED, ExchangeError, TCPClient, UDPClient, classify
from servers import registry
from servers.config import ServerConfig
from testbed.args import ArgumentParser
from testbed.processes import ManagedProcess, ServerProcess, start_server

MiB = 1024 * 1024
#: the largest UDP payload over IPv4 (65535 - 8 bytes of UDP - 20 of IP)
MAX_UDP_PAYLOAD = 65507
#: what a server logs when accept() runs out of descriptors (strerror of EMFILE)
EXHAUSTION = "Too many open files"
#: above this a payload is sent by a second thread while the reply is read
INLINE_SEND = 64 * 1024


@dataclass(frozen=True)
class Scale:
    """How hard each check pushes: the issue's full figures, or a reduced form for CI."""

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

#: thresholds of issue 6
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
        """Record ``problem`` unless ``ok``: each threshold of the issue is one expect()."""
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


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))
    return ordered[int(rank) - 1]


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


def connect(address: tuple[str, int], timeout: float) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


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


# -- 1. integrity -------------------------------------------------------------------------

def check_integrity(model: str, scale: Scale = REDUCED, seed: int | None = None,
                    time_limit: float = 20.0) -> Figures:
    """Random sizes 0..1 MiB in random chunks over 20 concurrent connections: 0 bytes lost."""
    figures = Figures(model, "integrity")
    seed = random.randrange(2**32) if seed is None else seed
    figures.measure("seed", str(seed))
    lock = threading.Lock()
    left = [scale.exchanges]
    deadline = time.monotonic() + time_limit

    with running(model, "upper") as server:
        expect = EXPECTED["upper"]

        def worker(number: int) -> None:
            rnd = random.Random(seed * 1000 + number)
            while time.monotonic() < deadline:
                with lock:
                    batch = min(left[0], rnd.randint(1, 8))
                    left[0] -= batch
                if not batch:
                    return
                try:
                    sock = connect(server.address, timeout=10)
                except OSError as exc:
                    with lock:
                        figures.deny(classify(exc, connecting=True), batch)
                    continue
                with sock:
                    for i in range(batch):
                        final = i == batch - 1
                        payload = random_payload(rnd, scale.max_size, final)
                        reply, kind = stream_exchange(sock, cut(rnd, payload), final=final)
                        with lock:
                            ok = tally(figures, expect(payload), reply, kind)
                        if not ok:
                            with lock:
                                figures.deny("closed_early", batch - i - 1)  # never sent
                            break

        threads = [threading.Thread(target=worker, args=(n,), daemon=True)
                   for n in range(scale.connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.1, deadline + 15 - time.monotonic()))
        stuck = sum(thread.is_alive() for thread in threads)
        figures.expect(not stuck, f"{stuck} client threads still waiting for replies")

    if serves_udp(model):
        _udp_integrity(model, scale, seed, figures)
    tcp_expected = scale.exchanges
    figures.expect(figures.bytes_lost == 0, f"{figures.bytes_lost} bytes lost or altered")
    figures.expect(figures.total_denied == 0, f"exchanges failed: {dict(figures.denied)}")
    figures.expect(figures.exchanges >= tcp_expected,
                   f"only {figures.exchanges} exchanges verified in {time_limit:g}s")
    return figures


def _udp_integrity(model: str, scale: Scale, seed: int, figures: Figures) -> None:
    """Datagrams of 0..65507 bytes, the largest included: each answered whole."""
    rnd = random.Random(seed + 1)
    sizes = [0, MAX_UDP_PAYLOAD] + [min(MAX_UDP_PAYLOAD, int(2 ** (rnd.random() * 16)))
                                    for _ in range(max(0, scale.datagrams - 2))]
    verified = 0
    with running(model, "upper", udp=True) as server:
        with UDPClient(*server.address, expect=None, timeout=2.0, retries=2) as client:
            for size in sizes:
                payload = rnd.randbytes(size)
                try:
                    reply = client.exchange(payload).reply
                except ExchangeError as exc:
                    figures.deny(exc.kind)
                    figures.bytes_lost += size
                    continue
                if tally(figures, payload.upper(), reply, None):
                    verified += 1
    figures.measure("datagrams", f"{verified}/{len(sizes)} up to {MAX_UDP_PAYLOAD} B")


# -- 2. properties ------------------------------------------------------------------------

PIECES = (b"\n", b"\r\n", b"a", b"Z", b"\x00", b"\xff", b"\xc3\xa9", b" ", b"\xc3")


def run_properties(address: tuple[str, int], service: str, examples: int,
                   figures: Figures) -> None:
    """Hypothesis: for any bytes cut any way, the reply is the service's transform of them.

    One connection per example: the chunks are sent as separate writes, then a half-close;
    the reply read to EOF must equal ``transform(input)``. A falsifying example becomes a
    problem in ``figures`` (hypothesis shrinks it first).
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    expect = EXPECTED[service]
    text = st.one_of(
        st.binary(max_size=512),
        st.lists(st.one_of(st.sampled_from(PIECES), st.binary(max_size=16)),
                 max_size=64).map(b"".join),
    )

    @st.composite
    def chunked(draw: Callable) -> tuple[bytes, list[bytes]]:
        unit = draw(text)
        # Sometimes long: repeated past MAX_PENDING_LINE (64 KiB) to stream an overlong line.
        data = unit * (draw(st.integers(1, 300)) if unit and draw(st.booleans()) else 1)
        cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
        bounds = [0, *cuts, len(data)]
        return data, [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False) if b > a]

    @settings(max_examples=examples, deadline=None, database=None, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(chunked())
    def reply_is_transform(case: tuple[bytes, list[bytes]]) -> None:
        data, pieces = case
        with connect(address, timeout=10) as sock:
            reply, kind = stream_exchange(sock, pieces, final=True)
        wanted = expect(data)
        if kind is not None or reply != wanted:
            figures.deny(kind or "mismatch")
            raise AssertionError(f"{service}: {len(data)} bytes in {len(pieces)} pieces: "
                                 f"reply of {len(reply)} bytes ({kind or 'differs'})")
        figures.served(len(data))

    try:
        reply_is_transform()
    except Exception as exc:  # noqa: BLE001 - falsified, or flaky: either way a problem
        notes = " ".join(getattr(exc, "__notes__", []))
        figures.problems.append(f"property falsified: {exc} {notes}"[:600])
        # the shrinking runs counted as failures; what matters is the falsified property
        figures.bytes_lost += 1


def check_properties(model: str, scale: Scale = REDUCED) -> Figures:
    """The property for every service, one server per service."""
    figures = Figures(model, "properties")
    try:
        import hypothesis  # noqa: F401
    except ImportError:
        figures.measure("skipped", "hypothesis is not installed (pip install testbed[test])")
        return figures
    for service in registry.SERVICES:
        with running(model, service) as server:
            run_properties(server.address, service, scale.examples, figures)
    figures.measure("examples", f"{scale.examples} per service x {len(registry.SERVICES)}")
    return figures


# -- 3. slowloris -------------------------------------------------------------------------

def check_slowloris(model: str, scale: Scale = REDUCED) -> Figures:
    """200 idle connections beside a normal client; then --idle-timeout 1 must shed them.

    The servers get a listen queue longer than the attack (--backlog), so every idle
    connection completes its handshake whatever the model: a model that does not accept
    them leaves them in the queue, holding their place ahead of the normal client.
    """
    figures = Figures(model, "slowloris")
    backlog = str(scale.idle + 56)
    concurrent = holds_up_to(model, scale.idle)
    if not concurrent:
        figures.expected_denial = f"serves {slots(model)}: idle clients hold every slot"
    # The --idle-timeout phase runs on its own server: meanwhile in the reduced form (its
    # 200 connections then share the machine with the normal client's), after in the full.
    defence = Figures(model, "slowloris")
    phase = threading.Thread(target=_idle_timeout_phase, args=(model, scale, backlog, defence),
                             name="resilience-idle-timeout", daemon=True)
    if scale.overlap:
        phase.start()
    with running(model, "echo", "--backlog", backlog) as server:
        idle, failed = open_idle(server.address, scale.idle, within=3.0)
        figures.faults += 1
        try:
            latencies = paced_probes(server.address, "echo", scale.slowloris_seconds,
                                     scale.period, timeout=P99_LIMIT, figures=figures)
        finally:
            close_all(idle)
        alive = server.running and served_again(server.address, "echo", 10.0)
        figures.survived += alive
    p99 = percentile(latencies, 0.99)
    figures.measure("idle held", f"{len(idle)}/{scale.idle}")
    figures.measure("normal p99", f"{p99 * 1000:.0f} ms" if latencies else "-")
    figures.measure("normal served", f"{len(latencies)}/{len(latencies) + figures.total_denied}")
    figures.expect(alive, "the server stopped serving after the idle connections closed")
    if concurrent:
        figures.expect(len(idle) == scale.idle and not failed,
                       f"only {len(idle)} of {scale.idle} idle connections were accepted")
        figures.expect(figures.total_denied == 0,
                       f"the normal client was denied: {dict(figures.denied)}")
        figures.expect(p99 < P99_LIMIT, f"normal client p99 {p99:.2f}s >= {P99_LIMIT:g}s")
    if not scale.overlap:
        phase.start()
    phase.join(60)
    figures.expect(not phase.is_alive(), "the --idle-timeout phase did not finish in 60 s")
    figures.merge(defence)
    return figures


def _idle_timeout_phase(model: str, scale: Scale, backlog: str, figures: Figures) -> None:
    """With --idle-timeout 1 the idle connections see EOF after about 1 s; active ones stay."""
    concurrent = holds_up_to(model, scale.idle)
    with running(model, "echo", "--idle-timeout", f"{IDLE_TIMEOUT:g}",
                 "--backlog", backlog) as server:
        idle, _ = open_idle(server.address, scale.idle, within=3.0)
        figures.faults += 1
        active = slow = None
        if concurrent:
            active = _ActiveClient(server.address, period=IDLE_TIMEOUT / 4,
                                   seconds=IDLE_TIMEOUT + 0.5)
            slow = _SlowReader(server.address, seconds=IDLE_TIMEOUT * 2)
        # A bounded model sheds them a few at a time: watch long enough to show it, no more.
        within = IDLE_TIMEOUT + IDLE_SLACK if concurrent else IDLE_TIMEOUT * 2 + 0.5
        try:
            closed = wait_for_eof(idle, within=within)
        finally:
            close_all(idle)
            for client in (active, slow):
                if client is not None:
                    client.join(IDLE_TIMEOUT * 2 + 10)
        alive = server.running and served_again(server.address, "echo", 10.0)
        figures.survived += alive
    figures.measure("idle shed", f"{len(closed)}/{len(idle)} in "
                    f"{min(closed, default=0):.1f}-{max(closed, default=0):.1f}s")
    figures.expect(alive, "the server stopped serving after --idle-timeout shed connections")
    if active is not None:
        figures.exchanges += active.exchanges
        figures.bytes_verified += active.exchanges * 10
        figures.measure("active kept", f"{active.exchanges} exchanges, {active.failure or 'ok'}")
        figures.expect(active.failure is None,
                       f"--idle-timeout cut a client that was exchanging: {active.failure}")
    if slow is not None:
        figures.bytes_verified += slow.verified
        figures.bytes_lost += slow.lost
        figures.measure("slow reader kept", f"{slow.verified // 1024} KiB in "
                        f"{slow.seconds:g}s, {slow.failure or 'ok'}")
        figures.expect(slow.failure is None and not slow.lost,
                       f"--idle-timeout {IDLE_TIMEOUT:g} cut a client reading its reply slowly "
                       f"but steadily: {slow.failure}, {slow.lost} bytes lost")
    if concurrent:
        figures.expect(len(closed) == len(idle) == scale.idle,
                       f"--idle-timeout {IDLE_TIMEOUT:g}: {len(closed)} of {len(idle)} idle "
                       f"connections closed within {IDLE_TIMEOUT + IDLE_SLACK:g}s")
        figures.expect(min(closed, default=IDLE_TIMEOUT) >= IDLE_TIMEOUT * 0.5,
                       f"idle connections closed after {min(closed):.2f}s, before the timeout")


class _ActiveClient(threading.Thread):
    """One connection exchanging every ``period``: --idle-timeout must leave it alone."""

    def __init__(self, address: tuple[str, int], period: float, seconds: float) -> None:
        super().__init__(name="resilience-active", daemon=True)
        self.address, self.period, self.seconds = address, period, seconds
        self.exchanges = 0
        self.failure: str | None = None
        self.start()

    def run(self) -> None:
        end = time.monotonic() + self.seconds
        try:
            with TCPClient(*self.address, connect_timeout=3, io_timeout=3) as client:
                while time.monotonic() < end:
                    client.exchange(b"still here\n")
                    self.exchanges += 1
                    time.sleep(self.period)
        except ExchangeError as exc:
            self.failure = exc.kind


class _SlowReader(threading.Thread):
    """Sends 8 MiB of lines (more than the kernel buffers hold), then reads the replies slowly
    but steadily (32 KiB every 0.1 s, small receive buffer): a client whose reply makes
    progress is not idle, so --idle-timeout must not cut it.

    Much slower is indistinguishable from a non-reader at the socket level: the server's
    send buffer autotunes to MiBs and a write waits until half of it drains.
    """

    def __init__(self, address: tuple[str, int], seconds: float) -> None:
        super().__init__(name="resilience-slow-reader", daemon=True)
        self.address, self.seconds = address, seconds
        self.verified = self.lost = 0
        self.failure: str | None = None
        self.start()

    def run(self) -> None:
        block = _pattern(MiB)
        expected = EXPECTED["echo"](block)
        sock = socket.socket(_family(self.address[0]), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.settimeout(5.0)
        try:
            sock.connect(self.address)
            sender = threading.Thread(target=_send_quietly, args=(sock, block * 8), daemon=True)
            sender.start()
            got = 0
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:
                chunk = sock.recv(32 * 1024)
                if not chunk:
                    self.failure = "closed_early"
                    break
                at = got % len(block)
                wanted = (expected[at:] + expected)[:len(chunk)]
                bad = altered(chunk, wanted)
                self.verified += len(chunk) - bad
                self.lost += bad
                got += len(chunk)
                time.sleep(0.1)
        except OSError as exc:
            self.failure = classify(exc)
        finally:
            sock.close()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with suppress(OSError):
        sock.sendall(data)


# -- 4. non-reader ------------------------------------------------------------------------

def _pattern(size: int = MiB, seed: int = 4) -> bytes:
    """Random bytes with a newline every 80 bytes or so, so replies are owed as lines."""
    rnd = random.Random(seed)
    data = bytearray(rnd.randbytes(size))
    for at in range(79, size, 80):
        data[at] = 10
    return bytes(data)


def pump(sock: socket.socket, block: bytes, limit: int, stall: float, time_limit: float) -> int:
    """Send ``block`` over and over without reading, until the socket has taken nothing
    for ``stall`` seconds, ``limit`` bytes were sent, or ``time_limit`` passed."""
    sock.setblocking(False)
    view = memoryview(block)
    sent = 0
    deadline = time.monotonic() + time_limit
    try:
        while sent < limit and time.monotonic() < deadline:
            at = sent % len(block)
            try:
                sent += sock.send(view[at:at + min(len(block) - at, limit - sent)])
            except BlockingIOError:
                _, writable, _ = select.select([], [sock], [], stall)
                if not writable:
                    break
    finally:
        sock.setblocking(True)
    return sent


def read_stream(sock: socket.socket, expected_block: bytes, total: int,
                time_limit: float) -> tuple[int, int, str | None]:
    """Read ``total`` bytes that must repeat ``expected_block``: (verified, lost, failure)."""
    sock.settimeout(time_limit)
    got = bad = 0
    size = len(expected_block)
    kind = None
    try:
        while got < total:
            chunk = sock.recv(min(MiB, total - got))
            if not chunk:
                kind = "closed_early"
                break
            at = got % size
            wanted = (expected_block[at:] + expected_block * (len(chunk) // size + 1))[:len(chunk)]
            if chunk != wanted:
                bad += altered(chunk, wanted)
            got += len(chunk)
    except OSError as exc:
        kind = classify(exc)
    return got - bad, (total - got) + bad, kind


TCP_ESTABLISHED = 1  # tcp_info.tcpi_state


def connection_open(sock: socket.socket) -> bool:
    """Is the connection still established (the peer has neither closed nor reset it)?

    Read from TCP_INFO without reading data, so a client that never reads can tell.
    """
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_ESTABLISHED
    except (AttributeError, OSError):
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


class _StuckNonReader(threading.Thread):
    """With --idle-timeout, a non-reader whose replies make no progress is shed like an idle
    client: the server closes it about IDLE_TIMEOUT after it stopped taking bytes."""

    def __init__(self, model: str, scale: Scale) -> None:
        super().__init__(name="resilience-stuck-non-reader", daemon=True)
        self.model, self.scale = model, scale
        self.shed_after: float | None = None
        self.failure: str | None = None
        self.start()

    def run(self) -> None:
        try:
            with running(self.model, "upper", "--idle-timeout", f"{IDLE_TIMEOUT:g}") as server:
                with connect(server.address, timeout=10) as sock:
                    pump(sock, _pattern(), self.scale.nonreader_bytes, self.scale.stall, 15.0)
                    stalled = time.monotonic() - self.scale.stall
                    deadline = time.monotonic() + IDLE_TIMEOUT + IDLE_SLACK
                    while connection_open(sock) and time.monotonic() < deadline:
                        time.sleep(0.05)
                    if not connection_open(sock):
                        self.shed_after = time.monotonic() - stalled
        except Exception as exc:  # noqa: BLE001 - reported by the check
            self.failure = f"{type(exc).__name__}: {exc}"


def check_nonreader(model: str, scale: Scale = REDUCED) -> Figures:
    """A client sends up to 100 MiB and reads nothing: memory stays flat, others are served."""
    figures = Figures(model, "non-reader")
    concurrent = holds_up_to(model, 1)
    if not concurrent:
        figures.expected_denial = f"serves {slots(model)}: the non-reader holds it"
    block = _pattern()
    expected_block = EXPECTED["upper"](block)
    stuck = _StuckNonReader(model, scale)  # on its own server, meanwhile
    with running(model, "upper") as server:
        before = tree_rss(server.pid)
        with connect(server.address, timeout=10) as sock:
            figures.faults += 1
            sent = pump(sock, block, scale.nonreader_bytes, scale.stall, time_limit=15.0)
            during = tree_rss(server.pid)
            others = paced_probes(server.address, "upper", seconds=1.0, period=0.2,
                                  timeout=P99_LIMIT, figures=figures)
            during = max(during, tree_rss(server.pid))
            # Now read: the server must pick up where it stopped and owe nothing less.
            sock.shutdown(socket.SHUT_WR)
            verified, lost, kind = read_stream(sock, expected_block, sent, time_limit=20.0)
        figures.bytes_verified += verified
        figures.bytes_lost += lost
        if kind is None and not lost:
            figures.exchanges += 1
        else:
            figures.deny(kind or "mismatch")
        alive = server.running and served_again(server.address, "upper", 10.0, figures)
        figures.survived += alive
    stuck.join(30)
    figures.faults += 1
    figures.survived += stuck.shed_after is not None
    shed = "-" if stuck.shed_after is None else f"{stuck.shed_after:.1f}s"
    figures.measure(f"shed by --idle-timeout {IDLE_TIMEOUT:g}", stuck.failure or shed)
    figures.expect(stuck.failure is None, f"stuck non-reader check broke down: {stuck.failure}")
    figures.expect(stuck.shed_after is not None,
                   f"--idle-timeout {IDLE_TIMEOUT:g} never shed a non-reader whose replies made "
                   f"no progress (waited {IDLE_TIMEOUT + IDLE_SLACK:g}s)")
    growth = during - before
    figures.measure("sent unread", f"{sent / MiB:.1f} MiB")
    figures.measure("rss growth", f"{growth / MiB:+.1f} MiB")
    figures.measure("others served", f"{len(others)}/{len(others) + figures.total_denied}")
    figures.expect(alive, "the server stopped serving after the non-reader")
    figures.expect(lost == 0 and kind is None,
                   f"reading back the non-reader's replies: {lost} bytes lost ({kind})")
    if model == "select":
        figures.expect(growth < RSS_LIMIT, f"RSS grew {growth / MiB:.0f} MiB >= "
                       f"{RSS_LIMIT // MiB} MiB under a non-reader")
    figures.expect(sent < scale.nonreader_bytes,
                   f"the server read all {sent / MiB:.0f} MiB from a client that reads nothing")
    if concurrent:
        figures.expect(figures.total_denied == 0,
                       f"another client was denied meanwhile: {dict(figures.denied)}")
    return figures


# -- 5. file descriptors ------------------------------------------------------------------

MAX_CONNECTIONS = 50  # --max-connections of the descriptor check's second phase


def tree_fds(pid: int) -> int:
    total = 0
    for proc in family_of(pid):
        with suppress(psutil.Error):
            total += proc.num_fds()
    return total


def _saturated(server: ServerProcess, within: float) -> None:
    """Wait (bounded) until the server logs exhaustion or its descriptor count settles."""
    deadline = time.monotonic() + within
    last, steady = -1, 0
    while time.monotonic() < deadline and EXHAUSTION not in server.stderr_text():
        count = tree_fds(server.pid)
        steady = steady + 1 if count == last else 0
        if steady >= 3:
            return
        last = count
        time.sleep(0.1)


def check_descriptors(model: str, scale: Scale = REDUCED) -> Figures:
    """Soft limit of 64 descriptors, 200 connections: survives, idles, logs once, recovers.

    Then --max-connections 50 and 200 connections: 50 are served, the rest are turned
    away at once (they see EOF), each rejection is logged, and the server serves after.
    """
    figures = Figures(model, "descriptors")
    # A listen queue deep enough for all of them: SYNs are not dropped, so every
    # client is either accepted or waiting in the queue, which is the saturated state.
    backlog = str(scale.descriptors + 56)
    with running(model, "echo", "--backlog", backlog, nofile=scale.nofile) as server:
        # Each process that accepts logs its own burst (the workers of reuseport, prefork).
        processes = settled_family(server.pid)
        # 1.5 s: long enough for a SYN the full queue dropped to be retried once
        held, failed = open_idle(server.address, scale.descriptors, within=1.5)
        figures.faults += 1
        try:
            _saturated(server, within=2.0)
            cpu = tree_cpu_percent(server.pid, 1.0)
            alive_saturated = server.running
        finally:
            close_all(held)
        recovered = server.running and served_again(server.address, "echo", 10.0, figures)
        figures.survived += recovered
        stderr = server.stderr_text()
    bursts = sum(1 for line in stderr.splitlines() if EXHAUSTION in line)
    figures.measure("connections", f"{len(held)} open, {failed} not")
    figures.measure("cpu saturated", f"{cpu:.1f}%")
    figures.measure("exhaustion logged", f"{bursts}x")
    figures.expect(alive_saturated, "the server died with its descriptors exhausted")
    figures.expect(cpu < CPU_LIMIT, f"{cpu:.0f}% CPU with descriptors exhausted (>= {CPU_LIMIT:g}%)")
    figures.expect(bursts <= processes, f"descriptor exhaustion logged {bursts} times in one "
                   f"burst by {processes} process(es)")
    figures.expect(recovered, "no normal client served after the connections closed")
    figures.expect(count_tracebacks(stderr) == 0, "traceback on stderr")
    _max_connections(model, scale, backlog, figures)
    return figures


def _max_connections(model: str, scale: Scale, backlog: str, figures: Figures) -> None:
    turned_away = scale.descriptors - MAX_CONNECTIONS
    with running(model, "echo", "--backlog", backlog,
                 "--max-connections", str(MAX_CONNECTIONS)) as server:
        # A multi-process model may count per process (reuseport: like worker_connections).
        processes = settled_family(server.pid)
        baseline = tree_fds(server.pid)
        held, _ = open_idle(server.address, scale.descriptors, within=1.5)
        figures.faults += 1
        try:
            # Turned away means closed at accept: once closes stop coming, that is all of them.
            closed = wait_for_eof(held, within=3.0, enough=turned_away, quiet=0.5)
            fds = tree_fds(server.pid)
        finally:
            close_all(held)
        # Once the server has let go of their sockets, the next client must not be turned away.
        deadline = time.monotonic() + 5.0
        while tree_fds(server.pid) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        _, first = probe(server.address, "echo", timeout=3.0)
        recovered = server.running and served_again(server.address, "echo", 10.0, figures)
        figures.survived += recovered
        stderr = server.stderr_text()
    logged = sum(1 for line in stderr.splitlines() if " rejected" in line)
    figures.measure(f"max-connections {MAX_CONNECTIONS}",
                    f"{len(held) - len(closed)} held, {len(closed)} turned away, "
                    f"{logged} logged, {fds} fds")
    figures.expect(recovered, "no normal client served after --max-connections turned some away")
    figures.expect(first is None, f"the first client after the others left was denied ({first}): "
                   "connections already closed still counted against --max-connections")
    figures.expect(count_tracebacks(stderr) == 0, "traceback on stderr (--max-connections)")
    if holds_up_to(model, MAX_CONNECTIONS):  # else the limit is moot: the others wait
        bound = MAX_CONNECTIONS * processes
        figures.expect(len(held) - len(closed) <= bound,
                       f"--max-connections {MAX_CONNECTIONS}: {len(held) - len(closed)} clients "
                       f"held by {processes} process(es)")
        figures.expect(len(closed) >= scale.descriptors - bound,
                       f"--max-connections {MAX_CONNECTIONS}: only {len(closed)} of "
                       f"{turned_away} extra clients turned away")
        figures.expect(logged >= len(closed), f"{len(closed)} clients turned away, {logged} logged")


# -- 6. faults ----------------------------------------------------------------------------

_SENDER = (
    "import socket, sys\n"
    "sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))\n"
    "block = (b'x' * 1023 + b'\\n') * 64\n"
    "sock.sendall(block)\n"
    "print('sending', flush=True)\n"
    "while True:\n"
    "    sock.sendall(block)\n"
)


def tcp_connections(proc: psutil.Process) -> list:
    """The process's TCP sockets (psutil >= 6 names it net_connections, before connections)."""
    method = getattr(proc, "net_connections", None) or proc.connections
    return method(kind="tcp")


def _holder(server_pid: int, port: int, client_port: int) -> int | None:
    """The PID of the process in the server's tree that holds our connection, if a child."""
    for proc in family_of(server_pid)[1:]:
        try:
            conns = tcp_connections(proc)
        except psutil.Error:
            continue
        for conn in conns:
            if conn.laddr and conn.laddr.port == port and conn.raddr \
                    and conn.raddr.port == client_port:
                return proc.pid
    return None


def check_faults(model: str, scale: Scale = REDUCED) -> Figures:
    """A client killed mid-transfer, a child killed mid-request, SIGTERM under load."""
    figures = Figures(model, "faults")
    with running(model, "upper") as server:
        _client_killed(server, figures)
        _child_killed(server, figures)
    _sigterm_under_load(model, figures)
    return figures


def _client_killed(server: ServerProcess, figures: Figures) -> None:
    argv = [sys.executable, "-c", _SENDER, server.host, str(server.port)]
    with ManagedProcess(argv) as client:
        client.wait_for_line(re.compile("^sending"), 10.0)
        time.sleep(0.2)  # let it fill the pipes: killed while sending, its replies unread
        client.signal(signal.SIGKILL)
        client.stop()
    figures.faults += 1
    ok = server.running and served_again(server.address, "upper", 10.0, figures)
    figures.survived += ok
    figures.measure("client killed", "served after" if ok else "NOT served after")
    figures.expect(ok, "not serving after a client was killed mid-transfer")


def _child_killed(server: ServerProcess, figures: Figures) -> None:
    with connect(server.address, timeout=5) as sock:
        sock.sendall(b"half a request")  # mid-request: no newline yet
        client_port = sock.getsockname()[1]
        holder = None
        deadline = time.monotonic() + 3.0
        while holder is None and time.monotonic() < deadline:
            holder = _holder(server.pid, server.port, client_port)
            if holder is None:
                if len(family_of(server.pid)) < 2 and time.monotonic() > deadline - 2.5:
                    break  # no child processes at all: threads or one loop serve it
                time.sleep(0.05)
        if holder is None:
            figures.measure("child killed", "n/a (no child holds a connection)")
            return
        os.kill(holder, signal.SIGKILL)  # our server's own child, found by its connection
        figures.faults += 1
        figures.expected_denial = "the killed child's own client loses its request"
        sock.settimeout(5)
        _, kind = read_up_to(sock, 1)
    figures.deny(kind or "other")  # the killed request: its client sees the connection go
    ok = server.running and served_again(server.address, "upper", 10.0, figures)
    reaped = False
    deadline = time.monotonic() + 5.0
    while not reaped and time.monotonic() < deadline:
        try:
            psutil.Process(holder).status()  # a zombie still exists: not reaped yet
        except psutil.NoSuchProcess:
            reaped = True
        if not reaped:
            time.sleep(0.05)
    figures.survived += ok
    figures.measure("child killed", f"client saw {kind}; parent {'serves' if ok else 'STOPPED'}"
                    f", child {'reaped' if reaped else 'NOT reaped'}")
    figures.expect(ok, "the parent stopped serving after a child was killed mid-request")
    figures.expect(reaped, "the killed child was not reaped within 5 s")


def _sigterm_under_load(model: str, figures: Figures) -> None:
    with running(model, "upper", "--delay", "0.05") as server:
        stop = threading.Event()
        done = Counter[str]()
        lock = threading.Lock()

        def load(number: int) -> None:
            rnd = random.Random(number)
            for _ in range(10_000):
                if stop.is_set():
                    return
                payload = rnd.randbytes(rnd.randint(1, 256 * 1024)).replace(b"\n", b"") + b"\n"
                latency, kind = probe(server.address, "upper", timeout=5.0, payload=payload)
                with lock:
                    done["ok" if kind is None else kind] += 1

        threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(6)]
        idle: list[tuple[socket.socket, float]] = []
        try:
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 5.0
            while done["ok"] < 10 and time.monotonic() < deadline:
                time.sleep(0.02)
            idle, _ = open_idle(server.address, 10, within=1.0)  # held open through SIGTERM
            family = {proc.pid for proc in family_of(server.pid)}
            figures.faults += 1
            started = time.monotonic()
            server.signal(signal.SIGTERM)
            try:
                status: int | None = server.popen.wait(EXIT_LIMIT + 5)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: reported below
                status = None
            took = time.monotonic() - started
            survivors = sorted(set(group_survivors(server.pid)) | {
                pid for pid in family - {server.pid}
                if psutil.pid_exists(pid) and _alive(pid)})
        finally:
            stop.set()
            close_all(idle)
            for thread in threads:
                thread.join(10)
        stderr = server.stderr_text()
    clean = status == 0 and took < EXIT_LIMIT and not survivors and not count_tracebacks(stderr)
    figures.survived += clean
    figures.exchanges += done["ok"]
    figures.measure("sigterm", f"exit {status} in {took:.2f}s, {len(survivors)} orphans, "
                    f"{done['ok']} exchanges before")
    figures.expect(status == 0, f"exit status {status} after SIGTERM under load")
    figures.expect(took < EXIT_LIMIT, f"took {took:.1f}s to exit after SIGTERM")
    figures.expect(not survivors, f"processes left behind after SIGTERM: {survivors}")
    figures.expect(count_tracebacks(stderr) == 0, "traceback on stderr at SIGTERM")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# -- 7. bad input -------------------------------------------------------------------------

def _rst(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def _case_exchange(payload: bytes, pieces: int = 1) -> Callable[[tuple[str, int], Figures], None]:
    def case(address: tuple[str, int], figures: Figures) -> None:
        rnd = random.Random(len(payload))
        chunks = cut(rnd, payload) if pieces > 1 else [payload]
        with connect(address, timeout=20) as sock:
            reply, kind = stream_exchange(sock, chunks, final=True)
        tally(figures, payload.upper(), reply, kind)
    return case


def _case_empty(address: tuple[str, int], figures: Figures) -> None:
    connect(address, timeout=5).close()


def _case_reset_immediately(address: tuple[str, int], figures: Figures) -> None:
    _rst(connect(address, timeout=5))


def _case_reset_mid_request(address: tuple[str, int], figures: Figures) -> None:
    sock = connect(address, timeout=5)
    sock.sendall(b"half a requ")
    _rst(sock)


def _case_half_close(address: tuple[str, int], figures: Figures) -> None:
    _case_exchange(b"one\ntwo\nno newline")(address, figures)


def _case_abandon_big_reply(address: tuple[str, int], figures: Figures) -> None:
    """10 MiB with no newline, then gone without reading: the server's sends fail."""
    sock = connect(address, timeout=5)
    sock.setblocking(False)
    with suppress(OSError):
        pump(sock, b"z" * MiB, 10 * MiB, stall=0.3, time_limit=5.0)
    _rst(sock)


MALFORMED: dict[str, Callable[[tuple[str, int], Figures], None]] = {
    "empty connection": _case_empty,
    "reset at once": _case_reset_immediately,
    "reset mid-request": _case_reset_mid_request,
    "half-close": _case_half_close,
    "invalid utf-8": _case_exchange(b"\xff\xfe\xc3\x28\xa0\xa1 \xed\xa0\x80 \xf8\x88\x80\x80\x80\n"),
    "nul bytes": _case_exchange(b"\x00" * 4096 + b"abc\x00\n\x00"),
    "10 MiB line, no newline": _case_exchange(b"y" * (10 * MiB), pieces=2),
    "10 MiB unread, reset": _case_abandon_big_reply,
}


def check_bad_input(model: str, scale: Scale = REDUCED, seed: int | None = None) -> Figures:
    """Malformed connections and random byte strings: 0 crashes, 0 tracebacks, still serving."""
    figures = Figures(model, "bad input")
    seed = random.randrange(2**32) if seed is None else seed
    figures.measure("seed", str(seed))
    with running(model, "upper") as server:
        for name, case in MALFORMED.items():
            figures.faults += 1
            try:
                case(server.address, figures)
            except OSError as exc:
                figures.deny(classify(exc))
            ok = server.running and served_again(server.address, "upper", 10.0, figures)
            figures.survived += ok
            figures.expect(ok, f"not serving after: {name}")
        strings, abnormal = _fuzz(server.address, scale.fuzz, seed, figures)
        ok = server.running and served_again(server.address, "upper", 10.0, figures)
        figures.faults += abnormal
        figures.survived += abnormal if ok else 0
        figures.expect(ok, "not serving after the fuzzing")
        stderr = server.stderr_text()
        crashed = not server.running
    if serves_udp(model):
        _udp_bad_input(model, seed, figures)
    tracebacks = count_tracebacks(stderr)
    unexpected = count_handler_errors(stderr)
    figures.measure("fuzzed strings", str(strings))
    figures.measure("tracebacks", str(tracebacks))
    figures.expect(not crashed, "the server crashed")
    figures.expect(tracebacks == 0, f"{tracebacks} tracebacks on stderr")
    figures.expect(unexpected == 0, f"{unexpected} unexpected errors logged by handlers")
    figures.expect(figures.bytes_lost == 0, f"{figures.bytes_lost} bytes lost or altered")
    figures.expect(strings >= scale.fuzz, f"only {strings} of {scale.fuzz} strings sent in time")
    return figures


def _fuzz(address: tuple[str, int], count: int, seed: int, figures: Figures,
          time_limit: float = 20.0, clients: int = 4) -> tuple[int, int]:
    """Random byte strings, 1-20 per connection, each its own write; a connection ends by
    half-close and a verified reply (70%), a reset (15%) or leaving without reading (15%).

    Returns the strings sent and the connections that ended abnormally (faults).
    """
    lock = threading.Lock()
    left = [count]
    sent = [0]
    abnormal = [0]
    deadline = time.monotonic() + time_limit

    def worker(number: int) -> None:
        rnd = random.Random(seed * 100 + number)
        while time.monotonic() < deadline:
            with lock:
                batch = min(left[0], rnd.randint(1, 20))
                left[0] -= batch
            if not batch:
                return
            strings = [rnd.randbytes(min(4096, int(2 ** (rnd.random() * 12))))
                       for _ in range(batch)]
            ending = rnd.random()
            try:
                sock = connect(address, timeout=10)
            except OSError as exc:
                with lock:
                    figures.deny(classify(exc, connecting=True))
                continue
            with sock:
                if ending < 0.7:
                    reply, kind = stream_exchange(sock, strings, final=True)
                    with lock:
                        tally(figures, b"".join(strings).upper(), reply, kind)
                else:
                    with suppress(OSError):
                        for piece in strings:
                            sock.sendall(piece)
                    with lock:
                        abnormal[0] += 1
                    if ending < 0.85:
                        _rst(sock)
            with lock:
                sent[0] += batch

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.1, deadline + 15 - time.monotonic()))
    return sent[0], abnormal[0]


def _udp_bad_input(model: str, seed: int, figures: Figures) -> None:
    """Zero-length, 1-byte, largest and random datagrams; senders gone before the reply."""
    rnd = random.Random(seed)
    with running(model, "upper", udp=True) as server:
        for _ in range(20):  # fire and forget: the replies go to closed ports
            with socket.socket(_family(server.host), socket.SOCK_DGRAM) as gone:
                gone.sendto(rnd.randbytes(rnd.randint(0, 2048)), server.address)
            figures.faults += 1
        answered = 0
        with UDPClient(*server.address, expect="upper", timeout=2.0, retries=2) as client:
            for payload in (b"", b"\x00", b"\xff" * MAX_UDP_PAYLOAD,
                            *(rnd.randbytes(rnd.randint(0, 4096)) for _ in range(20))):
                try:
                    client.exchange(payload)
                    figures.served(len(payload))
                    answered += 1
                except ExchangeError as exc:
                    figures.deny(exc.kind)
                    figures.bytes_lost += len(payload)
        figures.survived += 20 if server.running and answered else 0
        stderr = server.stderr_text()
        figures.expect(server.running, "the UDP server crashed")
        figures.expect(count_tracebacks(stderr) == 0, "traceback on the UDP server's stderr")


# -- the command --------------------------------------------------------------------------

CHECKS: dict[str, Callable[..., Figures]] = {
    "integrity": check_integrity,
    "properties": check_properties,
    "slowloris": check_slowloris,
    "non-reader": check_nonreader,
    "descriptors": check_descriptors,
    "faults": check_faults,
    "bad-input": check_bad_input,
}


def run_check(name: str, model: str, scale: Scale) -> Figures:
    """Run one check; a check that breaks down is itself a problem in the figures."""
    started = time.monotonic()
    try:
        figures = CHECKS[name](model, scale)
    except Exception as exc:  # noqa: BLE001 - reported in the table, not a traceback
        figures = Figures(model, name)
        figures.problems.append(f"check broke down: {type(exc).__name__}: {exc}"[:300])
    figures.seconds = time.monotonic() - started
    return figures


def denied_text(figures: Figures) -> str:
    if not figures.denied:
        return "-"
    text = ", ".join(f"{kind} {count}" for kind, count in figures.denied.most_common())
    return f"{text} (expected: {figures.expected_denial})" if figures.expected_denial else text


def detail_line(figures: Figures) -> str:
    measures = "; ".join(f"{k} {v}" for k, v in figures.measures.items() if k != "seed")
    verdict = "ok" if not figures.problems else "FAIL: " + "; ".join(figures.problems)
    return (f"  {figures.check:<12} {figures.exchanges:>6} ex {_size(figures.bytes_verified):>9}"
            f"  faults {figures.survived}/{figures.faults}  denied {denied_text(figures)}"
            f"  [{measures}]  {figures.seconds:.1f}s  {verdict}")


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return str(count)


def summary_table(results: dict[str, list[Figures]]) -> str:
    """One row per model: what was checked, what it withstood, what it denied and how."""
    headers = ("model", "exchanges", "bytes verified", "lost", "faults survived",
               "denied (by failure class)", "problems")
    rows = []
    for model, figures in results.items():
        denied = [f"{f.check}: {denied_text(f)}" for f in figures if f.denied]
        rows.append((model, str(sum(f.exchanges for f in figures)),
                     _size(sum(f.bytes_verified for f in figures)),
                     str(sum(f.bytes_lost for f in figures)),
                     f"{sum(f.survived for f in figures)}/{sum(f.faults for f in figures)}",
                     "; ".join(denied) or "-",
                     str(sum(len(f.problems) for f in figures))))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    widths[5] = min(widths[5], 200)
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="testbed resilience",
        description="Attack every model on loopback (integrity, properties, slowloris, "
        "non-reader, descriptor exhaustion, faults, bad input) and print what each "
        "withstood. Exit status 1 if any model missed a threshold of issue 6.")
    parser.add_argument("--models", nargs="+", metavar="MODEL", default=None,
                        help="models to attack (default: every registered model)")
    parser.add_argument("--checks", nargs="+", metavar="CHECK", default=None,
                        help=f"checks to run: {', '.join(CHECKS)} (default: all)")
    parser.add_argument("--full", action="store_true",
                        help="the issue's full figures (2,000 exchanges, 10,000 fuzz strings, "
                        "5 s of slowloris...) instead of the reduced CI form")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    known = registry.model_names()
    models = args.models or known
    for name in models:
        if name not in known:
            parser.error(f"unknown model {name!r} (choose from {', '.join(known)})")
    checks = args.checks or list(CHECKS)
    for name in checks:
        if name not in CHECKS:
            parser.error(f"unknown check {name!r} (choose from {', '.join(CHECKS)})")
    scale = FULL if args.full else REDUCED
    print(f"resilience ({scale.name} form): {', '.join(models)}; checks: {', '.join(checks)}",
          flush=True)
    results: dict[str, list[Figures]] = {}
    for model in models:
        print(f"{model}:", flush=True)
        for check in checks:
            figures = run_check(check, model, scale)
            results.setdefault(model, []).append(figures)
            print(detail_line(figures), flush=True)
    print()
    print(summary_table(results))
    problems = sum(len(f.problems) for figures in results.values() for f in figures)
    if problems:
        print(f"\n{problems} problem(s): see FAIL above", flush=True)
    return 1 if problems else 0
