"""wrk's report, parsed: requests/s, latency, errors by class, non-2xx/3xx answers.

wrk prints (``--latency`` adds the distribution)::

    Running 2s test @ http://127.0.0.1:8080/
      1 threads and 10 connections
      Thread Stats   Avg      Stdev     Max   +/- Stdev
        Latency   374.00us  120.50us   7.96ms   92.30%
        Req/Sec    19.20k     6.85k   28.75k    70.00%
      Latency Distribution
         50%  374.00us
         ...
      19154 requests in 1.01s, 2.69MB read
      Socket errors: connect 0, read 0, write 0, timeout 12
      Non-2xx or 3xx responses: 5
    Requests/sec:  19030.25
    Transfer/sec:      2.67MB

The socket-error and non-2xx lines appear only when there are any. Latencies come
out in microseconds, sizes in bytes. wrk counts a response with a status above 399
as non-2xx/3xx; ``read`` errors include connections the server closed under it.
"""

from __future__ import annotations

import math
import re
from typing import Any

_TIME = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6, "h": 3600e6}
_SIZE = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}

_NUMBER = r"(?:\d+(?:\.\d+)?|-?nan|inf)"
_STATS = re.compile(rf"^\s+Latency\s+(?P<avg>{_NUMBER})(?P<avg_u>[a-z]*)\s+"
                    rf"(?P<stdev>{_NUMBER})(?P<stdev_u>[a-z]*)\s+(?P<max>{_NUMBER})(?P<max_u>[a-z]*)"
                    rf"\s+(?P<within>{_NUMBER})%", re.M)
_PERCENTILE = re.compile(rf"^\s+(?P<p>\d+(?:\.\d+)?)%\s+(?P<value>{_NUMBER})(?P<unit>[a-z]+)\s*$",
                         re.M)
_TOTAL = re.compile(r"^\s+(?P<requests>\d+) requests in (?P<secs>[\d.]+)(?P<unit>[a-z]+), "
                    r"(?P<bytes>[\d.]+)(?P<bunit>[KMGT]?B) read", re.M)
_SOCKET = re.compile(r"Socket errors: connect (?P<connect>\d+), read (?P<read>\d+), "
                     r"write (?P<write>\d+), timeout (?P<timeout>\d+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (?P<count>\d+)")
_RPS = re.compile(r"^Requests/sec:\s+(?P<rps>[\d.]+)", re.M)
_TRANSFER = re.compile(r"^Transfer/sec:\s+(?P<value>[\d.]+)(?P<unit>[KMGT]?B)", re.M)
_SETUP = re.compile(r"^\s+(?P<threads>\d+) threads and (?P<connections>\d+) connections", re.M)


class WrkOutputError(ValueError):
    """wrk printed something that is not its report (it failed, or its format changed)."""


def _micros(value: str, unit: str) -> float | None:
    number = float(value)
    if math.isnan(number):
        return None
    return number * _TIME[unit or "us"]


def parse(text: str) -> dict[str, Any]:
    """The figures of one wrk report; WrkOutputError if the totals are not there."""
    total, rps = _TOTAL.search(text), _RPS.search(text)
    if not total or not rps:
        lines = [line for line in text.splitlines() if line.strip()]
        raise WrkOutputError(f"not a wrk report: {lines[-1] if lines else 'no output'}")
    seconds = float(total["secs"]) * _TIME[total["unit"]] / 1e6
    latency: dict[str, float | None] = {"avg_us": None, "stdev_us": None, "max_us": None,
                                        "within_stdev_pct": None}
    stats = _STATS.search(text)
    if stats:
        latency.update(avg_us=_micros(stats["avg"], stats["avg_u"]),
                       stdev_us=_micros(stats["stdev"], stats["stdev_u"]),
                       max_us=_micros(stats["max"], stats["max_u"]))
        within = float(stats["within"])
        latency["within_stdev_pct"] = None if math.isnan(within) else within
    distribution = text.partition("Latency Distribution")[2]
    for match in _PERCENTILE.finditer(distribution):
        name = match["p"].rstrip("0").rstrip(".") if "." in match["p"] else match["p"]
        latency[f"p{name}_us"] = _micros(match["value"], match["unit"])
    socket_errors = _SOCKET.search(text)
    errors = {kind: int(socket_errors[kind]) if socket_errors else 0
              for kind in ("connect", "read", "write", "timeout")}
    non2xx = _NON2XX.search(text)
    transfer = _TRANSFER.search(text)
    setup = _SETUP.search(text)
    return {
        "threads": int(setup["threads"]) if setup else None,
        "connections": int(setup["connections"]) if setup else None,
        "requests": int(total["requests"]),
        "elapsed_s": seconds,
        "bytes_read": round(float(total["bytes"]) * _SIZE[total["bunit"]]),
        "rps": float(rps["rps"]),
        "transfer_bytes_per_s": round(float(transfer["value"]) * _SIZE[transfer["unit"]])
        if transfer else None,
        "latency": latency,
        "errors": errors,
        "error_count": sum(errors.values()),
        "non_2xx_3xx": int(non2xx["count"]) if non2xx else 0,
    }
