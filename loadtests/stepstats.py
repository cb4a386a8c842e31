"""Per-step statistics: what each measured window served, counted where the users run.

Locust's own statistics are cumulative over a run, but a stepped run needs
figures per measured window. Every process that runs users (a worker, or the
single process of a local run) keeps a :class:`Window` for the window that is
open, fed by a listener on locust's ``request`` event:

- a clock greenlet, started at that process's ``test_start``, opens and closes
  the windows of the :class:`~loadtests.common.Schedule` (warm-ups are not
  recorded). Its origin is the moment the load shape started: a worker gets the
  master's start time in a message sent just before the first users (worker and
  master share the wall clock on one machine; a worker whose clock disagrees by
  more than :data:`CLOCK_TOLERANCE` s, or that hears nothing, starts its own
  clock at its ``test_start``), so a worker's windows open and close with the
  master's steps even when the first users reach it late;
- each request carries, as its ``context``, the marker of the phase its
  connection was opened in (persistent mode) or it was started in (connect
  mode): a request counts in a window only if that marker is the window's, so
  a window is measured on connections opened after its warm-up;
- a closed window is sent to the master with locust's custom messages
  (``runner.send_message``); the master (or the local process) keeps every
  worker's windows apart and rewrites the ``--step-stats-file`` JSON after each
  message, so whatever has arrived survives a run that is cut short.

Latencies go into a log-spaced histogram (:data:`BUCKETS_PER_E` buckets per
factor e, about 1% wide) so percentiles can be merged across workers: a
bucket ``k`` holds latencies ``t`` (in µs) with ``int(ln(t + 1) * 100) == k``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

from loadtests.common import BUCKETS_PER_E, Schedule

MESSAGE = "testbed_step_stats"
#: Master -> workers: the schedule is over, stop your users and send your final report.
FINISH = "testbed_finish"
#: Master -> workers: the wall-clock time the schedule started at.
CLOCK = "testbed_clock"
#: Worker -> master: this worker's handlers are registered, the run may start.
READY = "testbed_ready"
CLOCK_TOLERANCE = 5.0
FORMAT = 1

log = logging.getLogger("testbed.stepstats")
_log = math.log


class Window:
    """What one process saw in one measured window."""

    __slots__ = ("index", "users", "t_start", "mono_start", "served", "bytes", "failures", "hist",
                 "max_ms", "users_start")

    def __init__(self, index: int, users: int, users_start: int) -> None:
        self.index, self.users, self.users_start = index, users, users_start
        self.t_start, self.mono_start = time.time(), time.monotonic()
        self.served = self.bytes = 0
        self.failures: dict[str, int] = {}
        self.hist: dict[int, int] = {}
        self.max_ms = 0.0

    def as_dict(self, users_end: int, complete: bool) -> dict[str, Any]:
        failed = sum(self.failures.values())
        return {
            "step": self.index, "users": self.users, "users_start": self.users_start,
            "users_end": users_end, "t_start": self.t_start, "t_end": time.time(),
            "window_s": time.monotonic() - self.mono_start, "complete": complete,
            "requests": self.served + failed, "served": self.served, "bytes": self.bytes,
            "failures": dict(self.failures), "max_ms": self.max_ms,
            # pairs, not a mapping: locust's messages and JSON both keep them as they are
            "hist": sorted(self.hist.items()),
        }


class State:
    """The process-wide phase: the open window (or None) and the marker of the current phase."""

    def __init__(self) -> None:
        self.window: Window | None = None
        self.ctx: dict[str, int] = {"warmup": 0}
        self.total = 0  # every request event of the run, in any phase
        self.clock: Any = None  # the greenlet opening and closing the windows
        self.origin: float | None = None  # the schedule's start, as time.time(), if told
        self.schedule: Schedule | None = None
        self.runner: Any = None


STATE = State()
#: The master's (or local process's) collector, once the locustfile has set one up.
COLLECTOR: Collector | None = None


def on_request(request_type: str, name: str, response_time: float, response_length: int,
               exception: BaseException | None = None, context: Any = None, **_: Any) -> None:
    """Count a request in the open window if it belongs there; kept lean, it runs per request."""
    state = STATE
    state.total += 1
    window = state.window
    if window is None or context is not state.ctx:
        return
    if exception is None:
        window.served += 1
        window.bytes += response_length
        key = int(_log(response_time * 1000.0 + 1.0) * BUCKETS_PER_E)
        hist = window.hist
        hist[key] = hist.get(key, 0) + 1
        if response_time > window.max_ms:
            window.max_ms = response_time
    else:
        kind = getattr(exception, "kind", "other")
        window.failures[kind] = window.failures.get(kind, 0) + 1


def node_id(runner: Any) -> str:
    return str(getattr(runner, "client_id", None) or "local")


def _publish(data: dict[str, Any]) -> None:
    runner = STATE.runner
    data["worker"] = node_id(runner)
    try:
        runner.send_message(MESSAGE, data)
    except Exception:  # noqa: BLE001 - a lost report must not kill the users
        log.exception("could not send step statistics")


def _open(index: int, users: int) -> None:
    STATE.ctx = {"window": index}
    STATE.window = Window(index, users, STATE.runner.user_count)


def _close(complete: bool) -> None:
    window, STATE.window = STATE.window, None
    if window is None:
        return
    STATE.ctx = {"warmup": window.index + 1}
    _publish({"window": window.as_dict(STATE.runner.user_count, complete)})


def _run_clock(schedule: Schedule, started: float) -> None:
    import gevent  # here, not at the top: this module is imported by tests without gevent

    for index, users in enumerate(schedule.steps):
        start, end = schedule.window_bounds(index)
        gevent.sleep(max(0.0, started + start - time.monotonic()))
        _open(index, users)
        gevent.sleep(max(0.0, started + end - time.monotonic()))
        _close(complete=True)


def start(runner: Any, options: Any, origin: float | None = None) -> None:
    """At ``test_start`` in a process that runs users: reset, and start the window clock.

    ``origin`` (a ``time.time()``) is when the schedule started, if known here; else
    the master's :data:`CLOCK` message (already received, or arriving later) says.
    """
    stop_clock()
    STATE.runner = runner
    STATE.window, STATE.ctx, STATE.total = None, {"warmup": 0}, 0
    if not getattr(options, "step_stats_file", ""):
        STATE.schedule = None
        return
    STATE.schedule = Schedule.from_options(options)
    _start_clock(origin if origin is not None else STATE.origin)
    STATE.origin = None


def _start_clock(origin: float | None) -> None:
    import gevent

    now = time.time()
    if origin is None or abs(now - origin) > CLOCK_TOLERANCE:
        origin = now
    assert STATE.schedule is not None
    STATE.clock = gevent.spawn(_run_clock, STATE.schedule, time.monotonic() - (now - origin))


def on_clock(environment: Any = None, msg: Any = None, **_: Any) -> None:
    """On a worker: the master's start time; a clock already running with no window
    opened yet is restarted on it."""
    origin = float(msg.data["wall"])
    if STATE.clock is not None and STATE.window is None and not STATE.ctx.get("warmup"):
        stop_clock()
        _start_clock(origin)
    else:
        STATE.origin = origin


def stop_clock() -> None:
    if STATE.clock is not None:
        STATE.clock.kill(block=False)
        STATE.clock = None


def finish(options: Any) -> None:
    """At ``test_stop``: close an open window as incomplete, report this process's total."""
    if STATE.runner is None:
        return
    stop_clock()
    if not getattr(options, "step_stats_file", ""):
        return
    _close(complete=False)
    _publish({"final": {"requests": STATE.total}})


