"""Stepped load: a schedule of user counts, each step a warm-up then a measured window.

:class:`Schedule` is plain arithmetic shared by the load shape (on the locust
master, which sets the user count) and by the per-step statistics (in every
process that runs users, which decide what each request is counted in). A flat
run is a schedule of one step.

:class:`StepShape` is the locust ``LoadTestShape`` that walks the schedule. It
lives in its own locustfile so that ``locust -f loadtests/locustfile.py`` alone
stays an ordinary locust run (users and spawn rate from the command line or the
web UI) and ``locust -f loadtests/locustfile.py,loadtests/shapes.py`` steps::

    locust -f loadtests/locustfile.py,loadtests/shapes.py --host tcp://127.0.0.1:9000 \\
        --steps 1,10,50,100,200 --step-time 10 --warmup 2 --web-host 127.0.0.1

It reads the schedule from the locustfile's own options (``--steps``,
``--step-time``, ``--warmup``, ``--step-spawn-rate``), and ends the run with
an orderly stop just after the last window has closed, so every worker has
reported its last window and its totals before the master quits. A file named
by ``--stop-file`` that appears during the run ends it early the same way
(``testbed load`` uses it when the server under test dies).

locust asks the shape for its user count once a second; the shape waits inside
that ask for a change due before the next one, so steps of a second or more
(warm-up + window) begin on time, and shorter ones can't (``testbed load``
refuses them: :data:`loadtests.common.SHAPE_TICK`).
"""

from __future__ import annotations

import os
import time

import gevent
from locust import LoadTestShape
from locust.runners import MasterRunner

from loadtests import stepstats
from loadtests.common import AT_ONCE, Schedule

#: Seconds the master waits for the workers' final reports at the end of a run, beyond
#: the longest attempt (the last window closes once its attempts have ended).
FINISH_TIMEOUT = 10.0


class StepShape(LoadTestShape):
    """Walk the :class:`Schedule` given by ``--steps``, ``--step-time`` and ``--warmup``."""

    def __init__(self) -> None:
        super().__init__()
        self._schedule: Schedule | None = None
        self._stopped = False
        self._asked: int | None = None  # the user count the last tick returned

    def schedule(self) -> Schedule:
        # Read once per run (on its first tick), after the web UI may have changed the options.
        if self._schedule is None:
            assert self.runner is not None
            self._schedule = Schedule.from_options(self.runner.environment.parsed_options)
        return self._schedule

    def reset_time(self) -> None:
        # locust calls this as a shape run starts, and again from inside the start() that
        # the run's first tick asked for: what that tick asked is kept (see tick).
        super().reset_time()
        self._schedule = None
        self._stopped = False

    def _stop_requested(self) -> bool:
        assert self.runner is not None
        path = getattr(self.runner.environment.parsed_options, "stop_file", "")
        return bool(path) and os.path.exists(path)

    def _finish(self) -> None:
        """Stop every user, and have every worker's last report in before locust quits.

        Unless the run is cut short, first wait for every worker's last window (a
        worker's clock may run a little behind the master's). Then, with workers, the
        master asks each one to stop its users and waits (polling finely, up to
        :data:`FINISH_TIMEOUT` in all) for their final reports; locust's own
        ``runner.stop()`` would do it too, but polls once a second. Without the step
        statistics, or in a local run, ``runner.stop()`` is all there is to do.
        """
        runner = self.runner
        assert runner is not None
        collector = stepstats.COLLECTOR
        if collector is None:
            runner.stop()
            return
        master = isinstance(runner, MasterRunner)
        workers = ({node.id for node in runner.clients.all} if master
                   else {stepstats.node_id(runner)})
        deadline = (time.monotonic() + FINISH_TIMEOUT
                    + stepstats.longest_attempt(runner.environment.parsed_options))
        if not self._stop_requested():
            # a worker whose users came late may still be measuring: let it finish
            last = len(self.schedule().steps) - 1
            while not collector.closed(workers, last) and time.monotonic() < deadline:
                gevent.sleep(0.02)
        if not master:
            runner.stop()  # the final report is written on the way, in this process
            return
        runner.send_message(stepstats.FINISH)
        while not collector.finished(workers) and time.monotonic() < deadline:
            gevent.sleep(0.02)

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None
        if self.runner.shape_last_tick is None:
            self._asked = None  # a run begins (locust forgets its last tick between runs)
        schedule = self.schedule()
        now = self.get_run_time()
        users = schedule.users_at(now)
        if users == self._asked:
            # Nothing to change now. locust ticks once a second: wait here for a change due
            # before the next tick, so steps begin on time and the run ends just after its
            # last window (again if the sleep woke a little early: a tick that missed the
            # change would cost a second). A change due now (the first users) goes at once.
            change = schedule.next_change(now)
            while now < change and change - now < 1.0:
                gevent.sleep(change - now)
                now = self.get_run_time()
            users = schedule.users_at(now)
        self._asked = users
        if users is None or self._stop_requested():
            if not self._stopped:
                self._stopped = True
                self._finish()
            return None
        options = self.runner.environment.parsed_options
        if getattr(options, "mode", "") == "arrivals":
            # the steps are offered rates: one open-loop user per worker shares each
            return max(getattr(self.runner, "worker_count", 1), 1), AT_ONCE
        rate = float(getattr(options, "step_spawn_rate", 0.0) or 0.0)
        return users, rate if rate > 0 else AT_ONCE
