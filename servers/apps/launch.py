"""``testbed contender`` (and ``python -m servers.apps``): a production HTTP server started like
``testbed serve``.

The contenders are uvicorn (the ASGI app, :mod:`servers.apps.asgi`) and gunicorn (the WSGI
app, :mod:`servers.apps.wsgi`) in the engines people deploy. The launcher binds the socket
itself (port 0 by default), prints the same first line as ``testbed serve``
(``listening on tcp://HOST:PORT``), then hands that socket to the server in this same
process: uvicorn serves it from its event loop (``uvicorn.Config(fd=...)``), gunicorn's
master (``bind = fd://N``) forks its workers from here, so the process that announced the
port is the root of the server's whole process tree. ``--delay``, ``--work-ms`` and
``--max-body`` mean what they mean to the project's models (the apps read them from the
environment, see :mod:`servers.apps`). SIGTERM or SIGINT stops it: uvicorn finishes what
is in flight, gunicorn's master stops and reaps its workers, within a few seconds.

It accepts ``--model NAME`` and ``--service http`` too, so a command line written for
``testbed serve`` starts a contender by changing the model's name alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from servers.cli import ArgumentParser, non_negative_float, non_negative_int, port_number
from servers.config import format_address, is_loopback
from servers.lifetime import end_with_parent
from servers.models.threadpool import DEFAULT_WORKERS as THREADPOOL_THREADS
from servers.services.http import KEEPALIVE_TIMEOUT, MAX_BODY, _size

PROG = "testbed contender"
#: Seconds in-flight requests get once a stop is asked for (``testbed serve``'s grace).
SHUTDOWN_GRACE = 3.0
#: A keep-alive timeout of 0 means never: uvicorn takes whole seconds, this is a year.
NEVER = 365 * 24 * 3600


@dataclass(frozen=True)
class Contender:
    """A production server in one configuration: what it runs and what it needs."""

    server: str  # uvicorn or gunicorn
    description: str
    needs: tuple[str, ...]  # modules it cannot run without
    loop: str = "asyncio"  # uvicorn: its event loop
    http: str = "httptools"  # uvicorn: its HTTP parser
    worker: str = "sync"  # gunicorn: its worker class

    def missing(self) -> str | None:
        """The first module it needs that is not installed here, or None."""
        for module in self.needs:
            if importlib.util.find_spec(module) is None:
                return module
        return None


CONTENDERS: dict[str, Contender] = {
    "uvicorn-uvloop": Contender("uvicorn", "uvicorn, httptools on uvloop (uvicorn[standard])",
                                ("uvicorn", "uvloop", "httptools"), loop="uvloop"),
    "uvicorn-asyncio": Contender("uvicorn", "uvicorn, httptools on stock asyncio",
                                 ("uvicorn", "httptools")),
    "uvicorn-h11": Contender("uvicorn", "uvicorn, h11 on stock asyncio (plain pip install "
                             "uvicorn)", ("uvicorn", "h11"), http="h11"),
    "gunicorn-sync": Contender("gunicorn", "gunicorn, sync workers: one connection at a time "
                               "per process, no keep-alive (like prefork)", ("gunicorn",)),
    "gunicorn-gthread": Contender("gunicorn", "gunicorn, gthread workers: a thread pool per "
                                  "process, keep-alive (like threadpool)", ("gunicorn",),
                                  worker="gthread"),
}

#: The pip extra that installs every contender.
EXTRA = "http"


def names() -> list[str]:
    return list(CONTENDERS)


def build_parser(prog: str = PROG) -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog, allow_abbrev=False,
        description="Run a production HTTP server (uvicorn or gunicorn) on the project's "
        "app, started like testbed serve: the first line on stdout is 'listening on "
        "tcp://HOST:PORT'. Stops cleanly on SIGINT or SIGTERM. Contenders: "
        + "; ".join(f"{name}: {c.description}" for name, c in CONTENDERS.items()) + ".")
    parser.add_argument("name", nargs="?", metavar="CONTENDER", help="which server: "
                        + ", ".join(CONTENDERS))
    parser.add_argument("--model", "-m", "--server", dest="model", metavar="CONTENDER",
                        help="the same as CONTENDER (a testbed serve command line works)")
    parser.add_argument("--service", "-s", default="http", metavar="SERVICE",
                        help="http, the only service a contender serves")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default %(default)s; ::1 for IPv6)")
    parser.add_argument("--port", "-p", type=port_number, default=0,
                        help="port to bind (default 0: a free one, announced on stdout)")
    parser.add_argument("--delay", type=non_negative_float, default=0.0, metavar="S",
                        help="seconds each request waits before its answer (default 0)")
    parser.add_argument("--work-ms", type=non_negative_float, default=0.0, metavar="N",
                        help="milliseconds of CPU burnt per request (default 0)")
    parser.add_argument("--max-body", type=_size, default=MAX_BODY, metavar="BYTES",
                        help="a request body longer than this gets 413 (default 1M)")
    parser.add_argument("--backlog", type=non_negative_int, default=128, metavar="N",
                        help="listen queue length (default %(default)s, as testbed serve)")
    parser.add_argument("--workers", type=non_negative_int, default=0, metavar="N",
                        help="worker processes (default 1)")
    parser.add_argument("--threads", type=non_negative_int, default=0, metavar="N",
                        help=f"gunicorn-gthread: threads per worker (default "
                        f"{THREADPOOL_THREADS}, the threadpool model's pool)")
    parser.add_argument("--keepalive-timeout", type=non_negative_float,
                        default=KEEPALIVE_TIMEOUT, metavar="S",
                        help="close a keep-alive connection idle this long (default "
                        "%(default)g, as the http service; gunicorn-sync never keeps one)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="log only warnings, not every request")
    return parser


def contender_of(args: argparse.Namespace, parser: ArgumentParser) -> tuple[str, Contender]:
    """The contender asked for, checked: one line and exit 2 for anything wrong."""
    if args.name and args.model and args.name != args.model:
        parser.error(f"two contenders given: {args.name} and {args.model}")
    name = args.name or args.model
    if not name:
        parser.error(f"which contender? choose from {', '.join(CONTENDERS)}")
    if name not in CONTENDERS:
        parser.error(f"unknown contender {name!r} (choose from {', '.join(CONTENDERS)})")
    if args.service != "http":
        parser.error(f"a contender serves the http service only, not {args.service!r}")
    contender = CONTENDERS[name]
    module = contender.missing()
    if module:
        parser.error(f"{name} needs {module}, which is not installed "
                     f"(pip install 'testbed[{EXTRA}]')")
    if args.threads and contender.worker != "gthread":
        parser.error(f"--threads is for gunicorn-gthread, not {name}")
    return name, contender


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A TCP socket listening on (host, port), inheritable (gunicorn's workers share it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, as getaddrinfo names it for the servers' own binding: asyncio sets
    # TCP_NODELAY only on sockets whose proto says TCP, and without it uvicorn's separate
    # head and body writes waited for delayed ACKs (about 44 ms per request under wrk).
    # TCP_NODELAY on the listener too: Linux hands it down to every accepted connection.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run_uvicorn(contender: Contender, sock: socket.socket, args: argparse.Namespace) -> None:
    """Serve until signalled; uvicorn's own signal handling finishes what is in flight.

    The socket object is handed over (``Server.run(sockets=...)``, the path uvicorn's
    gunicorn worker takes), not its descriptor: uvicorn wraps an ``fd`` as an AF_UNIX
    socket, so asyncio would not set TCP_NODELAY on the connections, and pipelined
    answers would wait for delayed ACKs (about 40 ms per batch, measured with wrk).
    """
    import uvicorn

    config = uvicorn.Config(
        "servers.apps.asgi:app", loop=contender.loop, http=contender.http,
        lifespan="off", interface="asgi3", workers=max(args.workers, 1),
        timeout_keep_alive=max(round(args.keepalive_timeout), 1) if args.keepalive_timeout
        else NEVER, timeout_graceful_shutdown=int(SHUTDOWN_GRACE), backlog=args.backlog or 1,
        access_log=not args.quiet, log_level="warning" if args.quiet else "info")
    server = uvicorn.Server(config)
    if config.workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock]).run()
        return
    server.run(sockets=[sock])


def run_gunicorn(contender: Contender, sock: socket.socket, args: argparse.Namespace) -> None:
    """Run gunicorn's master here on the socket; it forks, watches and reaps the workers."""
    from gunicorn.app.base import BaseApplication

    fd = sock.detach()  # gunicorn's listener owns the descriptor from here, and closes it
    settings: dict[str, Any] = {
        "bind": [f"fd://{fd}"], "worker_class": contender.worker,
        "workers": max(args.workers, 1), "backlog": args.backlog or 1,
        "keepalive": int(round(args.keepalive_timeout)),
        "graceful_timeout": int(SHUTDOWN_GRACE), "loglevel": "warning" if args.quiet else "info",
        "accesslog": None if args.quiet else "-", "errorlog": "-",
    }
    if contender.worker == "gthread":
        settings["threads"] = args.threads or THREADPOOL_THREADS

    class Application(BaseApplication):
        """gunicorn's documented custom application: settings from here, not a command line."""

        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Callable[..., Any]:
            from servers.apps.wsgi import app

            return app

    Application().run()


