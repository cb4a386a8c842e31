"""``testbed nc``: netcat semantics, side by side with the real netcat-openbsd, and interop.

Every process runs in its own session and is killed (by its pid's group) and reaped at
teardown. Where netcat-openbsd and ``testbed nc`` should behave the same, the test runs
against both (the ``openbsd`` cases need the real ``nc`` and are marked interop).
"""

from __future__ import annotations

import hashlib
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psutil
import pytest

from clients.harness import EXPECTED
from servers import registry
from tests.conftest import no_traceback, require_tool
from tests.test_safety import ROOT

TESTBED_NC = [sys.executable, "-m", "testbed", "nc"]
READY = re.compile(rb"(?:Listening on|Bound on) (\S+) (\d+)\n")
SOCAT_READY = re.compile(rb"listening on .*:(\d+)\s*\n")
BINARY = bytes(range(256)) * 4 + b"\r\n\x00end\n"  # every byte value, CR, LF, NUL

BOTH = ["testbed", pytest.param("openbsd", marks=pytest.mark.interop)]


# -- processes ---------------------------------------------------------------------------

@dataclass
class Proc:
    """A child with pipes on stdin, stdout and stderr; reads are bounded in time."""

    popen: subprocess.Popen

    def write(self, data: bytes) -> threading.Thread:
        """Write in the background: a full pipe must not block the test."""
        def feed() -> None:
            try:
                self.popen.stdin.write(data)
                self.popen.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass
        thread = threading.Thread(target=feed, daemon=True)
        thread.start()
        return thread

    def close_stdin(self) -> None:
        try:
            self.popen.stdin.close()
        except BrokenPipeError:
            pass

    def read(self, size: int, timeout: float = 10) -> bytes:
        """Exactly ``size`` bytes of stdout, or fewer if it ends or time runs out."""
        return _read(self.popen.stdout.fileno(), size, timeout)

    def read_until(self, pattern: re.Pattern[bytes], timeout: float = 10) -> re.Match[bytes]:
        """stderr until ``pattern`` matches (the ready line of a listener)."""
        fd, seen = self.popen.stderr.fileno(), b""
        deadline = time.monotonic() + timeout
        while not (match := pattern.search(seen)):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                pytest.fail(f"no {pattern.pattern!r} on stderr in {timeout}s: {seen!r}")
            chunk = os.read(fd, 4096)
            if not chunk:
                pytest.fail(f"exited before {pattern.pattern!r}: {seen!r}")
            seen += chunk
        return match

    def wait(self, timeout: float = 10) -> tuple[int, bytes, bytes]:
        """Exit status, the rest of stdout and the rest of stderr (stdin is left as it is)."""
        deadline = time.monotonic() + timeout
        out = _read(self.popen.stdout.fileno(), 1 << 30, timeout)
        err = _read(self.popen.stderr.fileno(), 1 << 30, max(0.1, deadline - time.monotonic()))
        return self.popen.wait(max(0.1, deadline - time.monotonic())), out, err


def _read(fd: int, size: int, timeout: float) -> bytes:
    data = bytearray()
    deadline = time.monotonic() + timeout
    while len(data) < size:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, min(size - len(data), 1 << 16))
        if not chunk:
            break
        data += chunk
    return bytes(data)


@pytest.fixture
def spawn() -> Iterator[Callable[..., Proc]]:
    """Start processes in their own sessions; kill each group and reap it at teardown."""
    started: list[subprocess.Popen] = []

    def start(argv: list[str]) -> Proc:
        popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, cwd=ROOT, start_new_session=True)
        started.append(popen)
        return Proc(popen)

    yield start
    for popen in started:
        if popen.poll() is None:
            try:
                os.killpg(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        popen.wait(10)
        for stream in (popen.stdin, popen.stdout, popen.stderr):
            try:
                stream.close()
            except BrokenPipeError:
                pass


def netcat(which: str) -> list[str]:
    return TESTBED_NC if which == "testbed" else [require_tool("nc")]


def run_nc(args: list[str], stdin: bytes = b"", timeout: float = 15,
           which: str = "testbed") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*netcat(which), *args], input=stdin, capture_output=True,
                          timeout=timeout, cwd=ROOT)


def closed_port(kind: int = socket.SOCK_STREAM) -> Iterator[int]:
    """A port bound but not listening: connects are refused, nobody else can take it."""
    with socket.socket(socket.AF_INET, kind) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        yield placeholder.getsockname()[1]


@pytest.fixture
def refused_port() -> Iterator[int]:
    yield from closed_port()