def on_finish(environment: Any = None, msg: Any = None, **_: Any) -> None:
    """On a worker told by the master that the schedule is over: stop the users here (and
    so send the final report, from ``test_stop``) without waiting for locust's own stop."""
    environment.runner.stop()


class Collector:
    """On the master (or the local process): keep every worker's reports, rewrite the JSON file."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.data: dict[str, Any] = {}

    def finished(self, workers: set[str]) -> bool:
        """Whether every worker in ``workers`` has sent its final report."""
        reported = self.data.get("workers", {})
        return all((reported.get(worker) or {}).get("final") for worker in workers)

    def closed(self, workers: set[str], step: int) -> bool:
        """Whether every worker in ``workers`` has reported its window of ``step``."""
        reported = self.data.get("workers", {})
        return all(any(w.get("step") == step for w in (reported.get(worker) or {}).get(
            "windows", [])) for worker in workers)

    def reset(self, options: Any) -> None:
        schedule = Schedule.from_options(options)
        self.data = {
            "format": FORMAT,
            "histogram": {"unit": "us", "buckets_per_e": BUCKETS_PER_E,
                          "key": "int(ln(latency_us + 1) * buckets_per_e)"},
            "schedule": {"steps": list(schedule.steps), "window_s": schedule.window,
                         "warmup_s": schedule.warmup, "first_warmup_s": schedule.warmup_of(0)},
            "started": time.time(),
            "workers": {},
        }
        self.write()

    def on_message(self, environment: Any = None, msg: Any = None, **_: Any) -> None:
        data = msg.data
        worker = self.data.setdefault("workers", {}).setdefault(
            str(data.get("worker", "?")), {"windows": [], "final": None})
        if "window" in data:
            worker["windows"].append(data["window"])
        if "final" in data:
            worker["final"] = data["final"]
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.data, indent=1))
        os.replace(temporary, self.path)
