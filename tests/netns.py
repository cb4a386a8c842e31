"""Network namespaces a test makes for itself: its own loopback, nftables rules, veth pairs.

The packet tools' checks that need drops, rejects or an Ethernet link run inside a
namespace the fixture creates under a unique name and removes by that name at
teardown, also on failure, together with every server started in it (reaped by
PID) and every nftables table it loaded (deleted by name, before the namespace).
The fixtures (``netns``, ``veth_pair``) are in tests/conftest.py: they need root
(and ``ip``, ``nft``), skip with a reason otherwise and fail under TESTBED_REQUIRE_ROOT=1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from testbed.processes import READY_LINE, Endpoint, ServerProcess


class Netns:
    """One namespace: ``run`` and ``serve`` inside it, ``nft`` to load a table into it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.servers: list[ServerProcess] = []
        self.tables: list[tuple[str, str]] = []
        self.etc: list[Path] = []

    def argv(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *command]

    def run(self, *command: str, timeout: float = 25, check: bool = False,
            input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*command), capture_output=True, text=True,
                              timeout=timeout, check=check, input=input, env=env)

    def testbed(self, *args: str, timeout: float = 25,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "testbed", *args, timeout=timeout, env=env)

    def serve(self, *options: str) -> ServerProcess:
        """``testbed serve OPTIONS`` inside the namespace (port 0 unless given), ready."""
        options_list = list(options)
        if "--port" not in options_list:
            options_list += ["--port", "0"]
        proc = ServerProcess(self.argv(sys.executable, "-m", "servers", "--quiet", *options_list))
        self.servers.append(proc)
        match = proc.wait_for_line(READY_LINE, 15)
        proc.endpoint = Endpoint.parse(match.group(0))  # type: ignore[assignment]
        return proc

    def nft(self, family: str, table: str, body: str) -> None:
        """Load ``table FAMILY TABLE { BODY }``; it is deleted by name at teardown."""
        self.tables.append((family, table))
        result = self.run("nft", "-f", "-", input=f"table {family} {table} {{\n{body}\n}}\n")
        assert result.returncode == 0, result.stderr

    def etc_file(self, name: str, text: str) -> None:
        """/etc/netns/NAME/<name>: ``ip netns exec`` shows it as /etc/<name> inside."""
        directory = Path("/etc/netns") / self.name
        if directory not in self.etc:
            directory.mkdir(parents=True, exist_ok=False)
            self.etc.append(directory)
        path = directory / name
        self.etc.insert(0, path)
        path.write_text(text)

    def cleanup(self) -> None:
        for proc in self.servers:
            proc.cleanup()
        for path in self.etc:  # files first, then their directory
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)
        for family, table in self.tables:
            self.run("nft", "delete", "table", family, table)
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=10)


def make_netns(tag: str) -> Netns:
    name = f"tb-{tag}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    ns = Netns(name)
    ns.run("ip", "link", "set", "lo", "up", check=True)
    return ns


def join_by_veth(a: Netns, b: Netns) -> dict[str, str]:
    """Join two namespaces with a veth pair (eth0 in each), 198.18.255.1/2 on it.

    The addresses are from the lab's block (RFC 2544's 198.18.0.0/15), in its last /24.
    The pair goes away with its namespaces.
    """
    veth = f"tbv{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"],
                   check=True, capture_output=True, timeout=10)
    subprocess.run(["ip", "link", "set", veth, "netns", a.name, "name", "eth0"],
                   check=True, capture_output=True, timeout=10)
    subprocess.run(["ip", "link", "set", veth + "p", "netns", b.name, "name", "eth0"],
                   check=True, capture_output=True, timeout=10)
    info = {"a": "198.18.255.1", "b": "198.18.255.2"}
    for ns, address in ((a, info["a"]), (b, info["b"])):
        ns.run("ip", "addr", "add", f"{address}/24", "dev", "eth0", check=True)
        ns.run("ip", "link", "set", "eth0", "up", check=True)
    return info


def as_lab(directory: Path, name: str, spaces: list[Netns], ipv4: str, ipv6: str) -> dict:
    """Describe namespaces as an up lab in ``directory`` (a TESTBED_LAB_DIR of the test's own).

    The guard (clients/safety.py) accepts a lab's addresses only from inside that lab's
    namespaces while its state file says it is up; this writes such a file, in the
    format testbed/lab/state.py documents, for namespaces a test made itself. The
    returned environment points a process at it.
    """
    state = {"format": "testbed-lab/1", "name": name, "status": "up", "ipv4": ipv4,
             "ipv6": ipv6, "hosts": [],
             "namespaces": [{"name": ns.name, "inode": os.stat(f"/run/netns/{ns.name}").st_ino}
                            for ns in spaces]}
    (directory / f"{name}.json").write_text(json.dumps(state))
    return {**os.environ, "TESTBED_LAB_DIR": str(directory)}
