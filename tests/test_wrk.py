"""testbed wrk: wrk (a real C load generator) against the http service, its report parsed."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from testbed.wrk.output import parse
from tests.conftest import one_line, require_tool


def wrk(*args: str, timeout: float = 25) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", "wrk", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_a_two_second_wrk_run_has_no_errors_and_no_bad_statuses():
    require_tool("wrk")
    result = wrk("--model", "select", "--duration", "2", "--warmup", "0", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["error_count"] == 0 and summary["non_2xx_3xx"] == 0, summary
    assert summary["requests"] > 100 and summary["rps"] > 50
    latency = summary["latency"]
    assert 0 < latency["p50_us"] <= latency["p99_us"] <= latency["max_us"]
    server = summary["server"]
    assert server["measured"] and server["cpu_us_per_request"] > 0


def test_pipelined_requests_through_wrks_pipeline_script():
    require_tool("wrk")
    result = wrk("--model", "select", "--duration", "1", "--warmup", "0", "--pipeline", "16",
                 "--connections", "2", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert "--script" in summary["command"] and summary["command"].endswith("-- 16")
    assert summary["error_count"] == 0 and summary["non_2xx_3xx"] == 0, summary
    assert summary["requests"] >= 2 * 16


def test_windows_are_measured_runs_in_a_row_each_read_on_its_own():
    """--windows 3: three measured wrk runs on one server, each with its own requests and
    server CPU; the summary is the median window's (by CPU per request), as bench's is."""
    require_tool("wrk")
    result = wrk("--model", "threading", "--duration", "1", "--warmup", "0", "--windows", "3",
                 "--connections", "2", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    windows = summary["windows"]
    assert len(windows) == 3
    cpus = sorted(window["server"]["cpu_us_per_request"] for window in windows)
    assert all(window["requests"] > 0 and window["error_count"] == 0 for window in windows)
    assert cpus[0] > 0 and summary["server"]["cpu_us_per_request"] == cpus[1]
    # one server measured throughout: every window read the same process
    assert {window["server"]["pid"] for window in windows} == {summary["server"]["pid"]}
    text = wrk("--model", "threading", "--duration", "1", "--warmup", "0", "--windows", "2",
               "--connections", "2")
    assert text.returncode == 0, text.stderr
    assert "windows  2 of 1 s in a row, server CPU per request" in text.stdout


def test_versus_alternates_wrk_windows_on_two_servers_and_sees_their_ratio(serve: Any) -> None:
    """--versus: one warm-up each, then wrk's windows alternate between the two running
    servers; each server's windows read its own process, paired in the order taken, and
    the ratio of their CPU per request sees that a handler burning 1 ms costs far more
    than a plain GET /."""
    require_tool("wrk")
    plain = serve("select", "http", "--quiet")
    burning = serve("select", "http", "--work-ms", "1", "--quiet")
    pids = ["--server-pid", str(plain.pid), "--versus-pid", str(burning.pid)]
    result = wrk("--target", f"http://127.0.0.1:{plain.port}", "--versus",
                 f"http://127.0.0.1:{burning.port}", *pids, "--duration", "1", "--warmup", "0",
                 "--windows", "6", "--connections", "2", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    target, versus = summary["target"], summary["versus"]
    assert (target["server"]["pid"], versus["server"]["pid"]) == (plain.pid, burning.pid)
    assert len(target["windows"]) == len(versus["windows"]) == len(summary["pairs"]) == 6
    assert all(window["requests"] > 0 and window["error_count"] == 0
               for side in (target, versus) for window in side["windows"])
    assert [pair[1] for pair in summary["pairs"]] == [
        window["server"]["cpu_us_per_request"] for window in versus["windows"]]
    low, high = summary["ratio"]["interval"]
    assert 3 < low <= summary["ratio"]["median"] <= high, summary["ratio"]
    text = wrk("--target", f"http://127.0.0.1:{plain.port}", "--versus",
               f"http://127.0.0.1:{burning.port}", *pids, "--duration", "1", "--warmup", "0",
               "--windows", "1", "--connections", "2")
    assert text.returncode == 0, text.stderr
    last = text.stdout.strip().splitlines()[-1]
    assert last.startswith(f"versus   http://127.0.0.1:{burning.port} against ")
    assert "6 pairs or more give an interval" in last


@pytest.mark.parametrize("args, words", [
    (["--versus", "http://127.0.0.1:9"], "give --target too"),
    (["--target", "http://127.0.0.1:9", "--versus-pid", "1"], "--versus-pid goes with --versus"),
    (["--target", "http://127.0.0.1:9", "--versus", "http://127.0.0.1:10"],
     "give --server-pid and --versus-pid"),
    (["--target", "http://127.0.0.1:9", "--versus", "http://127.0.0.1:9", "--server-pid", "1",
      "--versus-pid", "1"], "names the --target itself"),
    (["--target", "http://127.0.0.1:9", "--versus", "http://192.0.2.1:80", "--server-pid", "1",
      "--versus-pid", "1"], "not a loopback address"),
])
def test_versus_bad_input_is_one_line(args: list[str], words: str) -> None:
    require_tool("wrk")
    result = wrk(*args)
    assert result.returncode == 2, result.stderr
    assert words in one_line(result.stderr) and result.stdout == ""


def test_bad_statuses_are_counted():
    require_tool("wrk")
    result = wrk("--model", "select", "--duration", "1", "--warmup", "0", "--path", "/nope",
                 "--connections", "2", "--json")
    assert result.returncode == 1  # measured, but not clean
    summary = json.loads(result.stdout)
    assert summary["non_2xx_3xx"] == summary["requests"] > 0


def test_a_remote_target_or_a_missing_wrk_is_one_line_and_status_2():
    result = wrk("--target", "http://192.0.2.1:80/")
    assert result.returncode == 2
    assert "not a loopback address" in one_line(result.stderr)
    result = wrk("--model", "select", "--wrk", "/nonexistent/wrk")
    assert result.returncode == 2
    assert "wrk is not installed" in one_line(result.stderr)


def test_the_parser_reads_errors_and_units():
    report = """Running 2s test @ http://127.0.0.1:8080/
  2 threads and 20 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.50ms  500.00us    1.02s    90.00%
    Req/Sec     5.00k     1.00k     6.00k    70.00%
  Latency Distribution
     50%    1.20ms
     75%    1.40ms
     90%    1.80ms
     99%   10.00ms
  20000 requests in 2.00s, 2.50MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 5
Requests/sec:  10000.00
Transfer/sec:      1.25MB
"""
    figures = parse(report)
    assert (figures["threads"], figures["connections"], figures["requests"]) == (2, 20, 20000)
    assert figures["errors"] == {"connect": 1, "read": 2, "write": 3, "timeout": 4}
    assert figures["error_count"] == 10 and figures["non_2xx_3xx"] == 5
    assert figures["latency"]["stdev_us"] == 500 and figures["latency"]["max_us"] == 1.02e6
    assert figures["latency"]["p99_us"] == 10_000 and figures["rps"] == 10_000
    assert figures["bytes_read"] == round(2.5 * 1024**2)
