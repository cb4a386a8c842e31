"""testbed ping against iputils ping: the same replies and TTL, the same loss, the same exits."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import sys

import pytest

from clients import packets
from clients.ping import Error, Reply, read_reply
from tests.conftest import one_line, require_root, require_tool

PING = [sys.executable, "-m", "testbed", "ping"]


def run(argv: list[str], timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def shape(text: str) -> list[str]:
    """The output with every number replaced: what must be the same as iputils'."""
    return [re.sub(r"\d+(\.\d+)?", "N", line) for line in text.splitlines()]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", pytest.param(
    "localhost", marks=pytest.mark.slow)])  # a name: the resolver's, tested in test_resolve
def test_replies_and_ttl_agree_with_iputils(host):
    require_root()
    iputils = run([require_tool("ping"), "-c", "5", "-i", "0.1", host])
    ours = run([*PING, "-c", "5", "-i", "0.1", host])
    assert (ours.returncode, iputils.returncode) == (0, 0), ours.stderr + iputils.stderr
    assert shape(ours.stdout) == shape(iputils.stdout)  # every line, iputils' words
    ttls = set(re.findall(r"ttl=(\d+)", iputils.stdout))
    figures = json.loads(run([*PING, "-c", "5", "-i", "0.1", host, "--json"]).stdout)
    assert figures["received"] == figures["transmitted"] == 5
    assert {str(reply["ttl"]) for reply in figures["replies"]} == ttls
    assert "5 packets transmitted, 5 received, 0% packet loss" in ours.stdout


def test_dropped_echoes_are_full_loss_and_exit_1(netns):
    netns.nft("inet", "tbping", "chain input { type filter hook input priority 0; "
              "policy accept; icmp type echo-request drop; icmpv6 type echo-request drop; }")
    iputils = netns.run(require_tool("ping"), "-c", "2", "-i", "0.2", "-W", "1", "127.0.0.1")
    ours = netns.testbed("ping", "-c", "2", "-i", "0.2", "-W", "1", "127.0.0.1")
    assert (ours.returncode, iputils.returncode) == (1, 1)
    for text in (ours.stdout, iputils.stdout):
        assert "2 packets transmitted, 0 received, 100% packet loss" in text
    assert "rtt" not in ours.stdout


def test_rejected_echoes_are_reported_as_iputils_does(netns):
    netns.nft("ip", "tbping", "chain input { type filter hook input priority 0; "
              "policy accept; icmp type echo-request reject with icmp type host-prohibited; }")
    iputils = netns.run(require_tool("ping"), "-c", "1", "-W", "1", "127.0.0.1")
    ours = netns.testbed("ping", "-c", "1", "-W", "1", "127.0.0.1")
    assert ours.returncode == iputils.returncode == 1
    said = re.search(r"^From \S+ icmp_seq=1 (.+)$", iputils.stdout, re.M).group(1)
    assert f"icmp_seq=1 {said}" in ours.stdout, ours.stdout
    assert "+1 errors" in ours.stdout


def test_unprivileged_icmp_socket(netns):
    """Not root: the ICMP datagram socket, where net.ipv4.ping_group_range allows it."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *PING]
    netns.run("sysctl", "-qw", "net.ipv4.ping_group_range=1 0", check=True)
    refused = netns.run(*nobody, "-c", "1", "127.0.0.1")
    assert refused.returncode == 2 and "ping_group_range" in one_line(refused.stderr)
    netns.run("sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647", check=True)
    allowed = netns.run(*nobody, "-c", "2", "-i", "0.1", "127.0.0.1")
    assert allowed.returncode == 0, allowed.stderr
    assert re.search(r"icmp_seq=2 ttl=64 time=", allowed.stdout)


# -- replies, crafted -------------------------------------------------------------------------

def ipv4(payload: bytes, ttl: int = 64, proto: int = 1) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, ttl, proto, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
    return header + payload


def echo_reply(ident: int, seq: int, data: bytes = b"x" * 56) -> bytes:
    body = struct.pack("!BBHHH", 0, 0, 0, ident, seq) + data
    return body[:2] + struct.pack("!H", packets.checksum(body)) + body[4:]


def test_reply_decoding():
    raw = ipv4(echo_reply(7, 3), ttl=42)
    assert read_reply(raw, v6=False, raw=True, ident=7, source="127.0.0.1") == \
        Reply(3, 42, 64, "127.0.0.1")
    assert read_reply(raw, v6=False, raw=True, ident=8, source="127.0.0.1") is None  # not ours
    assert read_reply(echo_reply(9, 1), v6=False, raw=False, ident=None, source="x").seq == 1


@pytest.mark.parametrize("data, message", [
    (ipv4(echo_reply(7, 3)[:5]), "truncated ICMP message"),
    (ipv4(echo_reply(7, 3)[:-1] + b"y"), "checksum"),
    (ipv4(b"")[:12], "truncated IPv4 header"),
])
def test_malformed_replies_raise_one_reason(data, message):
    with pytest.raises(packets.Malformed, match=message):
        read_reply(data, v6=False, raw=True, ident=7, source="127.0.0.1")


def test_an_error_quoting_our_echo():
    quoted = ipv4(packets.echo_request(7, 5, b"abcdefgh"))
    body = struct.pack("!BBHI", 3, 10, 0, 0) + quoted
    error = body[:2] + struct.pack("!H", packets.checksum(body)) + body[4:]
    assert read_reply(ipv4(error), v6=False, raw=True, ident=7, source="127.0.0.1") == \
        Error(5, "Destination Host Prohibited", "127.0.0.1")


@pytest.mark.parametrize("args, words", [
    (["192.0.2.1"], "refusing"),
    (["-c", "0", "127.0.0.1"], "-c"),
    (["-s", "70000", "127.0.0.1"], "-s"),
    (["-i", "0.001", "127.0.0.1"], "-i"),
    (["-4", "::1"], "not an IPv4 address"),
])
def test_bad_input_is_one_line_and_exit_2(args, words):
    result = run([*PING, *args])
    assert result.returncode == 2
    assert words in one_line(result.stderr)
