"""The HTTP service's application for other servers: ASGI (uvicorn) and WSGI (gunicorn).

The same routes as ``testbed serve --service http`` (servers/services/http/routes.py),
so that every server answers the same bytes in status and body, and the same
per-request cost. Configured by environment variables, since the servers that
load the apps own the command line:

- ``TESTBED_DELAY``: seconds each request waits before its answer (``--delay``);
- ``TESTBED_WORK_MS``: milliseconds of CPU burnt per request (``--work-ms``);
- ``TESTBED_MAX_BODY``: a longer request body gets 413 (``--max-body``, bytes; default 1 MiB).

Run them with ``uvicorn servers.apps.asgi:app`` or ``gunicorn servers.apps.wsgi:app``.
"""

from __future__ import annotations

import os

from servers.costs import Cost
from servers.services.http import MAX_BODY


def _number(name: str, default: float) -> float:
    text = os.environ.get(name, "")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SystemExit(f"{name}: not a number: {text!r}") from None
    if not 0 <= value < float("inf"):
        raise SystemExit(f"{name}: must be zero or more, not {text!r}")
    return value


def settings() -> tuple[Cost, int]:
    """The cost per request and the largest body, from the environment."""
    cost = Cost(delay=_number("TESTBED_DELAY", 0.0), work_ms=_number("TESTBED_WORK_MS", 0.0))
    return cost, int(_number("TESTBED_MAX_BODY", MAX_BODY))
