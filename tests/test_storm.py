"""``testbed storm``: counts that add up, denial counted by class, bounds, and the loopback guard."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.harness import FAILURE_CLASSES
from clients.storm import main, storm
from tests.conftest import no_traceback
from tests.test_safety import ROOT, run_hooked


def run_storm(*args: str) -> subprocess.CompletedProcess[str]:
    """``testbed storm`` as a user runs it, in its own process."""
    return subprocess.run([sys.executable, "-m", "testbed", "storm", *args], capture_output=True,
                          text=True, timeout=28, cwd=ROOT)


def json_storm(*args: str) -> dict:
    result = run_storm(*args, "--json")
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    summary = json.loads(result.stdout)
    assert_adds_up(summary)
    return summary


def assert_adds_up(summary: dict) -> None:
    assert list(summary["failures"]) == list(FAILURE_CLASSES)  # every class, even at zero
    assert summary["served"] + sum(summary["failures"].values()) == summary["attempts"]
    assert summary["attempts"] + summary["not_attempted"] == summary["clients"]


def test_threading_serves_all_fifty_despite_the_delay(serve):
    server = serve("threading", "echo", "--delay", "1", "--quiet")
    summary = json_storm(server.host, str(server.port), "--clients", "50", "--timeout", "10")
    assert summary["attempts"] == summary["served"] == 50, summary
    latency = summary["latency"]
    assert 0.9 <= latency["min"] <= latency["p50"] <= latency["p99"] <= latency["max"] < 10


@pytest.mark.slow
def test_sequential_with_backlog_one_denies_and_says_how(serve):
    """50 at once against one-at-a-time with a 1-slot queue: a few served, the rest timed out.

    On Linux (tcp_abort_on_overflow=0) the overflowing queue drops handshakes silently, so
    the denied see timeouts, counted apart (io_timeout, connect_timeout), not refusals.
    """
    server = serve("sequential", "echo", "--backlog", "1", "--delay", "1", "--quiet")
    started = time.monotonic()
    summary = json_storm(server.host, str(server.port), "--clients", "50", "--timeout", "3")
    elapsed = time.monotonic() - started
    failures = summary["failures"]
    denied = summary["attempts"] - summary["served"]
    assert summary["attempts"] == 50
    assert 1 <= summary["served"] <= 10, summary  # one per second, for about three seconds
    assert failures["io_timeout"] + failures["connect_timeout"] >= 0.8 * denied, summary
    assert failures["mismatch"] == failures["closed_early"] == 0, summary
    assert elapsed < 20  # each client is bounded by its two timeouts


def test_text_summary_lists_every_class(serve):
    server = serve("select", "upper", "--quiet")
    result = run_storm(server.host, str(server.port), "--clients", "20", "--concurrency", "5",
                       "--timeout", "5", "--service", "upper", "--payload", "make me loud")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"storm 127.0.0.1:{server.port} tcp: 20 clients, 5 at a time")
    counts = {line.split()[0]: int(line.split()[1]) for line in lines[1:]
              if len(line.split()) == 2 and line.split()[1].isdigit()}
    assert counts["attempts"] == counts["served"] == 20
    assert all(counts[kind] == 0 for kind in FAILURE_CLASSES)
    assert any(line.strip().startswith("latency of served: min") for line in lines)


def test_every_client_refused_is_counted_as_refused():
    with socket.socket() as placeholder:  # bound, not listening: a RST for every SYN
        placeholder.bind(("127.0.0.1", 0))
        result = storm("127.0.0.1", placeholder.getsockname()[1], clients=30, concurrency=7,
                       timeout=2)
    assert (result.attempts, result.served, result.failures["refused"]) == (30, 0, 30)
    assert result.latency() is None


def test_udp_storm(serve):
    server = serve("threading", "echo", "--quiet", udp=True)
    summary = json_storm(server.host, str(server.port), "--udp", "--clients", "40",
                         "--timeout", "5")
    assert summary["transport"] == "udp"
    assert summary["served"] == 40, summary


def test_deadline_bounds_the_storm_in_time(serve):
    server = serve("sequential", "echo", "--delay", "1", "--quiet")
    started = time.monotonic()
    result = storm(server.host, server.port, clients=20, concurrency=1, timeout=5,
                   deadline=1.5)
    elapsed = time.monotonic() - started
    assert 1 <= result.attempts <= 3, result.as_dict()
    assert result.not_attempted == 20 - result.attempts
    assert result.served + sum(result.failures.values()) == result.attempts
    assert elapsed < 1.5 + 2 * 5  # nothing starts after the deadline; what runs is bounded


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(clients=st.integers(1, 25), concurrency=st.integers(1, 30),
       service=st.sampled_from(["echo", "upper"]))
def test_counts_always_add_up(serve_once, clients, concurrency, service):
    """Whatever the numbers, served plus every failure class is the attempts, and N of them."""
    result = storm("127.0.0.1", serve_once.port, clients=clients, concurrency=concurrency,
                   timeout=5, expect=service, payload=b"Hello\n")
    summary = result.as_dict()
    assert_adds_up(summary)
    assert summary["attempts"] == clients
    # the server is upper: replies checked as upper are served, checked as echo mismatch
    if service == "upper":
        assert summary["served"] == clients, summary
    else:
        assert summary["failures"]["mismatch"] == clients, summary


@pytest.fixture
def serve_once(serve):
    return serve("threading", "upper", "--quiet")


def test_loopback_guard_refuses_without_sending_anything():
    """An audit hook refuses any socket, connect, send or name lookup: the guard needs none."""
    result = run_hooked("""
from clients.storm import main
try:
    status = main(["10.0.0.1", "9", "--clients", "5", "--timeout", "1"])
except SystemExit as exc:
    status = exc.code
print("status:", status)
print("events:", seen)
""")
    assert "status: 2" in result.stdout, result.stdout + result.stderr
    assert "events: []" in result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("testbed storm: error: refusing to send traffic to 10.0.0.1")
    assert "--allow-remote" in result.stderr


def test_the_hook_does_see_a_storm_that_is_allowed():
    """The control: the same hook, a loopback target, and the socket events do show up."""
    result = run_hooked("""
from clients.storm import main
status = main(["127.0.0.1", "9", "--clients", "1", "--timeout", "1"])
print("events:", sorted(set(seen)))
""")
    # the first socket event (the address lookup) is refused, and counted as "other"
    assert "events: ['socket.getaddrinfo']" in result.stdout, result.stdout + result.stderr
    assert "other                 1" in result.stdout


@pytest.mark.parametrize("args", [
    ["127.0.0.1"],
    ["127.0.0.1", "70000"],
    ["127.0.0.1", "80", "--clients", "0"],
    ["127.0.0.1", "80", "--clients", "ten"],
    ["127.0.0.1", "80", "--timeout", "-1"],
    ["127.0.0.1", "80", "--concurrency", "5000"],
    ["127.0.0.1", "80", "--clients", "5000"],
    ["127.0.0.1", "80", "--service", "reverse"],
])
def test_bad_arguments_one_line_exit_2(args, capsys):
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("testbed storm: error:") and err.count("\n") == 1, err
