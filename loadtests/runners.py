"""Adjustments to locust's runners that make a run start and end without idle seconds.

A locustfile of its own, loaded beside the users (``-f
loadtests/locustfile.py,loadtests/shapes.py,loadtests/runners.py``, as
``testbed load`` does), on the master and on every worker alike; without it,
locust runs as it always does, only slower to start and to stop:

- worker readiness: each worker says when its ``init`` has run (a custom
  message), and a headless master waits for that, polling finely, instead of
  locust's look once a second (a run started before a worker's handlers were
  registered lost the window clock's message);
- the master's quit waits for its workers to leave instead of a fixed 0.5 s,
  four times a run;
- at the master's ``quit`` event, locust's CSV files are rewritten with the
  run's final statistics (locust writes none at exit);
- the web UI's host field may name another scheme: the user class is picked
  before it swarms.
"""

from __future__ import annotations

import csv
import inspect
import logging
import time
from typing import Any

import gevent
from locust import events
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner

from loadtests import stepstats
from loadtests.users import pick_user_class, safety_error

#: How often the master looks whether its workers have connected, or have quit (seconds).
MASTER_POLL = 0.01
#: Seconds a headless or autostarted master waits in ``init`` for ``--expect-workers``
#: when ``--expect-workers-max-wait`` is 0 (unbounded); locust's own wait follows.
WORKERS_WAIT = 60.0
#: Longest wait for the workers to quit, per quit: locust's own fixed wait.
QUIT_GRACE = 0.5

log = logging.getLogger("testbed.runners")


@events.init.add_listener
def on_init(environment: Any, runner: Any = None, web_ui: Any = None, **_: Any) -> None:
    options = environment.parsed_options
    if isinstance(runner, WorkerRunner):
        # locust calls a worker ready as soon as it connects, which can be before the
        # locustfile's listeners ran: a run started then loses their messages. Say when.
        runner.send_message(stepstats.READY, None)
    if not isinstance(runner, WorkerRunner) and getattr(options, "csv_prefix", None):
        environment.events.quit.add_listener(
            lambda **_: write_final_csv(environment, options.csv_prefix))
    if isinstance(runner, MasterRunner):
        initialised: set[str] = set()
        runner.register_message(stepstats.READY,
                                lambda msg, **_: initialised.add(msg.node_id))
        if fast_quit_supported():
            runner.quit = _quit_when_workers_left(runner)  # type: ignore[method-assign]
        else:
            log.warning("locust's MasterRunner.quit is not the one loadtests/runners.py "
                        "knows: keeping it (about 0.5 s per quit)")
        if options.headless or getattr(options, "autostart", False):
            _await_workers(runner, options, initialised)
    if web_ui is not None:
        _pick_on_swarm(environment, web_ui)


def _await_workers(runner: MasterRunner, options: Any, initialised: set[str]) -> None:
    """Wait here, polling finely, until ``--expect-workers`` workers are ready and have run
    their ``init`` (``initialised``: the ids of those that said so).

    Locust's own wait before a headless (or autostarted) run looks once a second, and
    its first look comes before any worker could have connected: every run lost 1 s.
    After this, its look finds them ready at once. Should they not come, it is still
    locust that gives up once ``--expect-workers-max-wait`` has passed (counted from
    here), or keeps waiting if that is 0, as before.
    """
    want = int(getattr(options, "expect_workers", 1) or 1)
    given = float(getattr(options, "expect_workers_max_wait", 0) or 0)
    deadline = time.monotonic() + (given or WORKERS_WAIT)

    def ready() -> bool:
        ids = {client.id for client in runner.clients.ready}
        return len(ids & initialised) >= want

    while not ready() and time.monotonic() < deadline:
        gevent.sleep(MASTER_POLL)
    if given and not ready():
        # the time given is up: locust's wait gives up at its next look, not after it all again
        options.expect_workers_max_wait = 1e-3


#: The statements of locust's ``MasterRunner.quit`` (logging and comments aside) that
#: :func:`_quit_when_workers_left` stands for; any other body keeps locust's own.
_LOCUST_QUIT = (
    "self.stop(send_stop_to_client=False)",
    "for client in self.clients.all:",
    'self.server.send_to_client(Message("quit", None, client.id))',
    "gevent.sleep(0.5)",
    "self.greenlet.kill(block=True)",
)


def fast_quit_supported() -> bool:
    """Whether the installed locust's ``MasterRunner.quit`` is the one replaced below."""
    try:
        source = inspect.getsource(MasterRunner.quit)
    except (OSError, TypeError):
        return False
    body = [line.split("#")[0].strip() for line in source.splitlines()[1:]]
    return tuple(line for line in body if line and not line.startswith("logger.")) == _LOCUST_QUIT


def _quit_when_workers_left(runner: MasterRunner) -> Any:
    """Locust's ``MasterRunner.quit``, waiting for the workers to leave, not a fixed 0.5 s.

    Locust sleeps 0.5 s "for the final stats report from all workers" in every quit, and
    a headless shape run quits four times on its way out (the shape, the main loop, the
    ``quitting`` event and the shutdown): 2 s a run doing nothing. A worker sends its
    final stats before its own quit message, which removes it from ``runner.clients``,
    so once no worker is left every report is in. Same steps otherwise; installed on this
    runner only, and only while :func:`fast_quit_supported` (a locust whose ``quit`` differs
    keeps its own, with a warning in the log and a skip, with its reason, in the tests).
    """
    def quit() -> None:
        runner.stop(send_stop_to_client=False)
        for client in list(runner.clients.all):
            runner.server.send_to_client(Message("quit", None, client.id))
        deadline = time.monotonic() + QUIT_GRACE
        while len(runner.clients) and time.monotonic() < deadline:
            gevent.sleep(MASTER_POLL)
        runner.greenlet.kill(block=True)
    return quit


def write_final_csv(environment: Any, prefix: str) -> None:
    """Rewrite ``<prefix>_stats.csv`` and ``<prefix>_failures.csv`` with the run's final
    statistics, with locust's own row writers.

    Locust rewrites its CSV files once a second while it runs, but not at exit: the last
    reports of the workers (the attempts that ended in the last second or so) reach its
    JSON file and not its CSV files. Rewritten here, at its ``quit`` event, they hold the
    same totals as locust's JSON and as summary.json.
    """
    from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (("_stats.csv", writer.requests_csv),
                          ("_failures.csv", writer.failures_csv)):
        try:
            with open(f"{prefix}{suffix}", "w", newline="") as handle:
                write(csv.writer(handle))
        except OSError as exc:  # the run's figures are elsewhere too: say so, go on
            log.warning("could not rewrite %s%s: %s", prefix, suffix, exc)


def _pick_on_swarm(environment: Any, web_ui: Any) -> None:
    """The web UI's host field may name another scheme: pick the class before it swarms."""
    from flask import jsonify, request

    @web_ui.app.before_request
    def pick() -> Any:
        if request.method == "POST" and request.path.endswith("/swarm") and request.form.get("host"):
            host = request.form["host"]
            error = safety_error(host, environment.parsed_options)
            if error:
                return jsonify({"success": False, "message": error, "host": environment.host})
            pick_user_class(environment, host)
        return None
