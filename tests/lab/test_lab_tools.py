"""The packet tools on the lab, beside the reference tools run on the same hosts.

h1 asks, h2 answers, over the lab's bridge: ping and iputils ping, arp and arping /
ip link, sntp against chronyd serving inside h2, resolve and the lab's host names,
scan and nmap against h2's nftables rules, sniff and tcpdump on h1's interface.
The same comparisons run in the default suite on loopback and in namespaces the
tests make themselves (tests/test_ping.py ...); these need ``testbed lab`` and its
fixtures (tests/lab/conftest.py), and skip with that reason until they are here.
"""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET  # noqa: S405 - nmap's own output, parsed in a test

import pytest

from testbed.cli import COMMANDS
from tests.conftest import require_tool
from tests.test_sniff import Capture, flows, shows_one_connection, tcpdump_read

if "lab" not in COMMANDS:
    pytest.skip("needs testbed lab (the network lab) and its test fixtures",
                allow_module_level=True)

TESTBED = [sys.executable, "-m", "testbed"]


@pytest.fixture
def lab(make_lab):
    return make_lab("--hosts", "2")


def host(lab, name: str) -> dict:
    return next(h for h in lab.state["hosts"] if h["name"] == name)


def test_ping_agrees_with_iputils(lab):
    iputils = lab.exec("h1", require_tool("ping"), "-c", "5", "-i", "0.2", "h2")
    ours = lab.exec("h1", *TESTBED, "ping", "-c", "5", "-i", "0.2", "h2", "--json")
    assert iputils.returncode == 0 and ours.returncode == 0, ours.stderr + iputils.stderr
    figures = json.loads(ours.stdout)
    assert figures["received"] == 5 and "5 received" in iputils.stdout
    text = lab.exec("h1", *TESTBED, "ping", "-c", "1", "h2").stdout
    assert re.search(rf"^64 bytes from h2 \({host(lab, 'h2')['ipv4']}\): icmp_seq=1 ttl=\d+ ",
                     text, re.M), text
    assert {str(r["ttl"]) for r in figures["replies"]} == set(re.findall(r"ttl=(\d+)",
                                                                        iputils.stdout))


def test_arp_agrees_with_ip_link_and_arping(lab):
    address = host(lab, "h2")["ipv4"]
    ours = lab.exec("h1", *TESTBED, "arp", address, "-i", "eth0", "-c", "1", "--json")
    assert ours.returncode == 0, ours.stderr
    mac = json.loads(ours.stdout)["mac"]
    link = lab.exec("h2", "ip", "-o", "link", "show", "eth0").stdout
    assert f"link/ether {mac}" in link
    arping = lab.exec("h1", require_tool("arping"), "-c", "1", "-i", "eth0", address)
    assert mac in arping.stdout.lower()


def test_resolve_gives_the_lab_names(lab):
    h2 = host(lab, "h2")
    ours = lab.exec("h1", *TESTBED, "resolve", "h2")
    assert f"h2 has address {h2['ipv4']}" in ours.stdout, ours.stderr
    assert f"h2 has IPv6 address {h2['ipv6']}" in ours.stdout


@pytest.mark.slow  # the default suite compares it on loopback
def test_sntp_against_chronyd_in_a_lab_host(lab, tmp_path):
    chronyd = require_tool("chronyd")
    h2 = host(lab, "h2")
    config = tmp_path / "chrony.conf"
    config.write_text(f"bindaddress {h2['ipv4']}\nlocal stratum 5\nallow {lab.state['ipv4']}\n"
                      f"cmdport 0\npidfile {tmp_path}/chronyd.pid\ndriftfile {tmp_path}/drift\n")
    lab.python("h2", "import os, sys; os.execv(sys.argv[1], sys.argv[1:])",
               chronyd, "-x", "-d", "-u", "root", "-f", str(config))
    for _ in range(20):  # ready once it answers
        ours = lab.exec("h1", *TESTBED, "sntp", "h2", "-t", "0.5", "-r", "1", "--json")
        if ours.returncode == 0:
            break
    assert ours.returncode == 0, ours.stderr
    figures = json.loads(ours.stdout)
    assert abs(figures["offset"]) < 0.010 and figures["stratum"] == 5


@pytest.mark.slow  # about 4 s each, and the default suite compares them in a namespace
@pytest.mark.parametrize("kind, flag", [("syn", "-sS"), ("connect", "-sT"), ("udp", "-sU")])
def test_scan_agrees_with_nmap(lab, kind, flag):
    nmap = require_tool("nmap")
    rules = ("table ip tbscan {\n chain input { type filter hook input priority 0; "
             "policy accept; tcp dport 2001 drop; udp dport 2001 drop; "
             "meta l4proto { tcp, udp } th dport 2003 reject with icmp type admin-prohibited; }"
             "\n}\n")
    assert lab.exec("h2", "nft", "-f", "-", input=rules.encode()).returncode == 0
    ports = "2000-2004"
    ours = lab.exec("h1", *TESTBED, "scan", "h2", "-p", ports, f"--{kind}", "--timeout", "0.5",
                    "--json")
    assert ours.returncode == 0, ours.stderr
    found = {p["port"]: (p["state"], p["reason"]) for p in json.loads(ours.stdout)["ports"]}
    theirs = lab.exec("h1", nmap, flag, "-p", ports, "--max-retries", "1", "--reason", "-n",
                      "-oX", "-", host(lab, "h2")["ipv4"])
    root = ET.fromstring(theirs.stdout)  # noqa: S314
    assert found == {int(p.get("portid")): (p.find("state").get("state"),
                                            p.find("state").get("reason"))
                     for p in root.iter("port")}
    assert len({state for state, _ in found.values()}) >= 2


@pytest.mark.slow  # the default suite compares it in a namespace
def test_sniff_records_an_exchange_between_two_hosts(lab, tmp_path):
    tcpdump = require_tool("tcpdump")
    _, endpoint = lab.serve("h2", "--host", host(lab, "h2")["ipv4"])
    port = str(endpoint.port)
    ours_file, theirs_file = str(tmp_path / "ours.pcap"), str(tmp_path / "theirs.pcap")
    theirs = Capture(lab.exec_argv("h1", tcpdump, "-Z", "root", "--immediate-mode", "-i", "eth0",
                                   "-n", "-U", "-w", theirs_file, "tcp", "port", port),
                     env=lab.env)
    ours = Capture(lab.exec_argv("h1", *TESTBED, "sniff", "-i", "eth0", "--port", port,
                                 "-w", ours_file, "--print"), env=lab.env)
    try:
        exchange = lab.exec("h1", *TESTBED, "nc", "-N", "h2", port, input=b"hello\n")
        assert exchange.stdout == "hello\n", exchange.stderr
        ours.wait_for_close()
    finally:
        ours.stop()
        theirs.stop()
    printed = flows(ours.lines)
    assert printed == tcpdump_read(tcpdump, ours_file) == tcpdump_read(tcpdump, theirs_file)
    shows_one_connection(printed, f"{host(lab, 'h2')['ipv4']}.{port}")
