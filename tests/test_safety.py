"""The loopback guard: loopback targets pass, anything else is refused before any socket exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clients.safety import UnsafeTarget, ensure_allowed, ensure_loopback, labs_up, resolve

ROOT = Path(__file__).resolve().parent.parent

#: Audit events that would mean a socket was made, something was sent, or a name was looked up.
WATCHED = ("socket.__new__", "socket.connect", "socket.sendto", "socket.sendmsg", "socket.bind",
           "socket.getaddrinfo", "socket.gethostbyname")

HOOK = f"""
import sys
seen = []
def hook(event, args):
    if event in {WATCHED!r}:
        seen.append(event)
        raise RuntimeError("the guard let a socket event through: " + event)
sys.addaudithook(hook)
"""


def run_hooked(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter whose audit hook refuses any socket event."""
    return subprocess.run([sys.executable, "-c", HOOK + code], capture_output=True, text=True,
                          timeout=20, cwd=ROOT)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_passes(host):
    ensure_loopback(host)


@pytest.mark.parametrize("host", ["10.0.0.1", "192.0.2.1", "2001:db8::1", "0.0.0.0",
                                  "::ffff:10.0.0.1"])
def test_anything_else_is_refused_in_one_line(host):
    with pytest.raises(UnsafeTarget) as caught:
        ensure_loopback(host)
    message = str(caught.value)
    assert "\n" not in message
    assert host.strip("[]") in message and "--allow-remote" in message


def test_allow_remote_lets_it_through_without_looking():
    ensure_loopback("10.0.0.1", allow_remote=True)


def test_an_address_names_itself():
    assert resolve("[::1]") == ["::1"]
    assert resolve("127.0.0.1") == ["127.0.0.1"]


def test_localhost_resolves_to_loopback_only():
    assert resolve("localhost")
    assert all(address in ("127.0.0.1", "::1") or address.startswith("127.")
               for address in resolve("localhost"))


def test_refusal_makes_no_socket_and_looks_nothing_up():
    result = run_hooked("""
from clients.safety import UnsafeTarget, ensure_loopback
try:
    ensure_loopback("10.0.0.1")
except UnsafeTarget as exc:
    print("refused:", exc)
print("events:", seen)
""")
    assert result.returncode == 0, result.stderr
    assert "refused: refusing to send traffic to 10.0.0.1" in result.stdout
    assert "events: []" in result.stdout


@pytest.mark.parametrize("host", ["198.18.0.1", "fd74:6573:7462::1"])
def test_a_lab_address_is_refused_when_no_lab_is_up(host, tmp_path, monkeypatch):
    monkeypatch.setenv("TESTBED_LAB_DIR", str(tmp_path))
    with pytest.raises(UnsafeTarget) as caught:
        ensure_allowed(host)
    assert "not a loopback address nor one of a lab that is up" in str(caught.value)


def test_a_state_file_alone_does_not_make_a_lab_up(tmp_path, monkeypatch):
    """A lab whose namespaces are gone (a reboot, a manual ip netns del) is not up."""
    monkeypatch.setenv("TESTBED_LAB_DIR", str(tmp_path))
    (tmp_path / "gone.json").write_text(json.dumps({
        "format": "testbed-lab/1", "name": "gone", "status": "up",
        "ipv4": "198.18.0.0/24", "ipv6": "fd74:6573:7462::/64",
        "namespaces": [{"name": "tb-gone-never-made", "inode": 1}]}))
    assert labs_up() == []
    with pytest.raises(UnsafeTarget):
        ensure_allowed("198.18.0.1")
    ensure_allowed("127.0.0.1")
