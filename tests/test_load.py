"""``testbed load`` and ``run_load``: real servers, real locust processes, real sockets.

Runs are short (a 1 s warm-up and a 2-3 s window); a run's fixed cost is locust's
start and orderly stop, about half a second. The default suite runs TCP persistent
against every registered model, connect mode and UDP against one model each;
the whole matrix is marked slow.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from clients.harness import FAILURE_CLASSES
from servers import registry
from testbed.load import LoadError, LoadSpec, read_ceiling, run_load
from testbed.load.summary import _bound
from tests.conftest import no_traceback, one_line

MODELS = registry.model_names()
UDP_MODELS = [name for name in MODELS if registry.get_model(name).udp]
UDP_MODEL = "select" if "select" in UDP_MODELS else UDP_MODELS[0]
STEP_KEYS = {"users", "window_s", "requests", "served", "served_share", "failures", "rps",
             "p50_ms", "p95_ms", "p99_ms", "max_ms", "server", "generator_bound"}
SERVER_KEYS = {"cpu_s", "cpu_us_per_request", "peak_rss_mib", "peak_threads", "peak_processes",
               "peak_fds"}
TOP_KEYS = {"run_id", "started", "model", "service", "options", "versions", "placement",
            "warmup_s", "first_warmup_s", "complete", "error", "generator_ceiling_rps", "steps",
            "requests", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "failures", "server",
            "generator_bound"}


@pytest.fixture(autouse=True)
def _own_calibration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A calibration stored by the user must not change what these tests see."""
    monkeypatch.setenv("TESTBED_CALIBRATION", str(tmp_path / "calibration.json"))


def spec(tmp_path: Path, *server: str, **fields: Any) -> LoadSpec:
    # Short windows: every attempt is counted in the window it started in, however short
    defaults: dict[str, Any] = dict(steps=[1], step_time=0.6, warmup=0.3, workers=1,
                                    locust_html=False, out_dir=tmp_path / "results")
    defaults.update(fields)
    return LoadSpec(server_options=[*server, "--quiet"] if server else [], **defaults)


def check_summary(summary: dict[str, Any], out_dir: Path) -> None:
    """summary.json on disk is the summary returned, and has every documented field."""
    on_disk = json.loads((out_dir / summary["run_id"] / "summary.json").read_text())
    assert on_disk == summary
    assert TOP_KEYS <= summary.keys()
    assert summary["versions"]["locust"] and summary["versions"]["python"]
    for step in summary["steps"]:
        assert STEP_KEYS <= step.keys()
        assert set(step["failures"]) == set(FAILURE_CLASSES)
        assert step["requests"] == step["served"] + sum(step["failures"].values())
        if step["server"] is not None:
            assert SERVER_KEYS <= step["server"].keys()
    for name in ("locust_stats.csv", "steps.json"):
        assert (out_dir / summary["run_id"] / name).exists(), name


def assert_clean_run(summary: dict[str, Any]) -> None:
    assert summary["complete"], summary["error"]
    assert summary["error"] is None
    step = summary["steps"][0]
    assert step["served"] > 0
    assert sum(step["failures"].values()) == 0, step["failures"]
    assert step["p50_ms"] is not None and step["p50_ms"] <= step["p99_ms"] <= step["max_ms"]
    server = step["server"]
    assert server is not None and server["cpu_s"] > 0 and server["cpu_us_per_request"] > 0
    assert server["peak_processes"] >= 1 and server["peak_rss_mib"] > 1


@pytest.mark.parametrize("model", [  # threading and sequential: the fairness test's loads
    pytest.param(model, marks=() if model in ("select", "forking") else pytest.mark.slow)
    for model in MODELS])
def test_tcp_persistent_every_model(model: str, tmp_path: Path) -> None:
    summary = run_load(spec(tmp_path, "--model", model, "--service", "echo"))
    check_summary(summary, tmp_path / "results")
    assert_clean_run(summary)
    assert summary["model"] == model and summary["transport"] == "tcp"


def test_tcp_connect_mode(tmp_path: Path) -> None:
    """Also a schedule shorter than locust's tick (0.1 s warm-up, 0.5 s window, over before
    its second tick): the first users go out at the first tick, not after a wait for the
    next change."""
    summary = run_load(spec(tmp_path, "--model", "threading", "--service", "upper",
                            steps=[2], mode="connect", expect="upper", warmup=0.1,
                            step_time=0.5))
    check_summary(summary, tmp_path / "results")
    assert_clean_run(summary)
    assert summary["options"]["mode"] == "connect"


