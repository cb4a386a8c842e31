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
- every attempt is counted in the window in which it started, whatever the
  phase when it ends: a user takes a :class:`Ticket` of the current phase
  before each attempt (:func:`take`) and passes it as the ``request`` event's
  ``context``. In persistent mode a new phase also means a new connection, so
  a window is measured on connections opened after its warm-up;
- a window stops taking new attempts when its time is up, but is closed only
  once every attempt started in it has ended: served, failed or timed out
  (at most ``--connect-timeout`` + ``--io-timeout`` later). An attempt that
  fails by timing out takes the whole timeout, so a window closed on time
  would keep the quick successes and lose the slow failures;
- each window also counts the replies of every user that ran in it, so the
  report can say how many clients got anything at all, and how fairly;
- every process also counts every attempt of the run by outcome, warm-ups
  included, for a cross-check against locust's own statistics;
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
    """What one process saw in one measured window: the attempts that started in it."""

    __slots__ = ("index", "users", "t_start", "mono_start", "t_end", "mono_end", "started",
                 "ended", "served", "bytes", "failures", "hist", "max_ms", "users_start",
                 "replies", "skipped")

    def __init__(self, index: int, users: int, users_start: int, user_ids: list[int]) -> None:
        self.index, self.users, self.users_start = index, users, users_start
        self.t_start, self.mono_start = time.time(), time.monotonic()
        self.t_end: float | None = None  # when it stopped taking new attempts
        self.mono_end: float | None = None
        self.started = self.ended = 0
        self.served = self.bytes = 0
        self.failures: dict[str, int] = {}
        self.hist: dict[int, int] = {}
        self.max_ms = 0.0
        self.replies: dict[int, int] = dict.fromkeys(user_ids, 0)  # user -> replies
        self.skipped = 0  # arrivals not made (arrivals mode): too many attempts in flight

    @property
    def in_flight(self) -> int:
        return self.started - self.ended

    def as_dict(self, users_end: int, complete: bool) -> dict[str, Any]:
        failed = sum(self.failures.values())
        t_end = self.t_end if self.t_end is not None else time.time()
        mono_end = self.mono_end if self.mono_end is not None else time.monotonic()
        return {
            "step": self.index, "users": self.users, "users_start": self.users_start,
            "users_end": users_end, "t_start": self.t_start, "t_end": t_end,
            "window_s": mono_end - self.mono_start, "complete": complete,
            "drained_s": round(time.monotonic() - mono_end, 4),
            "started": self.started, "unfinished": self.in_flight, "skipped": self.skipped,
            "requests": self.served + failed, "served": self.served, "bytes": self.bytes,
            "failures": dict(self.failures), "max_ms": self.max_ms,
            # pairs, not a mapping: locust's messages and JSON both keep them as they are
            "hist": sorted(self.hist.items()),
            "replies_per_user": sorted(self.replies.values()),
        }


class Ticket:
    """What a user carries through one attempt: the window it started in (None in a
    warm-up) and who the user is."""

    __slots__ = ("window", "user")

    def __init__(self, window: Window | None, user: int) -> None:
        self.window, self.user = window, user


class Stretch:
    """One stretch of the schedule: a window, or the warm-up before one (window None)."""

    __slots__ = ("window", "name")

    def __init__(self, window: Window | None, name: str) -> None:
        self.window, self.name = window, name


class State:
    """The process-wide phase, the windows still waiting for their attempts, the run's totals."""

    def __init__(self) -> None:
        self.phase = Stretch(None, "warmup 0")
        self.draining: list[Window] = []  # time up, attempts still running
        self.users: set[int] = set()  # the users running in this process
        self.total = 0  # every request event of the run, in any phase
        self.served_total = 0
        self.failures_total: dict[str, int] = {}
        self.clock: Any = None  # the greenlet opening and closing the windows
        self.origin: float | None = None  # the schedule's start, as time.time(), if told
        self.schedule: Schedule | None = None
        self.longest_attempt = 10.0  # seconds an attempt may take, from the timeouts
        self.runner: Any = None
        self.arrival_users = 1  # users sharing an offered arrival rate (the master says)
        self.started_mono: float | None = None  # the schedule's start, on this clock
        self.skipped = 0  # arrivals not made: too many attempts in flight


STATE = State()
#: The master's (or local process's) collector, once the locustfile has set one up.
COLLECTOR: Collector | None = None


def take(user: int, last: Ticket | None = None) -> Ticket:
    """Before an attempt: a ticket of the current phase; counts the attempt as started.

    ``last``, the user's previous ticket, is handed back while the phase is the same, so
    a user's exchange allocates nothing per request (the user is in ``replies`` already).
    """
    window = STATE.phase.window
    if last is not None and last.window is window:
        if window is not None:
            window.started += 1
        return last
    if window is not None:
        window.started += 1
        if user not in window.replies:
            window.replies[user] = 0
    return Ticket(window, user)


def on_request(request_type: str, name: str, response_time: float, response_length: int,
               exception: BaseException | None = None, context: Any = None, **_: Any) -> None:
    """Count an ended attempt in the run's totals, and in its window if it started in one;
    kept lean, it runs per request."""
    state = STATE
    state.total += 1
    if exception is None:
        state.served_total += 1
    else:
        kind = getattr(exception, "kind", "other")
        state.failures_total[kind] = state.failures_total.get(kind, 0) + 1
    if context.__class__ is dict:  # an HTTP user's: locust merges it into a dict
        context = context.get("ticket")
    window = getattr(context, "window", None)
    if window is None:
        return
    window.ended += 1
    if exception is None:
        window.served += 1
        window.bytes += response_length
        key = int(_log(response_time * 1000.0 + 1.0) * BUCKETS_PER_E)
        hist = window.hist
        hist[key] = hist.get(key, 0) + 1
        if response_time > window.max_ms:
            window.max_ms = response_time
        window.replies[context.user] = window.replies.get(context.user, 0) + 1
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
    window = Window(index, users, STATE.runner.user_count, sorted(STATE.users))
    STATE.phase = Stretch(window, f"window {index}")


