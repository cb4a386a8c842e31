"""``testbed serve`` (and ``python -m servers``): build a model, announce it, serve until signalled."""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from servers import registry
from servers.config import ServerConfig, format_address, is_loopback
from servers.costs import Cost
from servers.lifetime import end_with_parent
from servers.models.base import ConfigError, Model, Shutdown

SHUTDOWN_GRACE = 3.0  # seconds for in-flight work before threads and children are forced


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


# The argument types below have twins in clients/cli.py: clients/ and servers/ never
# import each other, so a change to one is made to both.


def non_negative_float(text: str) -> float:
    value = number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text!r}")
    return value


def non_negative_int(text: str) -> int:
    value = number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text!r}")
    return value


def port_number(text: str) -> int:
    value = number(text, int)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0-65535, not {text!r}")
    return value


def number(text: str, kind: type) -> Any:
    """``text`` as an int or a finite float; an argparse error otherwise."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def add_server_options(parser: argparse.ArgumentParser) -> None:
    """The options that describe a server; `testbed load` and `compare` reuse them."""
    parser.add_argument("--model", "-m", default="threading", choices=registry.model_names(),
                        metavar="MODEL", help="concurrency model: %(choices)s "
                        "(default %(default)s)")
    parser.add_argument("--service", "-s", default="echo", choices=list(registry.SERVICES),
                        metavar="SERVICE", help="service: %(choices)s (default %(default)s)")
    parser.add_argument("--udp", action="store_true", help="serve UDP datagrams instead of TCP")
    parser.add_argument("--delay", type=non_negative_float, default=0.0, metavar="S",
                        help="seconds each request waits before its reply (default 0)")
    parser.add_argument("--work-ms", type=non_negative_float, default=0.0, metavar="N",
                        help="milliseconds of CPU burnt per request (default 0)")
    parser.add_argument("--backlog", type=non_negative_int, default=128, metavar="N",
                        help="listen queue length, socketserver's request_queue_size "
                        "(default %(default)s)")
    parser.add_argument("--max-connections", type=non_negative_int, default=0, metavar="N",
                        help="turn away clients beyond N open connections (default 0: no limit)")
    parser.add_argument("--idle-timeout", type=non_negative_float, default=0.0, metavar="S",
                        help="close a connection that sends nothing for S seconds, the slowloris "
                        "defence (default 0: never)")
    parser.add_argument("--workers", type=non_negative_int, default=0, metavar="N",
                        help="worker threads or processes of the pool-based models "
                        "(default: the model's own)")
    parser.add_argument("--queue", type=non_negative_int, default=0, metavar="N",
                        help="accepted connections waiting for a worker, threadpool model")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                        help="event loop of the asyncio model (default %(default)s)")
    for service in registry.SERVICES.values():
        service.add_options(parser.add_argument_group(f"{service.name} service"))


def config_from(args: argparse.Namespace) -> ServerConfig:
    return ServerConfig(
        host=args.host, port=args.port, udp=args.udp, backlog=args.backlog,
        cost=Cost(delay=args.delay, work_ms=args.work_ms),
        max_connections=args.max_connections, idle_timeout=args.idle_timeout,
        workers=args.workers, queue=args.queue, loop=args.loop,
    )


def build_parser(prog: str = "testbed serve") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Serve a service in a concurrency model. The first line on stdout is "
        "'listening on tcp://HOST:PORT'; connections are logged on stderr. "
        "Stops cleanly on SIGINT or SIGTERM.",
    )
    add_server_options(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default %(default)s; ::1 for IPv6)")
    parser.add_argument("--port", "-p", type=port_number, default=0,
                        help="port to bind (default 0: a free one, announced on stdout)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="log only warnings, not every connection")
    return parser


def shutdown_handler(model: Model) -> Callable[[int, object], None]:
    """The SIGTERM/SIGINT handler: note the signal on the model, then raise Shutdown.

    The note is what makes the signal stick if Python swallows the exception (it does in
    at-fork hooks and finalizers): the models' loops check it (Model.stop_requested).
    """

    def handler(signum: int, frame: object) -> None:
        model.signalled = signal.Signals(signum).name
        raise Shutdown(model.signalled)

    return handler


def main(argv: list[str] | None = None, prog: str = "testbed serve") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    config = config_from(args)
    model_class = registry.get_model(args.model)
    if config.udp and not model_class.udp:
        parser.error(f"the {args.model} model serves TCP only")
    logging.basicConfig(format="[%(asctime)s] %(message)s", stream=sys.stderr,
                        level=logging.WARNING if args.quiet else logging.INFO)
    service = registry.get_service(args.service).configure(vars(args))
    if config.transport not in service.transports:
        parser.error(f"the {args.service} service is served over "
                     f"{' and '.join(sorted(service.transports)).upper()} only")
    model = model_class(config, service)

    # Installed before the socket exists, so a signal right after the ready line is honoured.
    signal.signal(signal.SIGTERM, shutdown_handler(model))
    signal.signal(signal.SIGINT, shutdown_handler(model))
    end_with_parent()
    try:
        try:
            host, port = model.bind()
        except ConfigError as exc:
            parser.error(str(exc))
        except OSError as exc:
            where = format_address(config.transport, config.host, config.port)
            parser.exit(2, f"{prog}: error: cannot listen on {where}: "
                        f"{exc.strerror or exc}\n")
        print(f"listening on {format_address(config.transport, host, port)}", flush=True)
        if not is_loopback(host):
            logging.getLogger("testbed.server").warning(
                "warning: bound to %s, reachable from other machines", host)
        model.serve_forever()
    except Shutdown:
        pass
    finally:
        # A forked child that got here must not run its parent's shutdown.
        if os.getpid() == model.owner_pid:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            model.close(SHUTDOWN_GRACE)
    return 0
