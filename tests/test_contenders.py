"""The contenders (uvicorn and gunicorn on the project's app) start like testbed serve: port 0,
announced, the same answers as the http service, the per-request delay, a clean stop."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time

import psutil
import pytest

from servers.apps.launch import CONTENDERS
from testbed.processes import start_server
from tests.conftest import one_line, require_module, without_module


def get(address: tuple[str, int], path: str = "/") -> tuple[int, bytes, str | None]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("content-type")
    finally:
        conn.close()


@pytest.mark.parametrize("name", list(CONTENDERS))
def test_a_contender_serves_like_the_http_service_and_stops_cleanly(serve, name):
    for module in CONTENDERS[name].needs:
        require_module(module)
    ours = get(serve("select", "http").address)
    proc = start_server(["--model", name, "--service", "http", "--delay", "0.2", "--quiet"])
    try:
        assert proc.endpoint.host == "127.0.0.1" and proc.port > 0
        started = time.monotonic()
        assert get(proc.address) == ours
        assert ours[:2] == (200, b"Hello, World!")
        assert time.monotonic() - started >= 0.19  # --delay 0.2, as the models wait
        tree = [proc.pid, *(child.pid for child in psutil.Process(proc.pid).children(True))]
        status = proc.stop()
        stderr = proc.stderr_text()
    finally:
        proc.cleanup()
    assert status == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert not [pid for pid in tree if psutil.pid_exists(pid)]  # gunicorn's workers reaped too


def test_a_contender_that_is_not_installed_is_one_line_and_status_2():
    result = subprocess.run([sys.executable, *without_module("uvicorn"), "contender",
                             "uvicorn-uvloop"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "uvicorn-uvloop needs uvicorn, which is not installed" in one_line(result.stderr)
    assert result.stdout == ""  # refused before any socket exists


def test_a_contender_serves_http_only():
    result = subprocess.run([sys.executable, "-m", "testbed", "contender", "gunicorn-sync",
                             "--service", "echo"], capture_output=True, text=True, timeout=20)
    assert result.returncode == 2
    assert "http service only" in one_line(result.stderr)