@pytest.mark.parametrize("mode", ["persistent", pytest.param("connect", marks=pytest.mark.slow)])
def test_udp(mode: str, tmp_path: Path) -> None:
    summary = run_load(spec(tmp_path, "--model", UDP_MODEL, "--service", "echo", "--udp",
                            udp=True, mode=mode, steps=[2]))
    check_summary(summary, tmp_path / "results")
    assert_clean_run(summary)
    assert summary["transport"] == "udp"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["persistent", "connect"])
@pytest.mark.parametrize("model", MODELS)
def test_tcp_matrix(model: str, mode: str, tmp_path: Path) -> None:
    summary = run_load(spec(tmp_path, "--model", model, "--service", "upper",
                            mode=mode, expect="upper", step_time=3.0))
    check_summary(summary, tmp_path / "results")
    assert_clean_run(summary)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["persistent", "connect"])
@pytest.mark.parametrize("model", UDP_MODELS)
def test_udp_matrix(model: str, mode: str, tmp_path: Path) -> None:
    summary = run_load(spec(tmp_path, "--model", model, "--service", "echo", "--udp",
                            udp=True, mode=mode, step_time=3.0))
    check_summary(summary, tmp_path / "results")
    assert_clean_run(summary)


@pytest.mark.parametrize(("model", "mode"), [("select", "persistent"), pytest.param(
    "forking", "connect", marks=pytest.mark.slow)])
def test_cpu_per_request_is_measured(model: str, mode: str, tmp_path: Path) -> None:
    """5 ms of CPU per request shows as at least 4,000 µs: measured from the process tree,
    including the forking model's children, each of which lives for one request."""
    summary = run_load(spec(tmp_path, "--model", model, "--service", "echo", "--work-ms", "5",
                            mode=mode))
    assert summary["complete"], summary["error"]
    step = summary["steps"][0]
    assert step["served"] > 20
    assert step["server"]["cpu_us_per_request"] >= 4000, step["server"]
    if sys.platform == "linux":  # the host's share of the CPU time over the window
        assert 0.0 <= step["host_steal"] < 1.0, step
    if model == "select":  # one process: nothing else to count
        assert step["server"]["cpu_us_per_request"] < 15000, step["server"]


def test_two_workers_add_up(tmp_path: Path) -> None:
    summary = run_load(spec(tmp_path, "--model", "select", "--service", "echo",
                            steps=[4, 8], workers=2, warmup=0.5, first_warmup=1.2))
    check_summary(summary, tmp_path / "results")
    assert summary["complete"], summary["error"]
    # The fresh server's warm-up is the longer one; later steps get --warmup's 0.5 s.
    assert (summary["first_warmup_s"], summary["warmup_s"]) == (1.2, 0.5)
    started = json.loads((tmp_path / "results" / summary["run_id"] / "steps.json").read_text())[
        "started"]
    first, second = summary["steps"]
    assert first["t_start"] - started == pytest.approx(1.2, abs=0.25)
    assert second["t_start"] - first["t_end"] == pytest.approx(0.5, abs=0.25)
    for step in summary["steps"]:
        per_worker = step["workers"]
        assert len(per_worker) == 2 and all(n > 0 for n in per_worker.values()), per_worker
        assert sum(per_worker.values()) == step["requests"]
        assert step["users_running"] == step["users"]
    # Two independent counts of the whole run agree: the workers' own listeners
    # (summed over workers) and locust's statistics as the master aggregated them.
    generator = summary["generator"]
    assert len(generator["per_worker"]) == 2
    assert sum(generator["per_worker"].values()) == generator["requests_all_phases"]
    assert generator["locust_requests"] == generator["requests_all_phases"]
    assert summary["requests"] == sum(step["requests"] for step in summary["steps"])


def test_every_step_begins_on_time(tmp_path: Path) -> None:
    """Steps of 1.2 s: each step's users are all running when its window opens, 0.2 s
    after the step began, although locust sets the user count only once a second (the load
    shape waits inside a tick for a change due before the next one)."""
    summary = run_load(spec(tmp_path, "--model", "select", "--service", "echo",
                            steps=[1, 2, 3], warmup=0.2, step_time=1.0))
    assert summary["complete"], summary["error"]
    assert [(s["users"], s["users_running"]) for s in summary["steps"]] == [(1, 1), (2, 2), (3, 3)]
    for step in summary["steps"]:  # and each of them got replies in its window
        clients = step["clients"]
        assert clients["users"] == clients["served_any"] == step["users"], clients


