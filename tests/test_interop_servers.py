"""Real netcat (netcat-openbsd) and socat talk to the served models."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conftest import MODELS, UDP_MODELS, require_tool

pytestmark = pytest.mark.interop


@pytest.mark.parametrize("model", MODELS)
def test_netcat_gets_upper_case_back(serve, model):
    nc = require_tool("nc")
    server = serve(model, "upper")
    result = subprocess.run([nc, "-N", "127.0.0.1", str(server.port)],
                            input=b"hello from netcat\nbytes \xff\x00 ok\n",
                            capture_output=True, timeout=15)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"HELLO FROM NETCAT\nBYTES \xff\x00 OK\n"


@pytest.mark.parametrize("model", MODELS)
def test_socat_round_trips_binary(serve, model):
    socat = require_tool("socat")
    server = serve(model, "echo")
    payload = os.urandom(256 * 1024)
    result = subprocess.run([socat, "-t", "1", "-", f"TCP:127.0.0.1:{server.port}"],
                            input=payload, capture_output=True, timeout=20)
    assert result.returncode == 0, result.stderr
    assert result.stdout == payload


@pytest.mark.parametrize("model", UDP_MODELS)
def test_socat_udp_datagram(serve, model):
    socat = require_tool("socat")
    server = serve(model, "upper", udp=True)
    # -t: how long socat waits for the reply after its input ends (loopback: well under 1 ms)
    result = subprocess.run([socat, "-t", "0.3", "-", f"UDP:127.0.0.1:{server.port}"],
                            input=b"datagram\n", capture_output=True, timeout=15)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"DATAGRAM\n"
