"""Fixtures shared by the suite: servers on port 0, always reaped; real third-party tools."""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from clients.harness import open_listener
from servers import registry
from testbed.processes import ServerProcess, start_server
from tests.netns import Netns, join_by_veth, make_netns

MODELS = registry.model_names()

#: ``[sys.executable, *WITHOUT_UVLOOP, "serve", ...]`` runs testbed as if uvloop were not
#: installed, so the one-line error for the missing extra is tested where it is installed.
WITHOUT_UVLOOP = ["-c", "import runpy, sys; sys.modules['uvloop'] = None; "
                  "runpy.run_module('testbed', run_name='__main__', alter_sys=True)"]
UDP_MODELS = [name for name in MODELS if registry.get_model(name).udp]
SERVICES = list(registry.SERVICES)
LINE_SERVICES = registry.line_services()  # what the line clients verify
#: The suite runs on two pytest-xdist workers (pyproject's addopts). The lab tests check the
#: root namespace's links before and after, and a veth pair is born there before it moves
#: into its namespaces: those tests share one worker, one after another.
ROOT_NAMESPACE_GROUP = "root-namespace"

StartServer = Callable[..., ServerProcess]

#: One model of each design that shares no code with the others: a thread per client
#: (socketserver), an event loop, a process per client. The heavier per-model checks run on
#: these by default and on every model with ``-m slow`` (the default suite has a budget of
#: 6 minutes on 2 cores); sequential is threading's socketserver loop without the threads.
CORE_MODELS = ("threading", "select", "forking")


def sigint_as_in_a_terminal() -> None:
    """A Popen ``preexec_fn``: the child takes SIGINT as Ctrl-C in a terminal. A suite run
    in the background (``cmd &`` in a script) hands its children SIGINT ignored, and both
    Python and tcpdump then keep it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def core_first(models: list[str]) -> list:
    """``models`` as pytest params, those outside :data:`CORE_MODELS` marked slow."""
    return [pytest.param(model, marks=() if model in CORE_MODELS else pytest.mark.slow)
            for model in models]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name == "lab" or "veth_pair" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(ROOT_NAMESPACE_GROUP))


@pytest.fixture
def serve() -> Iterator[StartServer]:
    """Start ``testbed serve`` processes; every one is stopped and reaped at teardown."""
    started: list[ServerProcess] = []

    def start(model: str, service: str = "echo", *options: str, udp: bool = False,
              env: dict[str, str] | None = None) -> ServerProcess:
        args = ["--model", model, "--service", service, *options]
        if udp:
            args.append("--udp")
        proc = start_server(args, env=env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.cleanup()


def answered(conn: socket.socket, answer: Callable[[socket.socket], None], *,
             timeout: float) -> None:
    """Hand an accepted connection to a test's scripted ``answer`` (``timeout`` on every
    socket call; an OSError, the client's doing, ends it), then close it."""
    with conn:
        conn.settimeout(timeout)
        try:
            answer(conn)
        except OSError:
            pass


@contextmanager
def scripted_server(answer: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback listener of the test's own, for replies no real server gives: each
    connection in turn is handed to ``answer(conn)`` (2 s socket timeout; an OSError ends
    that connection), then closed. Yields its port; the listener and its thread end after."""
    sock = open_listener("127.0.0.1", 0, backlog=16)
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve_forever() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            answered(conn, answer, timeout=2)

    thread = threading.Thread(target=serve_forever, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def require_tool(name: str) -> str:
    """The path of a real third-party tool; skip without it, fail if CI requires it."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed"
    if os.environ.get("TESTBED_REQUIRE_INTEROP") == "1":
        pytest.fail(f"{message} (TESTBED_REQUIRE_INTEROP=1)")
    pytest.skip(message)


def require_root() -> None:
    """Skip unless this process may build network namespaces and use raw sockets (root);
    fail if CI requires it."""
    from testbed.lab import iproute

    why = iproute.missing_privilege() or iproute.missing_tool()
    if why is None:
        return
    if os.environ.get("TESTBED_REQUIRE_ROOT") == "1":
        pytest.fail(f"{why} (TESTBED_REQUIRE_ROOT=1)")
    pytest.skip(why)


def require_module(name: str) -> None:
    """Skip without an importable ``name``, fail if CI requires it (the test extra installs it)."""
    if importlib.util.find_spec(name) is not None:
        return
    message = f"{name} is not installed"
    if os.environ.get("TESTBED_REQUIRE_INTEROP") == "1":
        pytest.fail(f"{message} (TESTBED_REQUIRE_INTEROP=1)")
    pytest.skip(message)


def without_module(name: str) -> list[str]:
    """``[sys.executable, *without_module("uvicorn"), "contender", ...]`` runs testbed as if
    ``name`` were not installed (see WITHOUT_UVLOOP)."""
    return ["-c", f"import runpy, sys; sys.modules[{name!r}] = None; "
            "runpy.run_module('testbed', run_name='__main__', alter_sys=True)"]


def no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr


def one_line(stderr: str) -> str:
    """The only line a command wrote on stderr (a bad input gets one line, never a traceback)."""
    no_traceback(stderr)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def require_netns() -> None:
    """Namespaces, veth pairs and nftables: root, ip and nft, or skip (fail under CI)."""
    require_root()
    require_tool("ip")
    require_tool("nft")


@pytest.fixture
def netns(request: pytest.FixtureRequest) -> Iterator[Netns]:
    """A namespace of the test's own, loopback up, removed by its name at teardown."""
    require_netns()
    ns = make_netns("".join(c for c in request.node.name.lower() if c.isalpha())[:6] or "test")
    try:
        yield ns
    finally:
        ns.cleanup()


@pytest.fixture
def veth_pair() -> Iterator[tuple[Netns, Netns, dict[str, str]]]:
    """Two namespaces joined by a veth pair: (a, b, {"a": address, "b": address})."""
    require_netns()
    a, b = make_netns("a"), make_netns("b")
    try:
        yield a, b, join_by_veth(a, b)
    finally:
        a.cleanup()
        b.cleanup()
