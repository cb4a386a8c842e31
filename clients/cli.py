"""Command-line pieces shared by ``testbed probe`` and ``testbed storm``.

The same conventions as ``testbed serve`` (servers/cli.py), written again here
because clients/ and servers/ never import each other: a bad argument is one line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import math
from typing import NoReturn


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line on stderr and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive_float(text: str) -> float:
    """A number of seconds greater than zero."""
    value = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than zero, not {text!r}")
    return value


def non_negative_float(text: str) -> float:
    value = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, not {text!r}")
    return value


def count(text: str) -> int:
    """A count of one or more."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text!r}")
    return value


def port_number(text: str) -> int:
    value = _number(text, int)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535, not {text!r}")
    return value


def payload_line(text: str) -> bytes:
    """The request to send: the text as UTF-8, ending with one newline (a request is a line)."""
    data = text.encode()
    return data if data.endswith(b"\n") else data + b"\n"
