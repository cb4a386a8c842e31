"""testbed arp on a veth link between two namespaces: the peer's MAC, as ip link and arping say.

The two namespaces are described as an up lab in a TESTBED_LAB_DIR of the test's own,
so that the guard lets testbed arp ask for the peer's address from inside them; the
guard must know labs for that (clients/safety.py reads the lab's state files).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import pytest

from clients import packets, safety
from tests.conftest import one_line, require_tool
from tests.netns import as_lab

IPV6_BLOCK = "fd74:6573:7462:ff::/64"


@pytest.fixture
def link(veth_pair, tmp_path):
    if not hasattr(safety, "labs_up"):
        pytest.skip("the guard does not know the project's labs yet (clients/safety.py)")
    a, b, addresses = veth_pair
    env = as_lab(tmp_path, "tbarp", [a, b], "198.18.255.0/24", IPV6_BLOCK)
    return a, b, addresses, env


def mac_of(ns, interface="eth0") -> str:
    shown = ns.run("ip", "-o", "link", "show", interface, check=True).stdout
    return re.search(r"link/ether ([0-9a-f:]{17})", shown).group(1)


def test_mac_agrees_with_ip_link_and_arping(link):
    a, b, addresses, env = link
    result = a.testbed("arp", addresses["b"], "-i", "eth0", "-c", "1", "--json", env=env)
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["received"] == 1
    assert figures["mac"] == mac_of(b)
    arping = a.run(require_tool("arping"), "-c", "1", "-i", "eth0", addresses["b"])
    assert arping.returncode == 0, arping.stderr
    assert figures["mac"] in arping.stdout.lower()
    text = a.testbed("arp", addresses["b"], "-i", "eth0", "-c", "1", env=env)
    assert re.search(rf"^42 bytes from {figures['mac']} \({addresses['b']}\): index=0 "
                     r"time=\d+\.\d{3} ms$", text.stdout, re.M), text.stdout


def test_no_answer_is_exit_1(link):
    a, _, _, env = link
    result = a.testbed("arp", "198.18.255.99", "-i", "eth0", "-c", "1", "-W", "0.3", env=env)
    assert result.returncode == 1
    assert "1 packets transmitted, 0 packets received, 100% unanswered" in result.stdout, \
        result.stderr


FORGER = textwrap.dedent("""
    import socket, sys
    from clients import packets
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(packets.ETH_P_ARP))
    sock.bind(("eth0", packets.ETH_P_ARP))
    mine = bytes.fromhex(open("/sys/class/net/eth0/address").read().strip().replace(":", ""))
    print("ready", flush=True)
    while True:
        eth = packets.parse_ethernet(sock.recv(2048))
        asked = packets.parse_arp(eth.payload)
        if asked.op == packets.ARP_REQUEST:
            break
    # a reply to the asker that claims to come from an address nobody asked for
    import ipaddress, struct
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, mine,
                       ipaddress.IPv4Address("198.18.255.77").packed,
                       packets.mac_bytes(asked.sender_mac),
                       ipaddress.IPv4Address(asked.sender_ip).packed)
    sock.send(packets.ethernet(packets.mac_bytes(asked.sender_mac), mine, packets.ETH_P_ARP, body))
""")


def test_a_reply_from_the_wrong_address_is_reported(link):
    a, b, addresses, env = link
    forger = subprocess.Popen(b.argv(sys.executable, "-c", FORGER), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert forger.stdout.readline() == "ready\n"
        result = a.testbed("arp", addresses["b"], "-i", "eth0", "-c", "2", "--json", env=env)
        forger.wait(timeout=10)
    finally:
        forger.kill()
        forger.communicate()
    assert result.returncode == 0, result.stderr  # the real reply still counts
    figures = json.loads(result.stdout)
    assert figures["received"] == 2 and figures["mac"] == mac_of(b)
    assert "ARP reply from 198.18.255.77" in one_line(result.stderr)


def test_wrong_reply_decoders():
    mine, theirs = b"\x02\0\0\0\0\1", b"\x02\0\0\0\0\2"
    request = packets.parse_arp(packets.parse_ethernet(
        packets.arp_request(mine, "198.18.0.1", "198.18.0.2")).payload)
    assert (request.op, request.target_ip, request.sender_mac) == (1, "198.18.0.2",
                                                                   "02:00:00:00:00:01")

    def reply(sender_ip: str, eth_src: bytes) -> bytes:
        import ipaddress
        import struct

        body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, theirs,
                           ipaddress.IPv4Address(sender_ip).packed, mine,
                           ipaddress.IPv4Address("198.18.0.1").packed)
        return packets.ethernet(mine, eth_src, packets.ETH_P_ARP, body)

    assert packets.arp_answer(reply("198.18.0.2", theirs), "198.18.0.2").sender_mac == \
        "02:00:00:00:00:02"
    with pytest.raises(packets.Malformed, match="not from 198.18.0.2"):
        packets.arp_answer(reply("198.18.0.9", theirs), "198.18.0.2")
    with pytest.raises(packets.Malformed, match="came from Ethernet address"):
        packets.arp_answer(reply("198.18.0.2", b"\x02\0\0\0\0\3"), "198.18.0.2")
    with pytest.raises(packets.Malformed, match="truncated ARP"):
        packets.arp_answer(reply("198.18.0.2", theirs)[:30], "198.18.0.2")


@pytest.mark.parametrize("args, words", [
    (["192.0.2.1", "-i", "lo"], "refusing"),
    (["127.0.0.1", "-i", "lo"], "loopback"),
    (["198.18.255.2"], "required"),
])
def test_bad_input_is_one_line(args, words):
    result = subprocess.run([sys.executable, "-m", "testbed", "arp", *args],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert words in one_line(result.stderr)
