"""testbed resolve against host (bind9-dnsutils), in a namespace of the test's own.

``host`` asks DNS servers only, ``testbed resolve`` the system resolver (the hosts file
first). To compare like with like, the namespace gets a hosts file and a resolv.conf
pointing at a small DNS server on its own loopback that serves the same names (built
with Scapy's DNS layer): both tools then answer from the same data, one through the
hosts file, the other through DNS. No query leaves the namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import one_line, require_netns, require_tool
from tests.netns import make_netns

NAMES = {"h1.tblab": ("198.18.254.1", "fd74:6573:7462:fe::1"),
         "h2.tblab": ("198.18.254.2", "fd74:6573:7462:fe::2"),
         "localhost": ("127.0.0.1", "::1")}

SERVER = textwrap.dedent("""
    import ipaddress, json, socket, sys
    from scapy.all import DNS, DNSRR
    names = json.loads(sys.argv[1])
    records = {}
    for name, (v4, v6) in names.items():
        records.setdefault((name, 1), []).append(v4)
        records.setdefault((name, 28), []).append(v6)
        for address in (v4, v6):
            records.setdefault((ipaddress.ip_address(address).reverse_pointer, 12), []).append(
                name + ".")
    known = {name for name, _ in records}
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 53))
    print("ready", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        query = DNS(data)
        question = query.qd[0] if isinstance(query.qd, list) else query.qd
        name = question.qname.decode().rstrip(".").lower()
        answers = [DNSRR(rrname=question.qname, type=question.qtype, rdata=value, ttl=60)
                   for value in records.get((name, question.qtype), [])]
        reply = DNS(id=query.id, qr=1, aa=1, rd=query.rd, ra=1,
                    rcode=0 if name in known else 3, qd=query.qd, an=answers or None)
        sock.sendto(bytes(reply), peer)
""")


@pytest.fixture(scope="module")
def resolver_ns():
    require_netns()
    netns = make_netns("resolve")
    hosts = "".join(f"{v4} {name}\n{v6} {name}\n" for name, (v4, v6) in NAMES.items())
    server = None
    try:
        netns.etc_file("hosts", hosts)
        netns.etc_file("resolv.conf", "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        server = subprocess.Popen(netns.argv(sys.executable, "-c", SERVER, json.dumps(NAMES)),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert server.stdout.readline() == "ready\n", server.stderr.read()
        yield netns
    finally:
        if server is not None:
            server.kill()
            server.communicate()
        netns.cleanup()


@pytest.mark.parametrize("target", ["h1.tblab", "localhost", "198.18.254.2",
                                    "fd74:6573:7462:fe::1", "127.0.0.1", "no-such.tblab"])
def test_answers_agree_with_host(resolver_ns, target):
    host = resolver_ns.run(require_tool("host"), target)
    ours = resolver_ns.testbed("resolve", target)
    assert ours.returncode == host.returncode
    said = (host.stdout + host.stderr).strip()
    assert said  # host did answer: an address, a pointer, or not found
    assert (ours.stdout + ours.stderr).strip() == said


def test_outside_a_namespace_localhost_comes_from_the_hosts_file():
    """Here ``host localhost`` would ask the DNS servers (and off this machine): not run."""
    result = subprocess.run([sys.executable, "-m", "testbed", "resolve", "-4", "localhost"],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "localhost has address 127.0.0.1"


@pytest.mark.parametrize("target", ["", "a b", "x" * 300])
def test_bad_input_is_one_line(target):
    result = subprocess.run([sys.executable, "-m", "testbed", "resolve", target],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "not a name or an address" in one_line(result.stderr)
