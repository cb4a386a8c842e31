"""testbed sniff against tcpdump: one testbed nc exchange, captured by both at once.

In a namespace of the test's own (so nothing else on loopback is captured): the file
testbed sniff writes reads back in tcpdump with the packets tcpdump itself captured,
each once, with the same addresses, ports and TCP flags.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import (
    no_traceback,
    one_line,
    require_root,
    require_tool,
    sigint_as_in_a_terminal,
)

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{6} IP (\S+) > (\S+): Flags \[([^\]]+)\]")


class Capture:
    """A capturing process (argv: run in a namespace): ready once it says ``listening on``."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, preexec_fn=sigint_as_in_a_terminal)
        self.lines: list[str] = []
        deadline = time.monotonic() + 10
        first = self.proc.stderr.readline()  # type: ignore[union-attr]
        assert "listening on" in first, first + self.stop()
        assert time.monotonic() < deadline
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.append(line.rstrip("\n"))

    def wait_for_close(self, seconds: float = 5) -> None:
        """Until the lines show both FINs and the ACK of the last (bounded)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            fins = [i for i, flow in enumerate(flows(self.lines)) if "F" in flow[2]]
            if len(fins) == 2 and len(flows(self.lines)) > fins[1] + 1:
                return
            time.sleep(0.05)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err or ""


def flows(text_lines: list[str]) -> list[tuple[str, str, str]]:
    return [m.groups() for line in text_lines if (m := LINE.match(line))]


def tcpdump_read(tcpdump: str, path: str) -> list[tuple[str, str, str]]:
    result = subprocess.run([tcpdump, "-n", "-S", "-r", path], capture_output=True, text=True,
                            timeout=20)
    assert result.returncode == 0, result.stderr
    return flows(result.stdout.splitlines())


def shows_one_connection(printed: list[tuple[str, str, str]], service: str) -> None:
    """The three-way handshake first, a FIN from each side, the last FIN acknowledged."""
    client = printed[0][0]
    assert printed[:3] == [(client, service, "S"), (service, client, "S."),
                           (client, service, ".")]
    assert (client, service, "F.") in printed and (service, client, "F.") in printed
    assert printed[-1][2] == "."


def test_capture_agrees_with_tcpdump(netns, tmp_path):
    tcpdump = require_tool("tcpdump")
    server = netns.serve()
    port = str(server.port)
    ours_file, theirs_file = str(tmp_path / "ours.pcap"), str(tmp_path / "theirs.pcap")
    theirs = Capture(netns.argv(tcpdump, "-Z", "root", "--immediate-mode", "-i", "lo", "-n",
                                "-U", "-w", theirs_file, "tcp", "port", port))
    ours = Capture(netns.argv(sys.executable, "-m", "testbed", "sniff", "-i", "lo", "--port",
                              port, "-w", ours_file, "--print"))
    try:
        exchange = netns.run(sys.executable, "-m", "testbed", "nc", "-N", "127.0.0.1", port,
                             input="hello\n")
        assert exchange.stdout == "hello\n", exchange.stderr
        ours.wait_for_close()
    finally:
        ours_err, _ = ours.stop(), theirs.stop()
    no_traceback(ours_err)
    printed = flows(ours.lines)
    assert printed == tcpdump_read(tcpdump, ours_file)  # tcpdump reads our file, same packets
    assert printed == tcpdump_read(tcpdump, theirs_file)  # each once, as libpcap captures them
    shows_one_connection(printed, f"127.0.0.1.{port}")
    assert re.search(r"Flags \[P\.\], seq \d+:\d+, ack \d+, win \d+, length 6", "\n".join(ours.lines))


def test_count_and_protocol_bound_the_capture(netns):
    sniff = Capture(netns.argv(sys.executable, "-m", "testbed", "sniff", "--proto", "icmp",
                               "-c", "2", "--timeout", "10"))
    netns.run(sys.executable, "-m", "testbed", "ping", "-c", "3", "-i", "0.05", "::1")
    sniff.proc.wait(timeout=10)
    err = sniff.stop()
    assert sniff.proc.returncode == 0, err
    assert "2 packets captured" in err
    sniff.reader.join(5)
    assert [line.split(" ", 1)[1].split(",")[:2] for line in sniff.lines] == [
        ["IP6 ::1 > ::1: ICMP6", " echo request"], ["IP6 ::1 > ::1: ICMP6", " echo reply"]]


@pytest.mark.parametrize("args, words", [
    (["-i", "no-such-if0"], "no interface"),
    (["--host", "localhost"], "an address"),
    (["--proto", "sctp"], "invalid choice"),
    (["--print"], "goes with -w"),
])
def test_bad_input_is_one_line(args, words):
    result = subprocess.run([sys.executable, "-m", "testbed", "sniff", "--timeout", "1", *args],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert words in one_line(result.stderr)


def test_without_root_it_says_so_in_one_line():
    require_root()  # to become nobody
    setpriv = require_tool("setpriv")
    result = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                             sys.executable, "-m", "testbed", "sniff", "-c", "1"],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "needs root (CAP_NET_RAW)" in one_line(result.stderr)
