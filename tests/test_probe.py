"""``testbed probe``: the course's UDP ping, one line per request and a ping-like summary."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from clients.probe import main
from tests.conftest import no_traceback
from tests.test_safety import ROOT

REPLY = re.compile(r"^reply from 127\.0\.0\.1:\d+: seq=(\d+) bytes=\d+ time=\d+\.\d{3} ms$")
RTT = re.compile(r"^rtt min/avg/max = (\d+\.\d{3})/(\d+\.\d{3})/(\d+\.\d{3}) ms$")


def run_probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "testbed", "probe", *args],
                          capture_output=True, text=True, timeout=25, cwd=ROOT)


@pytest.fixture
def late_every_other() -> Iterator[int]:
    """A UDP echo on 127.0.0.1 answering the 1st, 3rd, 5th... datagram at once and the
    others 0.5 s late, while the next request is waiting for its own reply."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.02)
    stop = threading.Event()

    def respond() -> None:
        n, late = 0, []
        while not stop.is_set():
            now = time.monotonic()
            for due, data, peer in [item for item in late if item[0] <= now]:
                late.remove((due, data, peer))
                sock.sendto(data, peer)
            try:
                data, peer = sock.recvfrom(65536)
            except TimeoutError:
                continue
            n += 1
            if n % 2:
                sock.sendto(data, peer)
            else:
                late.append((time.monotonic() + 0.5, data, peer))

    thread = threading.Thread(target=respond, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join(5)
    sock.close()


def test_udp_probe_of_a_server(serve):
    server = serve("threading", "upper", "--quiet", udp=True)
    result = run_probe(server.host, str(server.port), "--udp", "-c", "3", "--service", "upper")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"PROBE 127.0.0.1:{server.port} (udp): 3 requests, timeout 1 s"
    assert [REPLY.match(line)[1] for line in lines[1:4]] == ["1", "2", "3"]
    assert lines[4] == f"--- 127.0.0.1:{server.port} probe statistics ---"
    assert lines[5] == "3 sent, 3 received, 0.0% lost"
    low, avg, high = map(float, RTT.match(lines[6]).groups())
    assert 0 < low <= avg <= high
    no_traceback(result.stderr)


def test_silence_is_request_timed_out(capsys):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        status = main(["127.0.0.1", str(silent.getsockname()[1]), "--udp", "-c", "2",
                       "--timeout", "0.3"])
    out = capsys.readouterr().out.splitlines()
    assert status == 1  # no reply at all, as ping
    assert out[1:3] == ["Request timed out", "Request timed out"]
    assert "2 sent, 0 received, 100.0% lost" in out
    assert out[-1] == "rtt min/avg/max = -/-/- ms (no replies)"


def test_late_replies_are_lost_not_taken_for_the_next(late_every_other, capsys):
    status = main(["127.0.0.1", str(late_every_other), "--udp", "-c", "6", "--timeout", "0.3"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    answered = [REPLY.match(line)[1] for line in out if REPLY.match(line)]
    assert answered == ["1", "3", "5"]  # reply 2 comes while 4 waits: skipped, not a reply
    assert out.count("Request timed out") == 3
    assert "6 sent, 3 received, 50.0% lost" in out


def test_tcp_probe_on_one_connection(serve, capsys):
    server = serve("select", "echo", "--quiet")
    status = main([server.host, str(server.port), "-c", "4", "--service", "echo"])
    out = capsys.readouterr().out.splitlines()
    assert status == 0
    assert out[0] == f"PROBE 127.0.0.1:{server.port} (tcp): 4 requests, timeout 1 s"
    assert sum(bool(REPLY.match(line)) for line in out) == 4
    assert "4 sent, 4 received, 0.0% lost" in out


def test_tcp_probe_of_a_closed_port_says_refused(capsys):
    with socket.socket() as placeholder:  # bound, not listening
        placeholder.bind(("127.0.0.1", 0))
        status = main(["127.0.0.1", str(placeholder.getsockname()[1]), "-c", "2"])
    out = capsys.readouterr().out.splitlines()
    assert status == 1
    assert out[1:3] == ["seq=1 refused: Connection refused", "seq=2 refused: Connection refused"]


def test_interval_spaces_the_requests(serve, capsys):
    server = serve("threading", "echo", "--quiet", udp=True)
    started = time.monotonic()
    assert main([server.host, str(server.port), "--udp", "-c", "3", "--interval", "0.3"]) == 0
    assert time.monotonic() - started >= 0.6
    assert "3 sent, 3 received, 0.0% lost" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    [],
    ["127.0.0.1"],
    ["127.0.0.1", "0"],
    ["127.0.0.1", "80", "-c", "0"],
    ["127.0.0.1", "80", "--timeout", "0"],
    ["127.0.0.1", "80", "--interval", "-1"],
    ["127.0.0.1", "80", "--service", "rot13"],
    ["127.0.0.1", "80", "-c", "1000000"],
])
def test_bad_arguments_one_line_exit_2(args, capsys):
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("testbed probe: error:") and err.count("\n") == 1, err
