"""SNTP both sides: the sntp service against chronyd -Q, testbed sntp against chronyd serving.

chronyd runs with -x (never touches the clock), its own config, pid and drift files in
a temporary directory, on a port of its own on loopback, and is reaped by its PID;
a system chronyd, if any, is neither used nor disturbed.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients import packets
from servers.services.sntp import SERVICE
from testbed.processes import ManagedProcess
from tests.conftest import UDP_MODELS, no_traceback, one_line, require_root, require_tool

SNTP = [sys.executable, "-m", "testbed", "sntp"]


def run_sntp(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SNTP, *args], capture_output=True, text=True, timeout=20)


def request() -> tuple[bytes, int]:
    transmit = packets.to_ntp(time.time())
    return packets.sntp_request(transmit), transmit


def exchange(address: tuple[str, int], data: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(data, address)
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the service, sans I/O --------------------------------------------------------------

def test_service_answers_a_request_from_the_clock():
    data, transmit = request()
    before = time.time()
    reply = packets.check_sntp_reply(SERVICE.datagram(data), transmit)
    assert reply.mode == packets.MODE_SERVER and reply.stratum == 1
    assert reply.refid_text == "LOCL"
    assert before - 1 < packets.from_ntp(reply.transmit) < time.time() + 1


@pytest.mark.parametrize("data", [b"", b"\x1b" * 47, bytes([0x24]) + bytes(47),  # mode 4
                                  bytes([0x3b]) + bytes(47)],  # version 7
                         ids=["empty", "47 bytes", "server mode", "version 7"])
def test_service_ignores_what_is_not_a_request(data):
    assert SERVICE.datagram(data) is None


def test_service_options_stratum_refid_offset():
    service = SERVICE.configure({"sntp_stratum": 3, "sntp_refid": "192.0.2.1", "sntp_offset": 5.0})
    data, transmit = request()
    reply = packets.check_sntp_reply(service.datagram(data), transmit)
    assert (reply.stratum, reply.refid_text) == (3, "192.0.2.1")
    assert packets.from_ntp(reply.transmit) - time.time() == pytest.approx(5, abs=1)


# -- the client's checks, on crafted replies ----------------------------------------------

def crafted(sent: int, **fields: object) -> bytes:
    now = packets.to_ntp(time.time())
    values = dict(leap=0, version=4, mode=4, stratum=2, poll=6, precision=-20, root_delay=0.0,
                  root_dispersion=0.0, refid=b"\x7f\0\0\1", reference=now, originate=sent,
                  receive=now, transmit=now)
    values.update(fields)
    return packets.Ntp(**values).pack()  # type: ignore[arg-type]


@pytest.mark.parametrize("fields, size, message", [
    ({}, 47, "of 47 bytes"),
    ({"mode": 3}, 48, "mode 3"),
    ({"originate": 12345}, 48, "originate timestamp"),
    ({"stratum": 0, "refid": b"RATE"}, 48, "Kiss-o'-Death from the server: RATE"),
    ({"leap": 3}, 48, "not synchronised"),
    ({"transmit": 0}, 48, "transmit timestamp is zero"),
])
def test_client_checks_reject_bad_replies(fields, size, message):
    transmit = packets.to_ntp(time.time())
    with pytest.raises(packets.Malformed, match=re.escape(message)):
        packets.check_sntp_reply(crafted(transmit, **fields)[:size], transmit)


def test_client_reports_a_bad_server_in_one_line():
    """A server that answers in mode 3 (a mirror): one line, exit 1, never a traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as mirror:
        mirror.bind(("127.0.0.1", 0))
        port = mirror.getsockname()[1]
        client = subprocess.Popen([*SNTP, "127.0.0.1", "-p", str(port), "-t", "1", "-r", "1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        mirror.settimeout(10)
        data, peer = mirror.recvfrom(100)
        mirror.sendto(data, peer)  # mode 3 back: not a server's reply
        out, err = client.communicate(timeout=10)
    assert client.returncode == 1
    assert "mode 3" in one_line(err)


def test_client_refuses_remote_targets_and_bad_options():
    result = run_sntp("192.0.2.1")
    assert result.returncode == 2 and "refusing" in one_line(result.stderr)
    result = run_sntp("127.0.0.1", "-p", "0")
    assert result.returncode == 2 and one_line(result.stderr)


# -- over the network: every model, the fuzz, chronyd -----------------------------------------

@pytest.mark.parametrize("model", UDP_MODELS)
def test_every_model_answers_requests_and_nothing_else(serve, model):
    server = serve(model, "sntp", udp=True)
    assert exchange(server.address, b"not ntp", timeout=0.3) is None
    data, transmit = request()
    reply = exchange(server.address, data, timeout=5)
    assert reply is not None
    assert packets.check_sntp_reply(reply, transmit).stratum == 1


def test_fuzzed_datagrams_do_not_stop_valid_answers(serve):
    """10,000 random and mutated datagrams, then a valid request still gets its reply."""
    import random

    rng = random.Random(4330)
    server = serve("select", "sntp", "--quiet", udp=True)
    valid, _ = request()
    answered = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.connect(server.address)
        sock.setblocking(False)
        for i in range(10_000):
            kind = i % 3
            if kind == 0:
                data = rng.randbytes(rng.randrange(0, 200))
            elif kind == 1:  # a request with one byte changed
                data = bytearray(valid)
                data[rng.randrange(48)] = rng.randrange(256)
                data = bytes(data)
            else:
                data = valid[:rng.randrange(48)]
            try:
                sock.send(data)
            except BlockingIOError:
                time.sleep(0.001)
            try:
                while True:
                    answered += len(sock.recv(65535)) == 48
            except (BlockingIOError, ConnectionRefusedError):
                pass
    assert answered > 100  # a third are requests with one byte changed: many still valid
    for _ in range(3):  # UDP may drop one under load: each request is tried three times
        data, transmit = request()
        replies = (exchange(server.address, data, timeout=2) for _ in range(3))
        reply = next((r for r in replies if r is not None), None)
        assert reply is not None
        packets.check_sntp_reply(reply, transmit)
    assert server.running


@pytest.fixture
def chronyd_server(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """chronyd -x serving NTP at ``local stratum 7`` on a loopback port: (port, stratum)."""
    require_root()  # chronyd -u root keeps the privileges it starts with
    chronyd = require_tool("chronyd")
    port, stratum = free_udp_port(), 7
    config = tmp_path / "chrony.conf"
    config.write_text(f"port {port}\nbindaddress 127.0.0.1\nlocal stratum {stratum}\n"
                      f"allow 127.0.0.1\ncmdport 0\npidfile {tmp_path}/chronyd.pid\n"
                      f"driftfile {tmp_path}/drift\n")
    proc = ManagedProcess([chronyd, "-x", "-d", "-u", "root", "-f", str(config)],
                          stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10  # ready once it answers: poll, don't sleep blind
        while time.monotonic() < deadline:
            assert proc.running, proc.stderr_text()
            data, _ = request()
            if exchange(("127.0.0.1", port), data, timeout=0.2):
                break
        else:
            pytest.fail(f"chronyd did not answer within 10 s: {proc.stderr_text()}")
        yield port, stratum
    finally:
        proc.cleanup()


def test_client_against_chronyd(chronyd_server):
    port, stratum = chronyd_server
    result = run_sntp("127.0.0.1", "-p", str(port), "--json")
    no_traceback(result.stderr)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert abs(figures["offset"]) < 0.010  # one clock: chronyd serves the system time
    assert figures["stratum"] == stratum
    assert 0 <= figures["delay"] < 0.5
    text = run_sntp("127.0.0.1", "-p", str(port))
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} \([+-]\d{4}\) [+-]\d+\.\d{6} "
                        rf"\+/- \d+\.\d{{6}} 127\.0\.0\.1 s{stratum} no-leap\n", text.stdout)


def chronyd_query(port: int) -> float:
    """The offset ``chronyd -Q`` measures against 127.0.0.1:port (it sets nothing)."""
    require_root()
    chronyd = require_tool("chronyd")
    result = subprocess.run(
        [chronyd, "-Q", "-u", "root", "-f", os.devnull, "-t", "10",
         f"server 127.0.0.1 port {port} iburst maxsamples 1"],
        capture_output=True, text=True, timeout=20)
    match = re.search(r"System clock wrong by (-?[\d.]+) seconds", result.stderr + result.stdout)
    assert match, result.stderr
    return float(match.group(1))


@pytest.mark.parametrize("offset", [0, 5])
def test_chronyd_agrees_with_the_service(serve, offset):
    """chronyd -Q and testbed sntp see the same clock: right, or 5 s off with --offset 5."""
    server = serve("threading", "sntp", "--offset", str(offset), udp=True)
    # chrony's "wrong by" is the correction the system clock would need: the server's offset
    assert chronyd_query(server.port) == pytest.approx(offset, abs=0.05)
    result = run_sntp("127.0.0.1", "-p", str(server.port), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["offset"] == pytest.approx(offset, abs=0.05)
