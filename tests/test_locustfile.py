"""The locustfile on its own: its pure parts in-process, and plain ``locust`` runs of it.

Locust monkey-patches the interpreter that imports it, so this module never
imports ``locust``, ``loadtests.locustfile`` or ``loadtests.shapes``: it tests
``loadtests.common`` and ``loadtests.stepstats`` directly and runs locust itself
as a child process (headless, and once with its web UI on 127.0.0.1).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from clients.harness import parse_endpoint
from loadtests import stepstats
from loadtests.common import Schedule, make_payload, parse_steps
from testbed.load.summary import percentile
from testbed.processes import ManagedProcess, free_port
from tests.conftest import no_traceback

ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = ROOT / "loadtests" / "locustfile.py"
RUNNERS = ROOT / "loadtests" / "runners.py"


# -- pure parts ------------------------------------------------------------------------------


def test_parse_endpoint() -> None:
    assert parse_endpoint("tcp://127.0.0.1:9000") == ("tcp", "127.0.0.1", 9000)
    assert parse_endpoint("udp://[::1]:53") == ("udp", "::1", 53)
    assert parse_endpoint("localhost:80") == ("tcp", "localhost", 80)
    assert parse_endpoint("http://127.0.0.1:8080") == ("http", "127.0.0.1", 8080)
    for bad in ("https://127.0.0.1:443", "ftp://127.0.0.1:21", "tcp://127.0.0.1",
                "tcp://127.0.0.1:99999", "", None):
        with pytest.raises(ValueError):
            parse_endpoint(bad)


def test_payload_is_one_line_of_the_asked_size() -> None:
    for size in (1, 2, 64, 1000):
        payload = make_payload(size)
        assert len(payload) == size and payload.endswith(b"\n") and payload.count(b"\n") == 1
        assert payload.upper() != payload or size == 1  # an upper-case reply is told apart
    with pytest.raises(ValueError):
        make_payload(0)


def test_schedule_phases() -> None:
    schedule = Schedule((1, 10, 50), window=3.0, warmup=1.0)
    assert schedule.duration == 12.0
    assert schedule.window_bounds(1) == (5.0, 8.0)
    assert schedule.phase_at(0.5) == stepstats_phase(0, 1, False)
    assert schedule.phase_at(1.0) == stepstats_phase(0, 1, True)
    assert schedule.phase_at(4.2) == stepstats_phase(1, 10, False)
    assert schedule.phase_at(11.9) == stepstats_phase(2, 50, True)
    assert schedule.phase_at(12.0) is None
    assert schedule.users_at(12.1) == 50 and schedule.users_at(13.0) is None  # the tail
    assert schedule.next_change(0.0) == 4.0 and schedule.next_change(8.5) == 12.25
    assert parse_steps("1, 10,50") == [1, 10, 50]
    for bad in ("", "0", "a,b", "5,-1"):
        with pytest.raises(ValueError):
            parse_steps(bad)
    with pytest.raises(ValueError):
        Schedule((), window=1.0)


def test_schedule_with_a_longer_first_warmup() -> None:
    """2 s to warm a fresh server, 0.5 s before each later step: 2+3, then 0.5+3 twice."""
    schedule = Schedule((1, 10, 50), window=3.0, warmup=0.5, first_warmup=2.0)
    assert schedule.duration == 12.0
    assert [schedule.window_bounds(i) for i in range(3)] == [(2.0, 5.0), (5.5, 8.5), (9.0, 12.0)]
    assert schedule.phase_at(1.9) == stepstats_phase(0, 1, False)
    assert schedule.phase_at(2.0) == stepstats_phase(0, 1, True)
    assert schedule.phase_at(5.2) == stepstats_phase(1, 10, False)
    assert schedule.phase_at(8.6) == stepstats_phase(2, 50, False)
    assert schedule.phase_at(11.99) == stepstats_phase(2, 50, True)
    assert schedule.phase_at(12.0) is None
    assert schedule.next_change(0.0) == 5.0 and schedule.next_change(5.0) == 8.5
    # the most a user may wait before its first request: a later step's 0.5 s, but with
    # one step only its own 2 s (--start-jitter's bound)
    assert schedule.shortest_warmup == 0.5
    assert Schedule((10,), window=3.0, warmup=0.5, first_warmup=2.0).shortest_warmup == 2.0
    options = SimpleNamespace(steps="1,10,50", step_time=3.0, warmup=0.5, first_warmup=2.0)
    assert Schedule.from_options(options) == schedule
    options.first_warmup = -1.0  # the option's default: the same as --warmup
    assert Schedule.from_options(options).window_bounds(0) == (0.5, 3.5)


def stepstats_phase(index: int, users: int, measured: bool) -> Any:
    from loadtests.common import Phase

    return Phase(index, users, measured)


class _Runner:
    user_count = 3
    client_id = "worker-a"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def send_message(self, kind: str, data: dict[str, Any]) -> None:
        self.sent.append((kind, data))


def test_an_attempt_counts_in_the_window_it_started_in() -> None:
    """A window keeps the attempts that started in it, also those that end after its time
    is up, and is reported only once the last of them has ended."""
    runner = _Runner()
    state = stepstats.STATE
    state.runner, state.total, state.draining = runner, 0, []
    state.served_total, state.failures_total = 0, {}
    state.users = {1, 2, 3}
    warmup = stepstats.take(1)  # started before the window opened
    stepstats._open(0, 3)
    first, second, slow = stepstats.take(1), stepstats.take(2), stepstats.take(2)
    failure = SimpleNamespace(kind="io_timeout")
    stepstats.on_request("tcp", "x", 0.5, 64, None, context=first)
    stepstats.on_request("tcp", "x", 2.0, 64, None, context=second)
    stepstats.on_request("tcp", "x", 0.1, 64, None, context=warmup)  # not the window's
    stepstats.on_request("tcp", "x", 0.1, 64, None)  # someone else's request
    window = stepstats._end(0)
    later = stepstats.take(3)  # the window's time is up: the next warm-up's
    assert window is not None and window.in_flight == 1 and not runner.sent
    stepstats.on_request("tcp", "x", 1000.0, 0, failure, context=slow)  # timed out, late
    stepstats.on_request("tcp", "x", 0.1, 64, None, context=later)
    assert window.in_flight == 0
    stepstats._report(window, complete=True)
    assert state.total == 6 and state.served_total == 5
    assert state.failures_total == {"io_timeout": 1}
    ((kind, data),) = runner.sent
    record = data["window"]
    assert kind == stepstats.MESSAGE and data["worker"] == "worker-a"
    assert (record["started"], record["requests"], record["served"]) == (3, 3, 2)
    assert record["bytes"] == 128 and record["unfinished"] == 0
    assert record["failures"] == {"io_timeout": 1} and record["max_ms"] == 2.0
    assert record["complete"] and record["users_start"] == 3
    assert record["replies_per_user"] == [0, 1, 1]  # user 3 got nothing in the window
    assert sum(count for _, count in record["hist"]) == 2
    assert state.phase.window is None  # the next warm-up opens new connections


def test_histogram_percentiles_within_one_percent() -> None:
    hist: dict[int, int] = {}
    latencies = [0.05 * 1.01 ** i for i in range(600)]  # 50 µs to about 20 ms
    for ms in latencies:
        key = int(math.log(ms * 1000.0 + 1.0) * stepstats.BUCKETS_PER_E)
        hist[key] = hist.get(key, 0) + 1
    for fraction in (0.5, 0.95, 0.99):
        exact = latencies[math.ceil(fraction * len(latencies)) - 1]
        found = percentile(hist, fraction, stepstats.BUCKETS_PER_E)
        assert found is not None and abs(found - exact) / exact < 0.015, (fraction, found, exact)


def test_collector_keeps_every_worker_apart(tmp_path: Path) -> None:
    path = tmp_path / "steps.json"
    collector = stepstats.Collector(str(path))
    collector.reset(SimpleNamespace(steps="2,4", step_time=3.0, warmup=1.0))
    window = {"step": 0, "requests": 5}
    for worker in ("a", "b"):
        collector.on_message(msg=SimpleNamespace(data={"worker": worker, "window": window}))
    assert not collector.finished({"a", "b"})
    collector.on_message(msg=SimpleNamespace(data={"worker": "a", "final": {"requests": 9}}))
    collector.on_message(msg=SimpleNamespace(data={"worker": "b", "final": {"requests": 7}}))
    assert collector.finished({"a", "b"})
    data = json.loads(path.read_text())
    assert data["schedule"] == {"steps": [2, 4], "window_s": 3.0, "warmup_s": 1.0,
                                "first_warmup_s": 1.0}
    assert data["workers"]["a"] == {"windows": [window], "final": {"requests": 9}}
    assert set(data["workers"]) == {"a", "b"}


# -- locust itself ---------------------------------------------------------------------------


def test_master_quit_replacement_matches_installed_locust() -> None:
    """The locustfile replaces locust's MasterRunner.quit (a fixed 0.5 s wait, four times a
    run) only while its body is the one it was written against. Another locust keeps its
    own quit, which is correct but costs about 2 s a run: that shows here as a skip with
    its reason, not as a failure of a working install."""
    check = ("import sys; from loadtests.runners import fast_quit_supported; "
             "sys.exit(0 if fast_quit_supported() else 3)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          timeout=25, cwd=ROOT, check=False)
    if done.returncode == 3:
        pytest.skip("this locust's MasterRunner.quit is not the one loadtests/runners.py "
                    "mirrors: runs keep locust's quit, about 2 s slower each")
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_master_gives_up_on_missing_workers_once(tmp_path: Path) -> None:
    """The master waits for its workers itself (finely, in ``init``) before locust's own
    wait: together they still give up after --expect-workers-max-wait, not twice that."""
    process = locust("--master", "--headless", "--master-bind-host", "127.0.0.1",
                     "--master-bind-port", str(free_port()), "--expect-workers", "1",
                     "--expect-workers-max-wait", "4", "--host", "tcp://127.0.0.1:9",
                     tmp_path=tmp_path, files=f"{LOCUSTFILE},{RUNNERS}")
    assert finish(process) == 1
    log = process.stderr_text()
    assert "Gave up waiting for workers to connect" in log, log
    no_traceback(log)
    stamps = [datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
              for line in log.splitlines() if "Starting Locust" in line or "Gave up" in line]
    waited = (stamps[-1] - stamps[0]).total_seconds()
    assert 3.5 < waited < 7.5, waited  # 4 s and locust's next look (1 s), not 8 s or more


def locust(*args: str, tmp_path: Path, name: str = "locust",
           files: str = str(LOCUSTFILE)) -> ManagedProcess:
    return ManagedProcess([sys.executable, "-m", "locust", "-f", files, *args],
                          stdout=open(tmp_path / f"{name}.out", "wb"),  # noqa: SIM115
                          stderr_path=tmp_path / f"{name}.log", cwd=tmp_path)


def finish(process: ManagedProcess, timeout: float = 20.0) -> int:
    try:
        return process.popen.wait(timeout)
    finally:
        process.stop()


def headless(tmp_path: Path, host: str, *extra: str, seconds: int = 3) -> dict[str, Any]:
    process = locust("--headless", "-u", "2", "-r", "10", "-t", f"{seconds}s", "--host", host,
                     "--json-file", str(tmp_path / "stats"), "--csv", str(tmp_path / "stats"),
                     "--exit-code-on-error", "0", "--only-summary", *extra, tmp_path=tmp_path)
    status = finish(process)
    no_traceback(process.stderr_text())
    assert status == 0, process.stderr_text()
    (entry,) = json.loads((tmp_path / "stats.json").read_text())
    return entry


def test_plain_headless_tcp_run(serve: Any, tmp_path: Path) -> None:
    server = serve("select", "upper")
    entry = headless(tmp_path, server.endpoint.url, "--expect", "upper", "--payload-size", "32")
    assert entry["method"] == "tcp" and entry["name"] == "persistent 32B"
    assert entry["num_requests"] > 0 and entry["num_failures"] == 0
    assert entry["total_content_length"] == 32 * entry["num_requests"]


def test_http_scheme_picks_locusts_fasthttpuser(serve: Any, tmp_path: Path) -> None:
    """Plain locust against the http service: GET / through FastHttpUser, every response
    verified, no failure."""
    server = serve("threading", "http")
    url = "http://" + server.endpoint.url.partition("://")[2]
    entry = headless(tmp_path, url)
    assert entry["method"] == "GET" and entry["name"] == "GET / (persistent)"
    assert entry["num_requests"] > 0 and entry["num_failures"] == 0
    assert entry["total_content_length"] == len(b"Hello, World!") * entry["num_requests"]


@pytest.mark.slow
def test_udp_scheme_picks_the_udp_user(serve: Any, tmp_path: Path) -> None:
    server = serve("threading", "echo", udp=True)
    entry = headless(tmp_path, server.endpoint.url, "--mode", "connect")
    assert entry["method"] == "udp" and entry["name"] == "connect 64B"
    assert entry["num_requests"] > 0 and entry["num_failures"] == 0


def test_failures_are_grouped_by_class(tmp_path: Path) -> None:
    """Nothing listens there: every attempt fails, and locust's table says "refused"."""
    entry = headless(tmp_path, f"tcp://127.0.0.1:{free_port()}", "--mode", "connect",
                     seconds=2)
    assert entry["num_requests"] > 0 and entry["num_failures"] == entry["num_requests"]
    # a failing user waits a little before it tries again: no hot loop on a dead server
    assert entry["num_requests"] < 1.5 * 2 * 2 / 0.01
    failures = (tmp_path / "stats_failures.csv").read_text().splitlines()
    assert len(failures) == 2 and ",refused," in failures[1], failures


