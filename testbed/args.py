"""Argument types shared by the testbed's commands (load, compare, report, resilience).

Errors follow ``testbed serve``'s convention: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from loadtests.common import parse_steps
from servers.cli import ArgumentParser, number
from servers.cli import non_negative_float as non_negative

__all__ = ["ArgumentParser", "add_target_options", "add_versus_options", "duration",
           "name_list", "non_negative", "positive", "user_counts"]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


def duration(text: str) -> float:
    """``30``, ``1.5s``, ``2m``, ``1m30s``, ``500ms``, ``1h`` -> seconds."""
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|)", text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 2m, 1m30s)")
    return sum(float(n) * _UNITS[u] for n, u in parts)


def user_counts(text: str) -> list[int]:
    """``1,10,50`` -> [1, 10, 50]: user counts of one or more (the locustfile's own parser)."""
    try:
        return parse_steps(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def name_list(text: str) -> list[str]:
    """``a,b`` -> ["a", "b"], without repeats."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one name, comma-separated")
    return list(dict.fromkeys(names))


def positive(kind: type) -> Callable[[str], Any]:
    """A converter to ``kind`` (int or float) that accepts only values above zero."""
    def convert(text: str) -> Any:
        value = number(text, kind)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text!r}")
        return value
    return convert


def add_target_options(parser: argparse.ArgumentParser, verb: str, schemes: str) -> None:
    """``--server-log``, ``--target`` and ``--allow-remote``: the options of a command that
    starts its own server (with testbed serve's options) or ``verb``s a running one."""
    parser.add_argument("--server-log", action="store_true",
                        help="let the server log every connection (default: --quiet)")
    parser.add_argument("--target", metavar="URL",
                        help=f"{verb} a server that is already running: {schemes} "
                        "(loopback only unless --allow-remote)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a --target that is not a loopback address")


def add_versus_options(parser: argparse.ArgumentParser, verb: str) -> None:
    """``--versus`` and ``--versus-pid``: a second running server ``verb`` head to head
    with ``--target``'s (testbed bench, testbed wrk)."""
    parser.add_argument("--versus", metavar="URL",
                        help=f"with --target: a second running server {verb} head to head "
                        "with it, the --windows of the two alternating (one warm-up each), "
                        "so that the machine's slow spells fall on both; reports each and "
                        "the ratio of their CPU per request with its 95%% interval (give "
                        "--windows 6 or more)")
    parser.add_argument("--versus-pid", type=positive(int), metavar="PID",
                        help="with --versus: its process, as --server-pid")