def _end(index: int) -> Window | None:
    """The window's time is up: new attempts go to the next warm-up; it drains."""
    window = STATE.phase.window
    STATE.phase = Stretch(None, f"warmup {index + 1}")
    if window is None:
        return None
    window.t_end, window.mono_end = time.time(), time.monotonic()
    STATE.draining.append(window)
    return window


def _report(window: Window, complete: bool) -> None:
    if window in STATE.draining:
        STATE.draining.remove(window)
        _publish({"window": window.as_dict(STATE.runner.user_count, complete)})


def _close(complete: bool) -> None:
    """End the open window and report it now, whatever is still in flight."""
    window = _end(STATE.phase.window.index if STATE.phase.window else -1)
    if window is not None:
        _report(window, complete)


#: How often a draining window looks whether its last attempts have ended (seconds).
DRAIN_POLL = 0.005
#: Slack beyond the longest attempt before a window is reported with attempts unfinished.
DRAIN_SLACK = 1.0


def _drain(window: Window) -> None:
    """Report ``window`` once every attempt started in it has ended (or, should a user
    have been stopped mid-attempt, after the longest attempt and some slack)."""
    import gevent

    deadline = time.monotonic() + STATE.longest_attempt + DRAIN_SLACK
    while window.in_flight > 0 and time.monotonic() < deadline:
        gevent.sleep(DRAIN_POLL)
    _report(window, complete=window.in_flight <= 0)


def _run_clock(schedule: Schedule, started: float) -> None:
    import gevent  # here, not at the top: this module is imported by tests without gevent

    drains = []
    for index, users in enumerate(schedule.steps):
        start, end = schedule.window_bounds(index)
        gevent.sleep(max(0.0, started + start - time.monotonic()))
        _open(index, users)
        gevent.sleep(max(0.0, started + end - time.monotonic()))
        window = _end(index)
        if window is not None:
            drains.append(gevent.spawn(_drain, window))
    gevent.joinall(drains)


def start(runner: Any, options: Any, origin: float | None = None) -> None:
    """At ``test_start`` in a process that runs users: reset, and start the window clock.

    ``origin`` (a ``time.time()``) is when the schedule started, if known here; else
    the master's :data:`CLOCK` message (already received, or arriving later) says.
    """
    stop_clock()
    STATE.runner = runner
    STATE.phase, STATE.draining = Stretch(None, "warmup 0"), []
    STATE.total = STATE.served_total = 0
    STATE.failures_total = {}
    STATE.started_mono, STATE.skipped = None, 0
    STATE.longest_attempt = longest_attempt(options)
    STATE.schedule = Schedule.from_options(options)
    if not getattr(options, "step_stats_file", ""):
        return
    _start_clock(origin if origin is not None else STATE.origin)
    STATE.origin = None


def longest_attempt(options: Any) -> float:
    """How long one attempt may take before it fails, from the locustfile's timeouts."""
    return (float(getattr(options, "connect_timeout", 5.0))
            + float(getattr(options, "io_timeout", 5.0)))


def _start_clock(origin: float | None) -> None:
    import gevent

    now = time.time()
    if origin is None or abs(now - origin) > CLOCK_TOLERANCE:
        origin = now
    assert STATE.schedule is not None
    STATE.started_mono = time.monotonic() - (now - origin)
    STATE.clock = gevent.spawn(_run_clock, STATE.schedule, STATE.started_mono)


def arrival_block(now: float) -> tuple[float, float, float]:
    """In arrivals mode (the schedule's steps are offered rates): the rate at ``now`` (a
    ``time.monotonic()``) and the end of the block that starts there: at most a second,
    cut at the schedule's next boundary so no block straddles a window's edge. After the
    schedule (while the last window drains), the last step's rate, in blocks of a second."""
    schedule = STATE.schedule
    if schedule is None:
        return 0.0, now + 1.0, now
    if STATE.started_mono is None:  # no clock: a flat run at the first step's rate
        return float(schedule.steps[0]), now + 1.0, now
    elapsed = now - STATE.started_mono
    phase = schedule.phase_at(elapsed)
    rate = float(schedule.steps[-1] if phase is None else phase.users)
    end = min(schedule.next_boundary(elapsed), elapsed + 1.0)
    return rate, STATE.started_mono + end, now


def on_clock(environment: Any = None, msg: Any = None, **_: Any) -> None:
    """On a worker: the master's start time; a clock already running with no window
    opened yet is restarted on it."""
    origin = float(msg.data["wall"])
    STATE.arrival_users = int(msg.data.get("arrival_users", 1) or 1)
    if STATE.clock is not None and STATE.phase.window is None \
            and STATE.phase.name == "warmup 0":
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
    for window in list(STATE.draining):  # stopped before their attempts ended
        _report(window, complete=False)
    _publish({"final": {"requests": STATE.total, "served": STATE.served_total,
                        "failures": dict(STATE.failures_total)}})


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
