"""testbed scan against nmap: the same state and reason for every port, every state shown.

A namespace of the module's own holds the target: testbed serve on some ports, and an
nftables table that drops one port, resets another and rejects a third with ICMP
admin-prohibited, so that open, closed, filtered and open|filtered all appear.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET  # noqa: S405 - nmap's own output, parsed in a test
from collections.abc import Iterator

import pytest

from clients.scan import parse_ports, table
from tests.conftest import one_line, require_netns, require_root, require_tool
from tests.netns import Netns, make_netns

OPEN, CLOSED, DROPPED, RESET, PROHIBITED = 2000, 2001, 2002, 2003, 2004
PORTS = f"{OPEN}-{PROHIBITED}"
RULES = f"""chain input {{ type filter hook input priority 0; policy accept;
  tcp dport {DROPPED} drop
  udp dport {DROPPED} drop
  tcp dport {RESET} reject with tcp reset
  tcp dport {PROHIBITED} reject with icmp type admin-prohibited
  udp dport {PROHIBITED} reject with icmp type admin-prohibited
}}"""


@pytest.fixture(scope="module")
def target() -> Iterator[Netns]:
    require_netns()
    ns = make_netns("scan")
    try:
        ns.serve("--port", str(OPEN))
        ns.serve("--port", str(OPEN), "--udp")
        ns.serve("--port", str(RESET))  # listening, but the rule answers with a reset first
        ns.nft("ip", "tbscan", RULES)
        yield ns
    finally:
        ns.cleanup()


def ours(ns: Netns, kind: str, ports: str = PORTS) -> dict:
    result = ns.testbed("scan", "127.0.0.1", "-p", ports, f"--{kind}", "--timeout", "0.5",
                        "--retries", "1", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def nmaps(ns: Netns, flag: str) -> dict[int, tuple[str, str]]:
    nmap = require_tool("nmap")
    result = ns.run(nmap, flag, "-p", PORTS, "--max-retries", "1", "--reason", "-n", "-oX", "-",
                    "127.0.0.1")
    assert result.returncode == 0, result.stderr
    root = ET.fromstring(result.stdout)  # noqa: S314
    return {int(port.get("portid")): (port.find("state").get("state"),
                                      port.find("state").get("reason"))
            for port in root.iter("port")}


EXPECTED = {
    "syn": {OPEN: ("open", "syn-ack"), CLOSED: ("closed", "reset"),
            DROPPED: ("filtered", "no-response"), RESET: ("closed", "reset"),
            PROHIBITED: ("filtered", "admin-prohibited")},
    "connect": {OPEN: ("open", "syn-ack"), CLOSED: ("closed", "conn-refused"),
                DROPPED: ("filtered", "no-response"), RESET: ("closed", "conn-refused"),
                PROHIBITED: ("filtered", "host-unreach")},
    "udp": {OPEN: ("open", "udp-response"), CLOSED: ("closed", "port-unreach"),
            DROPPED: ("open|filtered", "no-response"), RESET: ("closed", "port-unreach"),
            PROHIBITED: ("filtered", "admin-prohibited")},
}


@pytest.mark.parametrize("kind, flag", [("syn", "-sS"),
                                        pytest.param("connect", "-sT", marks=pytest.mark.slow),
                                        pytest.param("udp", "-sU", marks=pytest.mark.slow)])
def test_states_and_reasons_agree_with_nmap(target, kind, flag):
    report = ours(target, kind)
    found = {p["port"]: (p["state"], p["reason"]) for p in report["ports"]}
    assert found == nmaps(target, flag)
    assert found == EXPECTED[kind]  # and every state is there, with its reason
    assert report["elapsed_s"] < 10


def test_table_is_nmaps(target):
    result = target.testbed("scan", "127.0.0.1", "-p", PORTS, "--connect", "--timeout", "0.5")
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("PORT"))
    assert lines[header].split() == ["PORT", "STATE", "SERVICE", "REASON"]
    assert lines[header + 1].split()[:2] == [f"{OPEN}/tcp", "open"]
    assert lines[header + 3].split()[:2] == [f"{DROPPED}/tcp", "filtered"]
    assert "scanned in" in lines[-1] and "timeout 0.5 s, 1 retry" in lines[-1]


@pytest.mark.slow  # about 7 s
def test_every_port_in_bounded_time(target):
    """65,535 ports with --connect: bounded, and it says how long it took."""
    result = target.testbed("scan", "127.0.0.1", "-p", "-", "--connect", "--timeout", "0.5",
                            timeout=28)
    assert result.returncode == 0, result.stderr
    # the reset port reads conn-refused like every closed one: three ports shown, as nmap
    # -sT -p- shows them in this namespace
    assert "Not shown: 65532 closed tcp ports (conn-refused)" in result.stdout, result.stdout
    shown = [line.split()[0] for line in result.stdout.splitlines() if "/tcp " in line]
    assert shown == [f"{OPEN}/tcp", f"{DROPPED}/tcp", f"{PROHIBITED}/tcp"], result.stdout
    seconds = float(result.stdout.split("scanned in ")[1].split()[0])
    assert seconds < 20, result.stdout


def test_a_connect_that_reaches_itself_is_not_an_open_port():
    """On loopback, a connect whose source port the kernel picks equal to the port scanned
    reaches its own socket (TCP's simultaneous open) and succeeds with nothing listening:
    it is tried again on another source port, and is never reported open. With the
    namespace's ephemeral range cut to the scanned ports, every connect risks it: one port
    alone always does."""
    require_netns()
    ns = make_netns("self")
    try:
        for ports, expected in (("40000", {40000: ("closed", "self-connect")}),
                                ("40000-40009", dict.fromkeys(range(40000, 40010),
                                                              ("closed", "conn-refused")))):
            low, _, high = ports.partition("-")
            ranged = ns.run("sysctl", "-w", f"net.ipv4.ip_local_port_range={low} {high or low}")
            assert ranged.returncode == 0, ranged.stderr
            report = ours(ns, "connect", ports)
            found = {p["port"]: (p["state"], p["reason"]) for p in report["ports"]}
            assert found == expected, ports
    finally:
        ns.cleanup()


# -- without a network -----------------------------------------------------------------------

def test_port_lists():
    assert parse_ports("22,80,1000-1002") == [22, 80, 1000, 1001, 1002]
    assert len(parse_ports("-")) == 65535
    for bad in ("0", "70000", "5-3", "http", ""):
        with pytest.raises(ValueError):
            parse_ports(bad)


def test_many_alike_ports_are_summed_up():
    from clients.scan import PortResult

    results = [PortResult(p, "tcp", "closed", "reset", "unknown") for p in range(1, 101)]
    results[9] = PortResult(10, "tcp", "open", "syn-ack", "unknown")
    lines = table(results, "tcp", False)
    assert lines[0] == "Not shown: 99 closed tcp ports (reset)"
    assert lines[2].split() == ["10/tcp", "open", "unknown", "syn-ack"]


@pytest.mark.parametrize("args, words", [
    (["192.0.2.1", "-p", "80"], "refusing"),
    (["127.0.0.1", "-p", "0-5"], "ports are 1-65535"),
    (["127.0.0.1"], "required"),
    (["127.0.0.1", "-p", "80", "--retries", "9"], "--retries"),
])
def test_bad_input_is_one_line(args, words):
    result = subprocess.run([sys.executable, "-m", "testbed", "scan", *args],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert words in one_line(result.stderr)


def test_without_root_the_raw_scans_say_so_in_one_line():
    require_root()  # to become nobody
    setpriv = require_tool("setpriv")
    for kind in ("--syn", "--udp"):
        result = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                                 sys.executable, "-m", "testbed", "scan", "127.0.0.1", "-p", "1",
                                 kind], capture_output=True, text=True, timeout=20)
        assert result.returncode == 2
        assert "needs root" in one_line(result.stderr)