RUNNERS = {"uvicorn": run_uvicorn, "gunicorn": run_gunicorn}


def _stop(signum: int, frame: object) -> None:
    # uvicorn raises the signal it caught again once it has shut down, with this handler
    # back in place: a requested stop ends the process with status 0, as testbed serve does.
    raise SystemExit(0)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    name, contender = contender_of(args, parser)
    # The apps read their settings from the environment (uvicorn imports the app here,
    # gunicorn's workers import it after they fork: both see these).
    os.environ["TESTBED_DELAY"] = f"{args.delay!r}"
    os.environ["TESTBED_WORK_MS"] = f"{args.work_ms!r}"
    os.environ["TESTBED_MAX_BODY"] = str(args.max_body)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    end_with_parent()
    try:
        sock = listen(args.host, args.port, args.backlog or 1)
    except OSError as exc:
        where = format_address("tcp", args.host, args.port)
        parser.exit(2, f"{prog}: error: cannot listen on {where}: {exc.strerror or exc}\n")
    host, port = sock.getsockname()[:2]
    print(f"listening on {format_address('tcp', host, port)}", flush=True)
    logging.basicConfig(format="[%(asctime)s] %(message)s", stream=sys.stderr,
                        level=logging.WARNING if args.quiet else logging.INFO)
    if not is_loopback(host):
        logging.getLogger("testbed.contender").warning(
            "warning: %s bound to %s, reachable from other machines", name, host)
    try:
        RUNNERS[contender.server](contender, sock, args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    finally:
        sock.close()
    return 0