class OneShot:
    """A TCP server thread on 127.0.0.1 for one connection, running ``handler(conn)``."""

    def __init__(self, handler: Callable[[socket.socket], object], host: str = "127.0.0.1"):
        self.listener = socket.create_server((host, 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.result: object = None
        self.peer: tuple | None = None
        self.thread = threading.Thread(target=self._run, args=(handler,), daemon=True)
        self.thread.start()

    def _run(self, handler: Callable[[socket.socket], object]) -> None:
        try:
            conn, self.peer = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            self.result = handler(conn)

    def join(self) -> object:
        self.thread.join(15)
        self.listener.close()
        return self.result


@pytest.fixture
def one_shot() -> Iterator[Callable[..., OneShot]]:
    servers: list[OneShot] = []

    def start(handler: Callable[[socket.socket], object]) -> OneShot:
        servers.append(OneShot(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.join()


def saw_eof_within(conn: socket.socket, seconds: float) -> bool:
    """Read until EOF or ``seconds`` pass; True if the peer shut its write side down."""
    conn.settimeout(seconds)
    try:
        while conn.recv(65536):
            pass
    except TimeoutError:
        return False
    return True


# -- talking to testbed servers ---------------------------------------------------------

@pytest.mark.parametrize("service", registry.line_services())
def test_binary_round_trip_through_a_server(serve, service):
    server = serve("threading", service, "--quiet")
    result = run_nc(["-N", server.host, str(server.port)], stdin=BINARY)
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED[service](BINARY)
    assert result.stderr == b""


def test_python_m_clients_nc(serve):
    server = serve("select", "upper", "--quiet")
    result = subprocess.run([sys.executable, "-m", "clients.nc", "-N", server.host,
                             str(server.port)], input=b"as a module\n", capture_output=True,
                            timeout=15, cwd=ROOT)
    assert (result.returncode, result.stdout) == (0, b"AS A MODULE\n"), result.stderr


def test_ipv6_loopback(serve):
    server = serve("select", "echo", "--host", "::1", "--quiet")
    assert server.host == "::1"
    result = run_nc(["-6", "-N", "::1", str(server.port)], stdin=BINARY)
    assert (result.returncode, result.stdout) == (0, BINARY), result.stderr


def test_udp_to_a_server(serve):
    server = serve("threading", "upper", "--quiet", udp=True)
    result = run_nc(["-u", "-q", "1", server.host, str(server.port)], stdin=b"datagram \xff\n")
    assert (result.returncode, result.stdout) == (0, b"DATAGRAM \xff\n"), result.stderr


def test_hundred_mib_pipe_in_constant_memory(serve, spawn):
    """100 MiB through nc to an echo server and back, checked by hash; nc's RSS stays small."""
    server = serve("select", "echo", "--quiet")
    nc = spawn([*TESTBED_NC, "-N", server.host, str(server.port)])
    block, blocks = os.urandom(1 << 16), 1600  # 100 MiB
    sent = hashlib.sha256()

    def feed() -> None:
        for _ in range(blocks):
            nc.popen.stdin.write(block)
            sent.update(block)
        nc.popen.stdin.close()

    peak = 0
    process = psutil.Process(nc.popen.pid)
    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    received, got = hashlib.sha256(), 0
    fd = nc.popen.stdout.fileno()
    deadline = time.monotonic() + 25
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 1)[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            received.update(chunk)
            got += len(chunk)
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    writer.join(5)
    status, _, err = nc.wait()
    assert got == blocks * len(block), f"got {got} bytes"
    assert received.digest() == sent.digest()
    assert status == 0, err
    assert peak < 64 * 1024 * 1024, f"nc peaked at {peak / 2**20:.0f} MiB"


# -- end of stdin, timeouts, errors -----------------------------------------------------

def _late_reply(conn: socket.socket) -> bool:
    """Read the request; note whether EOF follows within 1 s; then answer late and close."""
    assert conn.recv(100) == b"hi\n"
    eof = saw_eof_within(conn, 1.0)
    conn.sendall(b"late\n")
    return eof


@pytest.mark.parametrize("which", BOTH)
def test_stdin_eof_without_N_keeps_reading_until_the_peer_closes(one_shot, which):
    server = one_shot(_late_reply)
    result = run_nc(["127.0.0.1", str(server.port)], stdin=b"hi\n", which=which)
    assert server.join() is False  # nc did not shut its write side down
    assert (result.returncode, result.stdout) == (0, b"late\n"), result.stderr


@pytest.mark.parametrize("which", BOTH)
def test_N_shuts_down_the_write_side_then_reads_the_rest(one_shot, which):
    server = one_shot(_late_reply)
    result = run_nc(["-N", "127.0.0.1", str(server.port)], stdin=b"hi\n", which=which)
    assert server.join() is True
    assert (result.returncode, result.stdout) == (0, b"late\n"), result.stderr


def test_q_quits_after_eof_even_if_the_peer_stays(one_shot):
    release = threading.Event()

    def hold(conn: socket.socket) -> bool:
        conn.recv(100)
        eof = saw_eof_within(conn, 5)
        release.wait(15)  # keep the connection open past nc's quit timer
        return eof

    server = one_shot(hold)
    started = time.monotonic()
    result = run_nc(["-q", "1", "127.0.0.1", str(server.port)], stdin=b"bye\n")
    elapsed = time.monotonic() - started
    release.set()
    assert server.join() is True  # -q shuts the write side down at EOF, as Debian's netcat
    assert result.returncode == 0, result.stderr
    assert 0.9 <= elapsed < 10


def test_w_quits_an_idle_connection(one_shot, spawn):
    release = threading.Event()
    server = one_shot(lambda conn: release.wait(15))
    nc = spawn([*TESTBED_NC, "-w", "1", "127.0.0.1", str(server.port)])  # stdin stays open
    started = time.monotonic()
    status, _, err = nc.wait(10)
    release.set()
    assert status == 0, err
    assert 0.9 <= time.monotonic() - started < 10


@pytest.mark.parametrize("which", BOTH)
def test_refused_in_netcats_words(refused_port, which):
    result = run_nc(["-v", "127.0.0.1", str(refused_port)], which=which)
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"nc: connect to 127.0.0.1 port {refused_port} (tcp) failed: Connection refused\n")


def test_refused_is_reported_even_without_v(refused_port):
    result = run_nc(["127.0.0.1", str(refused_port)])
    assert result.returncode == 1
    assert result.stderr.decode() == (
        f"nc: connect to 127.0.0.1 port {refused_port} (tcp) failed: Connection refused\n")


def test_reset_by_the_peer_is_an_error(one_shot):
    def reset(conn: socket.socket) -> None:
        conn.recv(100)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    server = one_shot(reset)
    result = run_nc(["127.0.0.1", str(server.port)], stdin=b"x\n")
    server.join()
    assert result.returncode == 1
    assert result.stderr == b"nc: read failed: Connection reset by peer\n"


def test_source_address_and_port(one_shot):
    with socket.socket() as probe:  # a free port to connect from
        probe.bind(("127.0.0.1", 0))
        source_port = probe.getsockname()[1]
    server = one_shot(lambda conn: conn.sendall(conn.recv(100)))
    result = run_nc(["-N", "-s", "127.0.0.1", "-p", str(source_port), "127.0.0.1",
                     str(server.port)], stdin=b"from a fixed port\n")
    server.join()
    assert (result.returncode, result.stdout) == (0, b"from a fixed port\n"), result.stderr
    assert server.peer == ("127.0.0.1", source_port)


@pytest.mark.parametrize(("args", "message"), [
    (["-n", "localhost", "80"],
     'nc: getaddrinfo for host "localhost" port 80: Name or service not known'),
    (["-6", "127.0.0.1", "80"],
     'nc: getaddrinfo for host "127.0.0.1" port 80: Address family for hostname not supported'),
    (["-s", "192.0.2.1", "127.0.0.1", "80"], "nc: bind failed: Cannot assign requested address"),
    (["-Y", "127.0.0.1", "80"], "nc: invalid option -- 'Y'"),
    (["-w"], "nc: option requires an argument -- 'w'"),
    (["-w", "abc", "127.0.0.1", "80"], "nc: timeout invalid: abc"),
    (["-k", "127.0.0.1", "80"], "nc: must use -l with -k"),
    (["-l", "-z", "80"], "nc: cannot use -z and -l"),
    (["127.0.0.1"], "nc: missing port number"),
    (["-l"], "nc: missing port number"),
    (["127.0.0.1", "70000"], "nc: port number too large: 70000"),
    (["127.0.0.1", "no-such-service"], "nc: port number invalid: no-such-service"),
])
def test_bad_input_is_one_line_and_status_1(args, message):
    result = run_nc(args)
    assert result.returncode == 1
    assert result.stderr.decode() == message + "\n"
    no_traceback(result.stderr.decode())


# -- scanning ----------------------------------------------------------------------------

def _candidate_bases() -> list[int]:
    """Starts of ten-port ranges outside the ephemeral range, where load tests leave
    thousands of TIME_WAIT sockets that make bind() fail."""
    try:
        low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    below = list(range(max(1024, low - 12000), low - 10, 397))
    above = list(range(high + 1, 65525, 397))
    return below + above


@pytest.fixture
def ten_ports() -> Iterator[tuple[int, list[socket.socket]]]:
    """Ten consecutive ports on 127.0.0.1, all bound (so refused) and held by the test."""
    for base in _candidate_bases():
        held: list[socket.socket] = []
        try:
            for port in range(base, base + 10):
                sock = socket.socket()
                held.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            for sock in held:
                sock.close()
            continue
        yield base, held
        for sock in held:
            sock.close()
        return
    pytest.skip("no ten consecutive free ports")


@pytest.mark.parametrize("which", BOTH)
def test_z_finds_the_one_open_port_in_a_range_of_ten(ten_ports, which):
    base, held = ten_ports
    held[6].listen()
    span = f"{base}-{base + 9}"
    result = run_nc(["-zv", "127.0.0.1", span], which=which)
    assert result.returncode == 0
    lines = result.stderr.decode().splitlines()
    opened = [line for line in lines if line.endswith("succeeded!")]
    assert len(opened) == 1 and opened[0].startswith(f"Connection to 127.0.0.1 {base + 6} port [tcp/")
    assert [line for line in lines if line not in opened] == [
        f"nc: connect to 127.0.0.1 port {port} (tcp) failed: Connection refused"
        for port in range(base, base + 10) if port != base + 6]
    quiet = run_nc(["-z", "127.0.0.1", span], which=which)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, b"", b"")


def test_z_with_every_port_closed_is_status_1(ten_ports):
    base, _ = ten_ports
    result = run_nc(["-z", "127.0.0.1", f"{base}-{base + 9}"])
    assert (result.returncode, result.stderr) == (1, b"")


@pytest.mark.interop
def test_z_scan_matches_netcat_word_for_word(ten_ports):
    base, held = ten_ports
    held[0].listen()
    held[9].listen()
    ports = [f"{base}-{base + 4}", str(base + 9)]  # a range and a single port
    ours = run_nc(["-zv", "127.0.0.1", *ports])
    theirs = run_nc(["-zv", "127.0.0.1", *ports], which="openbsd")
    assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr)


def test_z_udp(serve):
    server = serve("threading", "echo", "--quiet", udp=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        closed = placeholder.getsockname()[1]
        placeholder.close()
        result = run_nc(["-zuv", "127.0.0.1", str(server.port), str(closed)])
    assert result.returncode == 0
    assert result.stderr.decode().splitlines() == [
        f"Connection to 127.0.0.1 {server.port} port [udp/*] succeeded!",
        f"nc: connect to 127.0.0.1 port {closed} (udp) failed: Connection refused"]


# -- listening ---------------------------------------------------------------------------

def listen(spawn: Callable[..., Proc], *args: str) -> tuple[Proc, int]:
    """``testbed nc -l -v -n ARGS`` on port 0; returns it and the port it announced."""
    nc = spawn([*TESTBED_NC, "-l", "-v", "-n", *args])
    return nc, int(nc.read_until(READY)[2])


def test_listen_serves_one_client_then_exits(spawn):
    nc, port = listen(spawn, "127.0.0.1", "0")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        nc.write(b"from the listener\n")
        assert _read(client.fileno(), 18, 10) == b"from the listener\n"
        client.sendall(BINARY)
        client.shutdown(socket.SHUT_WR)
        assert nc.read(len(BINARY)) == BINARY
        status, _, err = nc.wait()
    assert status == 0, err
    assert re.search(rb"^Connection received on 127\.0\.0\.1 \d+$", err, re.M), err


def test_listen_default_is_loopback_and_p_names_the_port(spawn):
    nc = spawn([*TESTBED_NC, "-l", "-v", "-n", "-p", "0"])
    host, port = nc.read_until(READY).groups()
    assert host == b"127.0.0.1"
    with socket.create_connection(("127.0.0.1", int(port)), timeout=10) as client:
        client.sendall(b"hello\n")
        assert nc.read(6) == b"hello\n"


def test_k_keeps_listening_for_one_client_after_another(spawn):
    nc, port = listen(spawn, "-k", "127.0.0.1", "0")
    for n in range(3):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            client.sendall(b"client %d\n" % n)
            assert nc.read(9) == b"client %d\n" % n
    assert nc.popen.poll() is None  # still listening


@pytest.mark.parametrize("which", BOTH)
def test_udp_listener_learns_its_peer_from_the_first_datagram(spawn, which):
    nc = spawn([*netcat(which), "-u", "-l", "-v", "-n", "127.0.0.1", "0"])
    port = int(nc.read_until(READY)[2])
    first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with first, other:
        first.settimeout(10)
        first.sendto(b"one\n", ("127.0.0.1", port))
        assert nc.read(4) == b"one\n"
        nc.write(b"reply\n")
        assert first.recvfrom(100) == (b"reply\n", ("127.0.0.1", port))
        other.sendto(b"intruder\n", ("127.0.0.1", port))  # not the peer: filtered out
        first.sendto(b"two\n", ("127.0.0.1", port))
        assert nc.read(4) == b"two\n"
        assert nc.read(1, timeout=0.5) == b""


# -- interop with the real netcat and socat, both ways -----------------------------------

def their_listener(tool: str, udp: bool, v6: bool) -> tuple[list[str], re.Pattern[bytes]]:
    host = "::1" if v6 else "127.0.0.1"
    if tool == "nc":
        return ([require_tool("nc"), "-l", "-n", "-v", *(["-u"] if udp else []),
                 *(["-6"] if v6 else []), host, "0"], READY)
    bind = "[::1]" if v6 else host
    address = f"{'UDP' if udp else 'TCP'}{'6' if v6 else ''}-LISTEN:0,bind={bind}"
    return [require_tool("socat"), "-d", "-d", address, "STDIO"], SOCAT_READY


def their_client(tool: str, udp: bool, v6: bool, port: int) -> list[str]:
    if tool == "nc":
        return [require_tool("nc"), *(["-u"] if udp else ["-N"]), *(["-6"] if v6 else []),
                "::1" if v6 else "127.0.0.1", str(port)]
    host = "[::1]" if v6 else "127.0.0.1"
    return [require_tool("socat"), "STDIO", f"{'UDP' if udp else 'TCP'}{'6' if v6 else ''}:"
            f"{host}:{port}"]


def converse(client: Proc, server: Proc, udp: bool) -> None:
    """Both ways, binary: the client speaks first (a UDP listener learns its peer so)."""
    if udp:
        ask, answer = BINARY[:700], BINARY[700:]  # one datagram each way
        client.write(ask).join(5)
        assert server.read(len(ask)) == ask
        server.write(answer).join(5)
        assert client.read(len(answer)) == answer
        return
    ask, answer = os.urandom(300_000) + BINARY, os.urandom(200_000) + BINARY
    writers = [client.write(ask), server.write(answer)]
    got: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda: got.__setitem__("server", server.read(len(ask)))),
               threading.Thread(target=lambda: got.__setitem__("client", client.read(len(answer))))]
    for thread in readers:
        thread.start()
    for thread in readers + writers:
        thread.join(15)
    assert got["server"] == ask
    assert got["client"] == answer