def test_remote_host_refused(tmp_path: Path) -> None:
    process = locust("--headless", "-u", "1", "-t", "2s", "--host", "tcp://10.0.0.1:9",
                     tmp_path=tmp_path)
    status = finish(process)
    assert status == 2
    assert "locust: error: refusing to send traffic to 10.0.0.1" in process.stderr_text()


def _page(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
        return response.read()


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def _post(url: str, form: dict[str, str]) -> Any:
    data = urllib.parse.urlencode(form).encode()
    with urllib.request.urlopen(url, data=data, timeout=5) as response:  # noqa: S310
        return json.loads(response.read())


def _wait_for(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


@pytest.mark.slow
def test_web_ui(serve: Any, tmp_path: Path) -> None:
    """The web UI starts a run with the locustfile's own options, and (with runners.py) a
    host typed into its form picks the user class of that host's scheme."""
    tcp = serve("select", "echo")
    udp = serve("select", "echo", udp=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = locust("--host", tcp.endpoint.url, "--web-host", "127.0.0.1", "--web-port",
                     str(port), tmp_path=tmp_path, files=f"{LOCUSTFILE},{RUNNERS}")
    try:
        page = _wait_for(lambda: _page(base + "/"))
        assert b"payload_size" in page  # the custom options are in the form
        swarm = {"user_count": "2", "spawn_rate": "10", "host": tcp.endpoint.url,
                 "payload_size": "16"}
        assert _post(base + "/swarm", swarm)["success"]

        def tcp_requests() -> int:
            entries = [e for e in _get(base + "/stats/requests")["stats"]
                       if e["name"] == "persistent 16B" and e["method"] == "tcp"]
            return entries[0]["num_requests"] if entries else 0
        assert _wait_for(tcp_requests) > 0
        assert _post(base + "/stop", {})["success"]

        assert _post(base + "/swarm", {**swarm, "host": udp.endpoint.url})["success"]

        def udp_requests() -> int:
            stats = _get(base + "/stats/requests")["stats"]
            return sum(e["num_requests"] for e in stats if e["method"] == "udp")
        assert _wait_for(udp_requests) > 0
        stats = _get(base + "/stats/requests")
        assert not [e for e in stats["stats"] if e["method"] == "tcp"]
        assert not stats["errors"]
        refused = _post(base + "/swarm", {**swarm, "host": "tcp://10.0.0.1:9"})
        assert not refused["success"] and "not a loopback address" in refused["message"]
    finally:
        process.stop()
    no_traceback(process.stderr_text())
