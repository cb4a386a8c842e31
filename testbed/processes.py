"""Starting, waiting for and stopping the processes the testbed runs.

Every process is started in its own process group (its pgid is its pid), is
ready when it prints its ready line (never after a fixed sleep), and is stopped
with SIGTERM, then SIGKILL to its whole group after a grace period, so nothing
it started is left behind. Tests, ``testbed load`` and the comparison all start
servers through :func:`start_server`.
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from servers.lifetime import PARENT_ENV

READY_LINE = re.compile(r"^listening on (?P<transport>tcp|udp)://"
                        r"(?:\[(?P<host6>[^\]]+)\]|(?P<host>[^:/]+)):(?P<port>\d+)$")


class StartError(RuntimeError):
    """A process exited, or stayed silent, before printing its ready line."""


@dataclass(frozen=True)
class Endpoint:
    transport: str
    host: str
    port: int

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"

    @classmethod
    def parse(cls, line: str) -> Endpoint | None:
        match = READY_LINE.match(line.strip())
        if not match:
            return None
        host = match["host6"] or match["host"]
        return cls(match["transport"], host, int(match["port"]))


class ManagedProcess:
    """A child process in its own process group, with its stderr kept in a file."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: str | Path | None = None, stdout: int | IO | None = subprocess.PIPE,
                 stderr_path: str | Path | None = None) -> None:
        self.argv = list(argv)
        if stderr_path is None:
            handle, name = tempfile.mkstemp(prefix="testbed-", suffix=".stderr")
            os.close(handle)
            self.stderr_path, self._own_stderr = Path(name), True
        else:
            self.stderr_path, self._own_stderr = Path(stderr_path), False
        with open(self.stderr_path, "ab") as stderr:
            self.popen = subprocess.Popen(  # noqa: S603 - argv is a list built by the testbed
                self.argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                env=env, cwd=cwd, start_new_session=True)
        self.pid = self.popen.pid

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """Read stdout until a line matches ``pattern``; StartError if it exits or times out."""
        assert self.popen.stdout is not None
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        with selectors.DefaultSelector() as selector:
            selector.register(self.popen.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StartError(f"{self.describe()} printed no ready line in {timeout:g}s"
                                     f"{self._tail(seen)}")
                if not selector.select(left):
                    continue
                raw = self.popen.stdout.readline()
                if not raw:
                    self.popen.wait()
                    raise StartError(f"{self.describe()} exited with status "
                                     f"{self.popen.returncode} before it was ready"
                                     f"{self._tail(seen)}")
                line = raw.decode(errors="replace").rstrip("\r\n")
                seen.append(line)
                match = pattern.search(line)
                if match:
                    return match

    def _tail(self, stdout_lines: list[str]) -> str:
        text = "\n".join(stdout_lines[-5:] + self.stderr_text().splitlines()[-5:])
        return f":\n{text}" if text else ""

    def describe(self) -> str:
        return " ".join(Path(self.argv[0]).name if i == 0 else a for i, a in enumerate(self.argv))

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def signal(self, signum: int) -> None:
        if self.running:
            os.kill(self.pid, signum)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM, wait up to ``grace`` s, then SIGKILL the whole group; returns the status."""
        if self.running:
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left in the group (a stuck child, a killed leader's orphans) goes now.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        return self.popen.returncode

    def cleanup(self) -> None:
        """Stop, and remove the stderr file if it was a temporary one."""
        self.stop()
        if self._own_stderr:
            self.stderr_path.unlink(missing_ok=True)

    def __enter__(self) -> ManagedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class ServerProcess(ManagedProcess):
    """A ``testbed serve`` process, ready once it has announced its endpoint."""

    endpoint: Endpoint

    @property
    def host(self) -> str:
        return self.endpoint.host

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def address(self) -> tuple[str, int]:
        return self.endpoint.host, self.endpoint.port


# Sets a soft RLIMIT_NOFILE, then becomes `python -m MODULE ...`: the limit applies from the start.
_WITH_NOFILE = (
    "import os, resource, sys\n"
    "soft, hard = int(sys.argv[1]), resource.getrlimit(resource.RLIMIT_NOFILE)[1]\n"
    "if hard != resource.RLIM_INFINITY:\n"
    "    soft = min(soft, hard)\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))\n"
    "os.execv(sys.executable, [sys.executable, '-m', *sys.argv[2:]])\n"
)


def server_module(options: Sequence[str]) -> str:
    """``servers`` (testbed serve), or ``servers.apps`` where ``--model`` names a contender
    (uvicorn or gunicorn, started the same way: testbed contender)."""
    from servers.apps.launch import CONTENDERS

    options = list(options)
    for index, word in enumerate(options):
        if word in ("--model", "-m") and index + 1 < len(options):
            return "servers.apps" if options[index + 1] in CONTENDERS else "servers"
        if word.startswith("--model="):
            return "servers.apps" if word.partition("=")[2] in CONTENDERS else "servers"
    return "servers"


def server_argv(options: Sequence[str], nofile: int | None = None) -> list[str]:
    module = server_module(options)
    if nofile:
        return [sys.executable, "-c", _WITH_NOFILE, str(nofile), module, *options]
    return [sys.executable, "-m", module, *options]


def start_server(options: Sequence[str], *, ready_timeout: float = 15.0,
                 stderr_path: str | Path | None = None,
                 env: dict[str, str] | None = None, nofile: int | None = None,
                 prefix: Sequence[str] = ()) -> ServerProcess:
    """Start ``testbed serve OPTIONS`` (port 0 unless given) and wait for its ready line.

    A ``--model`` that names a contender starts ``testbed contender OPTIONS`` instead.

    A server started from the main thread ends when this process does, even killed
    outright (:mod:`servers.lifetime`).

    ``nofile`` sets the server's soft limit of open descriptors (to study exhaustion);
    ``prefix`` goes before the argv (``ip netns exec NS`` runs it in a lab host).
    """
    options = list(options)
    if "--port" not in options and "-p" not in options:
        options += ["--port", "0"]
    if threading.current_thread() is threading.main_thread():
        # The kernel's "parent ended" is the end of the thread that started the child:
        # only the main thread's children may follow it (servers.lifetime).
        env = dict(os.environ if env is None else env)
        env[PARENT_ENV] = str(os.getpid())
    proc = ServerProcess([*prefix, *server_argv(options, nofile)], stderr_path=stderr_path,
                         env=env)
    try:
        match = proc.wait_for_line(READY_LINE, ready_timeout)
    except BaseException:
        proc.cleanup()
        raise
    proc.endpoint = Endpoint.parse(match.group(0))  # type: ignore[assignment]
    return proc


@contextmanager
def cpu_affinity(cpus: Iterable[int] | None) -> Iterator[None]:
    """Processes started inside this block run on ``cpus`` (None: leave placement alone).

    The affinity of the calling thread is set for the duration of the block and put
    back after: a child inherits it at fork, and so do the threads and processes it
    starts later, which setting it on a running pid would not reach.
    """
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (for a child that can't announce its own)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]
