"""What a command that drives a server is pointed at: a server it starts or a running target.

``testbed load`` and ``testbed bench`` both either start a server (with
``testbed serve``'s options) or drive one that is already running
(``--target``). Everything they share about that choice is here, once:

- :class:`UsageError`, the one-line refusal of a command that can't run (status 2 for
  bad input, 1 for a server or target that failed);
- :class:`Target`, a parsed ``--target`` URL, refused before any socket exists unless it
  is loopback (:mod:`clients.safety`) or ``--allow-remote`` was given, and
  :meth:`Target.reach`, the one exchange or connection that proves it answers;
- the server's pool size, which both commands call ``--server-workers`` (``--workers``
  means locust's workers in ``testbed load``; in ``testbed bench`` it is the server's, as
  in ``testbed serve``): :func:`add_server_workers`, :func:`server_options_from` and
  :func:`server_options_given` are the only places that know it;
- :func:`parse_server_options`, ``testbed serve``'s own parser run without exiting.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from clients.harness import ExchangeError, exchange_once, format_host, open_connection, parse_endpoint
from clients.safety import UnsafeTarget, ensure_loopback

#: Where the server's pool size lands in a command's parsed arguments.
SERVER_WORKERS_DEST = "server_workers"


class UsageError(Exception):
    """A command that can't run: bad input (status 2) or a server or target that failed (1).

    The command prints ``PROG: error: MESSAGE`` on stderr and exits with ``status``.
    """

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Target:
    """A running server to drive: ``scheme`` (tcp, udp or http), ``host``, ``port``."""

    scheme: str
    host: str
    port: int

    @property
    def udp(self) -> bool:
        return self.scheme == "udp"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{format_host(self.host)}:{self.port}"

    @classmethod
    def parse(cls, text: str, *, default_scheme: str = "tcp",
              schemes: Sequence[str] = ("tcp", "udp", "http"),
              allow_remote: bool = False, option: str = "--target") -> Target:
        """``tcp://HOST:PORT`` (or ``HOST:PORT`` in ``default_scheme``) checked: a scheme in
        ``schemes``, a loopback host unless ``allow_remote``, a port. UsageError otherwise,
        naming ``option``."""
        try:
            scheme, host, port = parse_endpoint(text, default_scheme, port_required=False)
        except ValueError as exc:
            raise UsageError(f"{option}: {exc}") from None
        if scheme not in schemes:
            only = " or ".join(f"{s}://HOST:PORT" for s in schemes)
            raise UsageError(f"{'TCP' if schemes == ('tcp',) else 'this command'} only: "
                             f"{option} must be {only}")
        try:
            ensure_loopback(host, allow_remote=allow_remote)
        except UnsafeTarget as exc:
            raise UsageError(str(exc)) from None
        if not port:
            raise UsageError(f"{option} needs a port: {scheme}://{format_host(host)}:PORT")
        return cls(scheme, host, port)

    @staticmethod
    def check_versus(versus: str | None, versus_pid: int | None, target: str | None) -> None:
        """The ``--versus`` options' own rules, before any target is parsed: --versus-pid
        goes with --versus, and --versus with --target (testbed bench, testbed wrk)."""
        if versus_pid and not versus:
            raise UsageError("--versus-pid goes with --versus")
        if versus and not target:
            raise UsageError("--versus measures a second running server head to head with "
                             "--target's: give --target too")

    def versus(self, text: str, *, allow_remote: bool = False) -> Target:
        """``--versus``: the second server of a head-to-head run against this one, in the
        same scheme and not this one; UsageError otherwise."""
        other = Target.parse(text, default_scheme=self.scheme, schemes=(self.scheme,),
                             allow_remote=allow_remote, option="--versus")
        if (other.host, other.port) == (self.host, self.port):
            raise UsageError(f"--versus names the --target itself ({self.url})")
        return other

    def reach(self, *, connect_timeout: float = 5.0, io_timeout: float = 2.0,
              expect: str = "echo") -> None:
        """One TCP connection (one UDP exchange for udp) before the run; UsageError (1) if none."""
        try:
            if self.udp:
                exchange_once(self.host, self.port, b"ping\n", udp=True, expect=expect,
                              io_timeout=min(io_timeout, 2.0))
            else:
                open_connection(self.host, self.port, timeout=min(connect_timeout, 5.0)).close()
        except ExchangeError as exc:
            raise UsageError(f"cannot reach {self.url}: {exc.kind} ({exc.detail})", 1) from None


def add_server_workers(parser: argparse.ArgumentParser, *names: str) -> None:
    """The server's pool size under ``names`` (``--server-workers`` and, in bench, also
    ``--workers``), where ``testbed serve`` says ``--workers``."""
    from servers.cli import non_negative_int

    parser.add_argument(*(names or ("--server-workers",)), dest=SERVER_WORKERS_DEST,
                        type=non_negative_int, default=0, metavar="N",
                        help="worker threads or processes of the pool-based server models "
                        "(default: the model's own)")


def server_options_from(args: argparse.Namespace) -> list[str]:
    """The ``testbed serve`` options the parsed arguments describe (defaults left out;
    ``--quiet`` unless ``--server-log``)."""
    from servers.cli import add_server_options

    probe = argparse.ArgumentParser(add_help=False)
    add_server_options(probe)
    options: list[str] = []
    for action in probe._actions:
        name = max(action.option_strings, key=len)
        dest = SERVER_WORKERS_DEST if action.dest == "workers" else action.dest
        value = getattr(args, dest, action.default)
        if value == action.default and action.dest not in ("model", "service"):
            continue
        if action.nargs == 0:
            options.append(name)
        else:
            options += [name, f"{value:g}" if isinstance(value, float) else str(value)]
    if not getattr(args, "server_log", False):
        options.append("--quiet")
    return options


def server_options_given(argv: Sequence[str], ignore: Sequence[str] = ("--udp",)) -> list[str]:
    """The ``testbed serve`` options (and ``--server-workers``) written in ``argv``: a command
    that also takes ``--target`` refuses both. ``ignore``: options that mean something else
    there (``testbed load``'s ``--workers`` are locust's)."""
    from servers.cli import add_server_options

    probe = argparse.ArgumentParser(add_help=False)
    add_server_options(probe)
    names = {name for action in probe._actions for name in action.option_strings}
    names = (names | {"--server-workers"}) - set(ignore)
    short = {name for name in names if len(name) == 2}  # -m, -s: also -mselect
    return [word for word in (arg.split("=")[0] for arg in argv)
            if word in names or (word[:2] in short and not word.startswith("--"))]


def parse_server_options(options: Sequence[str]) -> argparse.Namespace:
    """``testbed serve``'s parse of ``options``, without exiting; UsageError with its message."""
    from servers.cli import build_parser

    parser = build_parser()

    def error(message: str) -> NoReturn:
        raise UsageError(f"server options: {message}")

    parser.error = error  # type: ignore[method-assign]
    try:
        return parser.parse_args(list(options))
    except SystemExit:
        raise UsageError(f"server options: bad options: {' '.join(options)}") from None
