"""Traffic across the lab: names over TCP and UDP, IPv4 and IPv6; rate, loss and delay."""

from __future__ import annotations

import re
import sys

import pytest

from tests.conftest import one_line
from tests.lab.conftest import TESTBED, netns_names, run

NC = [sys.executable, "-m", "testbed", "nc"]


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_h1_reaches_h2_by_name_over_ipv4_and_ipv6(make_lab, transport):
    lab = make_lab("--hosts", "2")
    udp = ["--udp"] if transport == "udp" else []
    for family, wildcard in (("-4", "0.0.0.0"), ("-6", "::")):
        _, endpoint = lab.serve("h2", "--model", "select", "--service", "upper", *udp,
                                "--host", wildcard)
        # -q: how long nc waits for the reply after its input ends (a lab link: milliseconds)
        flags = [family, "-u", "-q", "0.3"] if udp else [family, "-N"]
        done = lab.exec("h1", *NC, *flags, "h2", str(endpoint.port), input=b"hello lab\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "HELLO LAB\n", (family, done.stderr)


#: Inside h1: connect to h2, send SIZE bytes (then EOF) while reading them back, print the
#: seconds from the connection to the last byte back.
TIMED_ECHO = """
import socket, sys, threading, time
size, port = int(sys.argv[1]), int(sys.argv[2])
conn = socket.create_connection(("h2", port), timeout=20)
start = time.monotonic()
def send():
    conn.sendall(b"x" * size)
    conn.shutdown(socket.SHUT_WR)
threading.Thread(target=send, daemon=True).start()
got = 0
while got < size:
    chunk = conn.recv(1 << 16)
    if not chunk:
        break
    got += len(chunk)
print(got, time.monotonic() - start)
"""


@pytest.mark.slow
def test_a_rate_limited_link_holds_its_rate(make_lab):
    lab = make_lab("--hosts", "2", "--rate", "10mbit")
    assert lab.state["conditions"]["h1"]["rate"] == "10mbit"
    assert "tbf" in lab.exec("h1", "tc", "qdisc", "show", "dev", "eth0").stdout
    _, endpoint = lab.serve("h2", "--model", "select", "--host", "0.0.0.0")
    size = 10 * 1024 * 1024
    done = lab.exec("h1", sys.executable, "-c", TIMED_ECHO, str(size), str(endpoint.port),
                    timeout=28)
    assert done.returncode == 0, done.stderr
    got, seconds = done.stdout.split()
    assert int(got) == size
    mbit_s = size * 8 / float(seconds) / 1e6
    assert 8.0 <= mbit_s <= 12.0, f"{mbit_s:.2f} Mbit/s through a 10mbit link"


RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 0))
print("port", s.getsockname()[1], flush=True)
s.settimeout(10)
count = 0
try:
    s.recv(2048); count = 1
    s.settimeout(1.5)
    while True:
        s.recv(2048); count += 1
except TimeoutError:
    pass
print("received", count, flush=True)
"""

SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[2])):
    s.sendto(b"%d\\n" % i, ("h2", int(sys.argv[1])))
    time.sleep(0.001)
"""


def test_a_lossy_link_drops_its_share_of_datagrams(make_lab):
    lab = make_lab("--hosts", "2", "--loss", "h2=20%")
    assert lab.state["conditions"]["h2"]["loss"] == 20.0
    assert "h1" not in lab.state["conditions"]
    receiver = lab.python("h2", RECEIVER)
    port = receiver.wait_for_line(re.compile(r"^port (\d+)$"), 15).group(1)
    sent = lab.exec("h1", sys.executable, "-c", SENDER, port, "500")
    assert sent.returncode == 0, sent.stderr
    received = int(receiver.wait_for_line(re.compile(r"^received (\d+)$"), 15)
                   .group(1))
    lost = (500 - received) / 500
    assert 0.10 <= lost <= 0.30, f"{lost:.0%} of 500 datagrams lost through a 20% link"


def test_delay_needs_netem_and_says_so_where_it_is_missing(make_lab, lab_env):
    done = run([*TESTBED, "lab", "up", "--name", "tdelay", "--hosts", "2", "--delay", "20ms"],
               lab_env)
    if done.returncode == 0:  # this kernel has netem: a round trip takes the delay more
        try:
            ping = run([*TESTBED, "lab", "exec", "--name", "tdelay", "h1", "--", "ping", "-c",
                        "3", "-i", "0.2", "h2"], lab_env)
            rtts = [float(part.split("=")[1]) for part in ping.stdout.split()
                    if part.startswith("time=")]
            assert rtts and min(rtts) >= 20.0, ping.stdout
        finally:
            assert run([*TESTBED, "lab", "down", "--name", "tdelay"], lab_env).returncode == 0
        return
    assert done.returncode == 2
    assert "netem" in one_line(done.stderr)
    assert not {"tb-tdelay-fabric", "tb-tdelay-h1"} & netns_names(), "a refused lab left one"
