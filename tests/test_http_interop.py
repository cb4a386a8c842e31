"""Real HTTP clients (curl, http.client) against the http service, and the same app in uvicorn
and gunicorn answering the same bytes."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import MODELS, no_traceback, require_tool
from tests.http_parse import Source

pytestmark = pytest.mark.interop

#: every model with the default parser, and the strict parser on a blocking model and a loop
SERVERS = [(model, "httptools") for model in MODELS] + [("threading", "h11"), ("select", "h11")]


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("curl"), "--silent", "--show-error", "--max-time", "10",
                           *args], capture_output=True, timeout=20)


@pytest.mark.parametrize(("model", "parser"), SERVERS)
def test_curl(serve, model, parser, tmp_path):
    server = serve(model, "http", "--http-parser", parser)
    base = f"http://127.0.0.1:{server.port}"
    # Keep-alive: two URLs in one curl, the second on the connection of the first.
    result = curl("-v", f"{base}/", f"{base}/health")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"Hello, World!ok\n"
    assert b"Re-using existing connection" in result.stderr, result.stderr.decode()
    # HTTP/1.0: answered, and the server closes.
    result = curl("--http1.0", "-i", f"{base}/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nConnection: close\r\n" in result.stdout
    assert result.stdout.endswith(b"\r\n\r\nHello, World!")
    # 1 MiB posted from a file comes back byte for byte.
    upload, download = tmp_path / "upload", tmp_path / "download"
    upload.write_bytes(os.urandom(1024 * 1024))
    result = curl("--data-binary", f"@{upload}", "-o", str(download), f"{base}/echo")
    assert result.returncode == 0, result.stderr
    assert download.read_bytes() == upload.read_bytes()
    # HEAD: the headers GET would have, no body.
    result = curl("-I", f"{base}/")
    assert result.returncode == 0, result.stderr
    head = result.stdout.decode()
    assert head.startswith("HTTP/1.1 200 OK") and "Content-Length: 13" in head
    assert head.endswith("\r\n\r\n")
    no_traceback(server.stderr_text())


@pytest.mark.parametrize("model", ["threading", "select", "asyncio"])
def test_http_client_keep_alive_and_pipelining(serve, model):
    server = serve(model, "http")
    conn = http.client.HTTPConnection(*server.address, timeout=5)
    try:
        conn.request("GET", "/")
        first = conn.getresponse()
        assert (first.status, first.read()) == (200, b"Hello, World!")
        used = conn.sock
        conn.request("POST", "/upper", body=b"keep me")
        second = conn.getresponse()
        assert (second.status, second.read()) == (200, b"KEEP ME")
        assert conn.sock is used  # the same connection: keep-alive
    finally:
        conn.close()
    # http.client does not pipeline: send the requests at once, parse with its parser.
    requests = [b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n%d" % i
                for i in range(10)]
    with socket.create_connection(server.address, timeout=5) as sock:
        sock.sendall(b"".join(requests))
        bodies = [body for _, _, body in Source.of_socket(sock).read_all(["POST"] * 10)]
    assert bodies == [b"%d" % i for i in range(10)]


# -- the same app in uvicorn and gunicorn ---------------------------------------

REQUESTS = [("GET", "/", b""), ("HEAD", "/", b""), ("GET", "/health", b""),
            ("POST", "/echo", b"\x00\xffbytes"), ("POST", "/upper", b"shout"),
            ("GET", "/nope", b""), ("POST", "/", b"x")]


def answers(host: str, port: int) -> list[tuple[int, bytes, str | None, str | None]]:
    """(status, body, content type, allow) of every request of REQUESTS."""
    got = []
    for method, path, body in REQUESTS:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request(method, path, body=body or None)
            response = conn.getresponse()
            got.append((response.status, response.read(), response.getheader("content-type"),
                        response.getheader("allow")))
        finally:
            conn.close()
    return got


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on a free port, handed to the server under test by descriptor."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    yield sock
    sock.close()


def contender(name: str) -> str:
    """The path of uvicorn or gunicorn; skip without it, fail where CI installs it."""
    path = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if path:
        return path
    return require_tool(name)


@pytest.mark.parametrize("command", [
    ["uvicorn", "servers.apps.asgi:app", "--fd", "{fd}", "--no-access-log",
     "--loop", "uvloop", "--http", "httptools"],
    ["gunicorn", "-k", "sync", "--bind", "fd://{fd}", "servers.apps.wsgi:app"],
], ids=["uvicorn", "gunicorn"])
def test_production_servers_answer_what_the_http_service_answers(serve, listener, command):
    argv = [contender(command[0]), *(word.format(fd=listener.fileno()) for word in command[1:])]
    proc = subprocess.Popen(argv, pass_fds=[listener.fileno()], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        theirs = answers(*listener.getsockname())
    finally:
        proc.send_signal(signal.SIGINT)  # both stop at once on it (gunicorn's quick shutdown)
        try:
            _, stderr = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own group: the server and its workers
            _, stderr = proc.communicate()
    assert b"Traceback" not in stderr, stderr.decode()
    ours = answers(*serve("select", "http").address)
    assert theirs == ours
    assert ours[0][:2] == (200, b"Hello, World!")