INTEROP = [pytest.param(tool, udp, v6, id=f"{tool}-{'udp' if udp else 'tcp'}-{'ipv6' if v6 else 'ipv4'}",
                        marks=pytest.mark.interop)
           for tool in ("nc", "socat") for udp in (False, True) for v6 in (False, True)]


@pytest.mark.parametrize(("tool", "udp", "v6"), INTEROP)
def test_testbed_nc_to_their_listener(spawn, tool, udp, v6):
    argv, ready = their_listener(tool, udp, v6)
    theirs = spawn(argv)
    port = int(theirs.read_until(ready).groups()[-1])
    ours = spawn([*TESTBED_NC, *(["-u", "-q", "0"] if udp else ["-N"]), *(["-6"] if v6 else []),
                  "::1" if v6 else "127.0.0.1", str(port)])
    converse(ours, theirs, udp)
    ours.close_stdin()
    status, _, err = ours.wait()
    assert status == 0, err
    if not udp:  # their listener saw our EOF and finished too
        assert theirs.wait()[0] == 0


@pytest.mark.parametrize(("tool", "udp", "v6"), INTEROP)
def test_their_client_to_testbed_nc_listening(spawn, tool, udp, v6):
    ours = spawn([*TESTBED_NC, "-l", "-v", "-n", *(["-u", "-q", "0"] if udp else []),
                  *(["-6"] if v6 else []), "0"])
    port = int(ours.read_until(READY)[2])
    theirs = spawn(their_client(tool, udp, v6, port))
    converse(theirs, ours, udp)
    theirs.close_stdin()
    if udp:
        ours.close_stdin()  # -q 0: we quit at EOF on stdin
    status, _, err = ours.wait()
    assert status == 0, err
    if not udp:
        assert theirs.wait()[0] == 0
