"""``testbed wrk``: wrk against a model or a contender, its report parsed into JSON with the
server's CPU per request (:mod:`testbed.wrk.command`; the parser: :mod:`testbed.wrk.output`)."""

from testbed.wrk.command import main
from testbed.wrk.output import parse

__all__ = ["main", "parse"]