def test_a_window_that_opens_before_its_users_arrived_says_so(tmp_path: Path) -> None:
    """At 4 users a second, 10 more users take 2.5 s to arrive, longer than the 0.3 s
    warm-up: the step's window opens with a few of them, and the table says how many."""
    result = run_cli("--model", "select", "--steps", "2,12", "--spawn-rate", "4",
                     "--run-time", "1", "--warmup", "0.3", "--workers", "1",
                     "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    [late] = [line for line in result.stdout.splitlines() if "users were running" in line]
    running = int(re.fullmatch(r"step 2: (\d+) of its 12 users were running when its window "
                               r"opened .*", late)[1])
    assert 2 <= running < 12


def test_steps_too_short_for_locusts_tick_are_refused(tmp_path: Path) -> None:
    result = run_cli("--model", "select", "--steps", "1,2", "--run-time", "0.5", "--warmup",
                     "0.2", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "0.7 s" in one_line(result.stderr) and "once a second" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_denials_are_classed_and_every_attempt_counted(tmp_path: Path) -> None:
    """A server that holds one client a second, with a listen queue of one, turns the
    others away: timeouts (or refusals), never an unexplained failure. The window (2 s) is
    shorter than twice the longest attempt (1 + 1.5 s): its attempts that time out after
    it closed still count in it, and over the whole run, warm-up included, the totals by
    class are locust's own (its CSV files)."""
    summary = run_load(spec(tmp_path, "--model", "sequential", "--service", "echo",
                            "--backlog", "1", "--delay", "1", steps=[30], mode="connect",
                            step_time=2.0, connect_timeout=1.0, io_timeout=1.5))
    check_summary(summary, tmp_path / "results")
    step = summary["steps"][0]
    failures = step["failures"]
    # Every client starts an attempt in the window (each attempt that fails to connect
    # ends within its 1 s timeout), and the server serves at most 3 of them there (one at
    # a time, 1 s each, over 2 s, one from its queue): 27 failures at least. Not 2 per
    # client: the 30 users start together, so their attempts stay in phase and the window
    # holds either one or two of each's, 28 in one CI run.
    assert sum(failures.values()) >= 30 - 3, failures
    allowed = {"connect_timeout", "io_timeout", "refused"}
    assert all(count == 0 for kind, count in failures.items() if kind not in allowed), failures
    assert step["started"] == step["requests"] and step["unfinished"] == 0
    assert step["served_share"] < 0.2
    generator = summary["generator"]
    csv_totals = generator["locust_csv"]
    assert csv_totals is not None and generator["matches_locust"], generator
    assert generator["all_phases"]["failures"] == csv_totals["failures"]
    # the window's attempts are among the run's (with the warm-up's, when users were
    # started in time to make some there: a loaded machine may start them after it)
    assert sum(csv_totals["failures"].values()) >= sum(failures.values())


def test_offered_arrival_rate_is_achieved(tmp_path: Path) -> None:
    """Arrivals at 50 new connections a second, to a server that answers at once: the
    window sees the offered rate (within 5%), every attempt served."""
    summary = run_load(spec(tmp_path, "--model", "threading", "--service", "echo",
                            steps=[50], mode="arrivals", step_time=2.0, warmup=0.5))
    check_summary(summary, tmp_path / "results")
    assert summary["complete"], summary["error"]
    step = summary["steps"][0]
    assert step["offered_rate"] == 50
    assert step["achieved_rate"] == pytest.approx(50, rel=0.05), step
    assert not step["rate_short"] and step["served_share"] == 1.0
    assert step["clients"] is None  # no closed-loop users here
    assert summary["generator"]["matches_locust"]


def test_users_started_together_are_spread_by_the_start_jitter(tmp_path: Path) -> None:
    """Against a server that makes every request wait 0.1 s, 20 users started at once
    would keep one phase, each making as many requests in the window as the others; with
    --start-jitter 0.1 their first requests are spread over one cycle, so that in a 0.75 s
    window (7.4 cycles) some make 7 and some 8, and the window counts what their pace
    gives, not the users times 7 or times 8. A jitter longer than the warm-up is refused:
    the window would open on users that had not begun."""
    summary = run_load(spec(tmp_path, "--model", "threading", "--service", "echo",
                            "--delay", "0.1", steps=[20], step_time=0.75, warmup=0.3,
                            start_jitter=0.1))
    assert summary["complete"], summary["error"]
    step = summary["steps"][0]
    assert sum(step["failures"].values()) == 0, step["failures"]
    clients = step["clients"]
    assert clients["served_any"] == 20, clients
    assert clients["replies_min"] < clients["replies_max"], clients  # not in step
    with pytest.raises(LoadError, match="longer than the warm-up"):
        run_load(spec(tmp_path, "--model", "select", start_jitter=0.5, warmup=0.3))
    result = run_cli("--model", "select", "--start-jitter", "-1")
    assert result.returncode == 2 and "zero or more" in one_line(result.stderr), result.stderr


@pytest.mark.parametrize(("model", "fair"), [("threading", True), ("sequential", False)])
def test_clients_served_and_fairness(model: str, fair: bool, tmp_path: Path) -> None:
    """Five persistent users: a thread each shares the replies evenly (Jain's index 1.0 on
    a quiet machine; 0.7 was seen on one whose cores were busy with other work, the GIL
    then favouring some threads); one client at a time gives nearly all of them to one
    user (near 1/5)."""
    summary = run_load(spec(tmp_path, "--model", model, "--service", "echo", steps=[5],
                            connect_timeout=0.5, io_timeout=0.5))
    assert summary["complete"], summary["error"]
    clients = summary["steps"][0]["clients"]
    assert clients["users"] == 5
    if fair:
        assert clients["served_any"] == 5 and clients["jain"] > 0.5, clients
    else:
        assert clients["jain"] < 0.3, clients
        assert clients["replies_max"] > 50 * max(clients["replies_min"], 1), clients


@pytest.mark.parametrize("mode", ["persistent", pytest.param("connect", marks=pytest.mark.slow)])
def test_http_with_locusts_fasthttpuser(mode: str, tmp_path: Path) -> None:
    """--service http: locust's FastHttpUser, with the same windows, clients, sampling and
    totals as the socket users."""
    summary = run_load(spec(tmp_path, "--model", "select", "--service", "http", steps=[4],
                            mode=mode))
    check_summary(summary, tmp_path / "results")
    assert_clean_run(summary)
    step = summary["steps"][0]
    assert step["bytes"] == len(b"Hello, World!") * step["served"]
    assert step["clients"]["served_any"] == 4
    assert summary["generator"]["matches_locust"]


def test_http_failures_are_classed(tmp_path: Path) -> None:
    """Responses later than --io-timeout are io_timeout failures, counted like the others."""
    summary = run_load(spec(tmp_path, "--model", "threading", "--service", "http", "--delay",
                            "1", steps=[3], io_timeout=0.3, connect_timeout=0.5))
    step = summary["steps"][0]
    assert step["failures"]["io_timeout"] >= 3 and step["served"] == 0, step["failures"]
    assert summary["generator"]["matches_locust"]


def _children_running_servers() -> list[psutil.Process]:
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.cmdline()[1:3] == ["-m", "servers"]:
                found.append(child)
        except psutil.Error:
            pass
    return found


def test_server_killed_mid_run(tmp_path: Path) -> None:
    """Killed mid-window: the run stops, keeps what was measured, and says what happened.
    It runs pinned where there are two CPUs, and checks the placement on the way."""
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2
    messages: list[str] = []
    result: dict[str, Any] = {}
    load = spec(tmp_path, "--model", "threading", "--service", "echo", steps=[4],
                step_time=20.0, pin=pin)
    worker = threading.Thread(target=lambda: result.update(run_load(load, messages.append)))
    worker.start()
    try:
        deadline = time.monotonic() + 20
        pid = None
        while time.monotonic() < deadline and not any("window" in m for m in messages):
            time.sleep(0.05)
        for message in messages:
            if match := re.search(r"server pid (\d+)", message):
                pid = int(match[1])
        assert pid is not None, messages
        time.sleep(1.0)  # let part of the window be measured
        assert pid in {p.pid for p in _children_running_servers()}  # the server we started
        if pin:
            assert psutil.Process(pid).cpu_affinity() == cpus[:1]
            workers = [p for p in psutil.Process().children(recursive=True)
                       if "--worker" in p.cmdline()]
            assert workers and all(p.cpu_affinity() == cpus[1:] for p in workers)
        os.kill(pid, signal.SIGKILL)
    finally:
        worker.join(25)
    assert not worker.is_alive()
    assert result["complete"] is False
    assert result["error"] == "server exited with status -9 during the run"
    assert result["server_exit_status"] == -9
    check_summary(result, tmp_path / "results")
    step = result["steps"][0]  # the part of the window measured before the kill
    assert step["complete"] is False and step["served"] > 0 and step["window_s"] < 15
    assert result["placement"] == ({"server": cpus[:1], "locust": cpus[1:]} if pin else "free")
    assert not _children_running_servers()
    assert not [p for p in psutil.Process().children(recursive=True)
                if "locust" in " ".join(p.cmdline())]


def test_spec_refused_before_anything_starts(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="not a loopback address"):
        run_load(LoadSpec(target="tcp://10.0.0.1:9", out_dir=tmp_path))
    with pytest.raises(LoadError, match="invalid choice"):
        run_load(LoadSpec(server_options=["--model", "nope"], out_dir=tmp_path))
    with pytest.raises(LoadError, match="mode"):
        run_load(LoadSpec(server_options=["--model", "select"], mode="burst", out_dir=tmp_path))
    assert not any(tmp_path.iterdir())


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """``testbed load ARGS``; past ``timeout`` it gets SIGTERM, so it still stops its children."""
    process = subprocess.Popen([sys.executable, "-m", "testbed", "load", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
        pytest.fail(f"testbed load took more than {timeout} s:\n{stderr}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_cli_bad_option() -> None:
    result = run_cli("--model", "select", "--run-time", "soon")
    assert result.returncode == 2
    assert "not a duration" in one_line(result.stderr)
    result = run_cli("--bogus")
    assert result.returncode == 2
    assert "unrecognized arguments: --bogus" in one_line(result.stderr)


@pytest.mark.parametrize("server", [["--model", "select"], ["--delay=1"], ["--server-workers", "2"],
                                    ["-mselect"]])
def test_cli_target_or_server_options_not_both(server: list[str], tmp_path: Path) -> None:
    result = run_cli("--target", "tcp://127.0.0.1:9", *server, "--out", str(tmp_path))
    assert result.returncode == 2
    assert "either --target or server options" in one_line(result.stderr)
    ok = run_cli("--target", "tcp://127.0.0.1:9", "--workers", "2", "--users", "0")
    assert "either --target" not in ok.stderr  # --workers are locust's here, not the server's
    abbreviated = run_cli("--target", "tcp://127.0.0.1:9", "--mod", "select")
    assert "unrecognized arguments: --mod" in one_line(abbreviated.stderr)


def test_cli_refuses_remote_target(tmp_path: Path) -> None:
    result = run_cli("--target", "10.0.0.1", "--out", str(tmp_path))
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert "refusing to send traffic to 10.0.0.1" in line and "--allow-remote" in line
    assert not any(tmp_path.iterdir())


def test_cli_unreachable_target(tmp_path: Path) -> None:
    from testbed.processes import free_port

    result = run_cli("--target", f"tcp://127.0.0.1:{free_port()}", "--out", str(tmp_path))
    assert result.returncode == 1
    assert "cannot reach" in one_line(result.stderr) and "refused" in result.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_cli_run_against_target(serve: Any, tmp_path: Path) -> None:
    """--target loads a server that was already running; the table and the path are printed."""
    server = serve("select", "upper")
    result = run_cli("--target", server.endpoint.url, "--expect", "upper", "--users", "2",
                     "--run-time", "2s", "--warmup", "1s", "--workers", "1",
                     "--out", str(tmp_path))
    no_traceback(result.stderr)
    assert result.returncode == 0, result.stderr
    assert "complete" in result.stdout and "summary.json" in result.stdout
    (run_dir,) = list(tmp_path.iterdir())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["target"] == server.endpoint.url and summary["model"] is None
    assert summary["steps"][0]["served"] > 0 and summary["steps"][0]["server"] is None
    assert server.running  # a target is not ours to stop
    assert (run_dir / "locust.html").stat().st_size > 0  # locust's own report, kept by default


@pytest.mark.slow
def test_calibration_is_stored_and_read(tmp_path: Path) -> None:
    result = run_cli("--calibrate", "--run-time", "2s", "--warmup", "1s", "--workers", "1",
                     "--out", str(tmp_path / "results"))
    assert result.returncode == 0, result.stderr
    stored = json.loads(Path(os.environ["TESTBED_CALIBRATION"]).read_text())
    ceiling = stored["by_workers"]["1"]["rps"]
    assert ceiling > 0 and f"{ceiling:,.0f} requests/s" in result.stdout
    assert read_ceiling(LoadSpec(workers=1)) == ceiling
    assert read_ceiling(LoadSpec(workers=3)) is None
    # generator-bound: near the ceiling, or a worker's CPU saturated
    assert _bound(0.85 * ceiling, ceiling, 0.2) and not _bound(0.5 * ceiling, ceiling, 0.5)
    assert _bound(10.0, None, 0.95) and not _bound(10.0, None, None)
