"""Locust users over raw TCP and UDP, built on ``clients/harness.py``.

Run it as any locustfile (the web UI shows the options below)::

    locust -f loadtests/locustfile.py --host tcp://127.0.0.1:9000 --web-host 127.0.0.1
    locust -f loadtests/locustfile.py --host udp://127.0.0.1:9000 --headless -u 10 -t 30s
    locust -f loadtests/locustfile.py,loadtests/shapes.py --host tcp://127.0.0.1:9000 \\
        --steps 1,10,50,100,200 --step-time 10 --warmup 2          # stepped load

The host's scheme picks the user class: ``tcp://`` (the default) runs
:class:`TCPUser`, ``udp://`` runs :class:`UDPUser`. Each exchange fires locust's
``request`` event: request type ``tcp`` or ``udp``, name ``"<mode> <size>B"``,
and on failure the harness's :class:`~clients.harness.ExchangeError`, whose
text is its failure class (``refused``, ``connect_timeout``, ...), so locust's
failure table groups failures by class. Traffic goes to loopback addresses
only unless ``--allow-remote`` is given.

Modes: ``persistent`` keeps one connection (one UDP socket) per user and opens
a new one after a failure; ``connect`` opens a new connection for every
request, as the course's attackDDoS does. Payloads are ``--payload-size``
bytes ending with a newline (one request is one line).
"""

from __future__ import annotations

import csv
import inspect
import itertools
import logging
import random
import sys
import time
from typing import Any

import gevent
from locust import User, events, task
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner

from clients.harness import (
    TCPClient,
    UDPClient,
    as_exchange_error,
    exchange_once,
    parse_endpoint,
)
from clients.safety import UnsafeTarget, ensure_loopback
from loadtests import stepstats
from loadtests.common import arrival_times, make_payload

#: After a failure that took less than this (refused, reset...), a user with no think time
#: waits out the rest before its next attempt, so a dead server is not hammered in a hot loop.
FAILURE_PAUSE = 0.01
#: Exchanges a user with no think time makes per task run, between returns to locust's scheduler.
BATCH = 100
#: How often the master looks whether its workers have connected, or have quit (seconds).
MASTER_POLL = 0.01
#: Seconds a headless or autostarted master waits in ``init`` for ``--expect-workers``
#: when ``--expect-workers-max-wait`` is 0 (unbounded); locust's own wait follows.
WORKERS_WAIT = 60.0
#: Longest wait for the workers to quit, per quit: locust's own fixed wait.
QUIT_GRACE = 0.5

#: Attempts one arrivals user keeps in flight at most (each holds a descriptor).
ARRIVALS_IN_FLIGHT = 1000

log = logging.getLogger("testbed.locustfile")
_user_ids = itertools.count(1)
_random = random.Random()


@events.init_command_line_parser.add_listener
def add_arguments(parser: Any) -> None:
    # On the parser itself, not a group: only its add_argument knows include_in_web_ui.
    group = parser
    group.add_argument("--payload-size", type=int, default=64, metavar="BYTES",
                       help="bytes per request, newline included (default 64)")
    group.add_argument("--mode", choices=["persistent", "connect", "arrivals"],
                       default="persistent",
                       help="persistent: one connection per user; connect: one per request; "
                       "arrivals: new connections at an offered rate (the steps are "
                       "connections per second), Poisson arrivals, each independent of the others")
    group.add_argument("--expect", choices=["echo", "upper"], default="echo",
                       help="the service's answer to check replies against (default echo)")
    group.add_argument("--think-time", type=float, default=0.0, metavar="S",
                       help="seconds a user waits between requests (default 0)")
    group.add_argument("--connect-timeout", type=float, default=5.0, metavar="S",
                       help="seconds to wait for a TCP handshake (default 5)")
    group.add_argument("--io-timeout", type=float, default=5.0, metavar="S",
                       help="seconds to wait for a reply (default 5)")
    group.add_argument("--allow-remote", action="store_true", default=False,
                       help="allow a host that is not a loopback address")
    group.add_argument("--steps", type=str, default="10", metavar="N,N,...",
                       help="stepped load (with loadtests/shapes.py): users per step, or "
                       "connections per second with --mode arrivals (default 10)")
    group.add_argument("--step-time", type=float, default=30.0, metavar="S",
                       help="stepped load: measured seconds per step, after its warm-up (default 30)")
    group.add_argument("--warmup", type=float, default=2.0, metavar="S",
                       help="stepped load: unrecorded seconds before each step's window (default 2)")
    group.add_argument("--first-warmup", type=float, default=-1.0, metavar="S",
                       help="stepped load: the first step's warm-up, on a fresh server "
                       "(default: --warmup)")
    group.add_argument("--step-spawn-rate", type=float, default=0.0, metavar="R",
                       help="stepped load: users started per second (default 0: all at once)")
    group.add_argument("--step-stats-file", type=str, default="", metavar="PATH",
                       include_in_web_ui=False,
                       help="write per-window statistics of each worker to this JSON file")
    group.add_argument("--stop-file", type=str, default="", metavar="PATH", include_in_web_ui=False,
                       help="stepped load: end the run early once this file exists")


def _safety_error(host: str | None, options: Any) -> str | None:
    """Why ``host`` must not be loaded (malformed, not loopback), or None."""
    try:
        _, name, _ = parse_endpoint(host)
        ensure_loopback(name, allow_remote=bool(getattr(options, "allow_remote", False)))
    except (ValueError, UnsafeTarget) as exc:
        return str(exc)
    return None


class SocketUser(User):
    """A user that makes verified exchanges through the harness and reports each one."""

    abstract = True
    transport = "tcp"

    def on_start(self) -> None:
        options = self.environment.parsed_options
        error = _safety_error(self.host, options)
        if error:
            raise ValueError(error)
        _, self.address, self.port = parse_endpoint(self.host, self.transport)
        self.size = int(options.payload_size)
        self.payload = make_payload(self.size)
        self.mode = options.mode
        self.expect = options.expect
        self.think = float(options.think_time)
        self.connect_timeout = float(options.connect_timeout)
        self.io_timeout = float(options.io_timeout)
        self.request_name = f"{self.mode} {self.size}B"
        self.batch = BATCH if self.think <= 0 else 1
        self._fire = self.environment.events.request.fire
        self._phase: object = None
        self.client: TCPClient | UDPClient | None = None
        self._once = self._persistent if self.mode == "persistent" else self._connect
        self.uid = next(_user_ids)
        stepstats.STATE.users.add(self.uid)

    def wait_time(self) -> float:
        return self.think

    def on_stop(self) -> None:
        stepstats.STATE.users.discard(getattr(self, "uid", None))
        if self.client is not None:
            self.client.close()

    @task
    def exchange(self) -> None:
        if self.mode == "arrivals":
            self._arrivals()  # an open loop: runs until the user is stopped
            return
        once = self._once
        for _ in range(self.batch):
            once()

    def _arrivals(self) -> None:
        """New connections at this user's share of the offered rate, each in its own greenlet.

        An attempt that waits for its timeout holds up no later arrival, so the offered
        rate does not depend on how the server copes. The times come block by block from
        :func:`~loadtests.common.arrival_times` (Poisson times, the offered count); a
        generator that falls behind makes its late arrivals at once. Arrivals beyond
        :data:`ARRIVALS_IN_FLIGHT` attempts at once are not made: the achieved rate, which
        the summary sets beside the offered one, then shows it.
        """
        from gevent.pool import Pool

        pool = Pool(ARRIVALS_IN_FLIGHT)
        try:
            self._arrive(pool)
        finally:
            # Stopped: the attempts in flight end unreported, as a stopped user's would
            # (neither locust nor the windows count them).
            pool.kill(block=True, timeout=1.0)

    def _arrive(self, pool: Any) -> None:
        carry = 0.0
        while True:
            rate, end, start = stepstats.arrival_block(time.monotonic())
            share = rate / max(stepstats.STATE.arrival_users, 1)
            times, carry = arrival_times(share, start, end, _random, carry)
            for due in times:
                pause = due - time.monotonic()
                if pause > 0:
                    gevent.sleep(pause)
                if pool.full():
                    window = stepstats.STATE.phase.window
                    if window is not None:
                        window.skipped += 1
                    continue
                pool.spawn(self._connect)
            pause = end - time.monotonic()
            if pause > 0:
                gevent.sleep(pause)

    def new_client(self) -> TCPClient | UDPClient:
        raise NotImplementedError

    def _persistent(self) -> None:
        state = stepstats.STATE
        client = self.client
        if client is None or self._phase is not state.phase:
            # A new phase began: its requests go over a connection opened within it.
            if client is not None:
                client.close()
            client = self.client = self.new_client()
            self._phase = state.phase
        ctx = stepstats.take(self.uid)
        start = time.perf_counter()
        try:
            done = client.exchange(self.payload)
        except Exception as exc:  # noqa: BLE001 - every failure is reported with its class
            client.close()
            self._failed(exc, start, ctx)
            return
        self._fire(request_type=self.transport, name=self.request_name, response_time=done.latency * 1000.0,
                   response_length=len(done.reply), exception=None, context=ctx)

    def _connect(self) -> None:
        ctx = stepstats.take(self.uid)
        start = time.perf_counter()
        try:
            done = exchange_once(self.address, self.port, self.payload,
                                 udp=self.transport == "udp", expect=self.expect,
                                 connect_timeout=self.connect_timeout, io_timeout=self.io_timeout)
        except Exception as exc:  # noqa: BLE001 - every failure is reported with its class
            self._failed(exc, start, ctx)
            return
        # The whole cycle counts here: connect, exchange and close.
        self._fire(request_type=self.transport, name=self.request_name,
                   response_time=(time.perf_counter() - start) * 1000.0,
                   response_length=len(done.reply), exception=None, context=ctx)

    def _failed(self, exc: Exception, start: float, ctx: object) -> None:
        elapsed = time.perf_counter() - start
        error = as_exchange_error(exc)
        self._fire(request_type=self.transport, name=self.request_name, response_time=elapsed * 1000.0,
                   response_length=0, exception=error, context=ctx)
        if self.think <= 0 and elapsed < FAILURE_PAUSE and self.mode != "arrivals":
            gevent.sleep(FAILURE_PAUSE - elapsed)


class TCPUser(SocketUser):
    """Verified exchanges over TCP, one connection per user or one per request (``--mode``);
    with ``--mode arrivals``, an open-loop source of new connections at the step's rate."""

    transport = "tcp"

    def new_client(self) -> TCPClient:
        return TCPClient(self.address, self.port, expect=self.expect,
                         connect_timeout=self.connect_timeout, io_timeout=self.io_timeout)


class UDPUser(SocketUser):
    """Verified datagram exchanges; a datagram with no answer in ``--io-timeout`` is ``io_timeout``."""

    transport = "udp"

    def new_client(self) -> UDPClient:
        return UDPClient(self.address, self.port, expect=self.expect, timeout=self.io_timeout)


USER_CLASSES: dict[str, type[SocketUser]] = {"tcp": TCPUser, "udp": UDPUser}


def pick_user_class(environment: Any, host: str | None) -> None:
    """Run only the user class of ``host``'s scheme (tcp:// when it has none)."""
    try:
        scheme = parse_endpoint(host)[0] if host else "tcp"
    except ValueError:
        return  # reported when the users start
    available = getattr(environment, "available_user_classes", None) or {}
    chosen = [cls for cls in available.values() if getattr(cls, "transport", None) == scheme]
    if not chosen:
        chosen = [USER_CLASSES[scheme]]
    environment.user_classes[:] = chosen


@events.init.add_listener
def on_init(environment: Any, runner: Any = None, web_ui: Any = None, **_: Any) -> None:
    options = environment.parsed_options
    if not isinstance(runner, WorkerRunner):
        if environment.host:
            error = _safety_error(environment.host, options)
            if error:
                print(f"locust: error: {error}", file=sys.stderr)
                sys.exit(2)
        pick_user_class(environment, environment.host)
    if not isinstance(runner, MasterRunner):
        environment.events.request.add_listener(stepstats.on_request)
    if isinstance(runner, WorkerRunner):
        runner.register_message(stepstats.FINISH, stepstats.on_finish)
        runner.register_message(stepstats.CLOCK, stepstats.on_clock)
        # locust calls a worker ready as soon as it connects, which can be before this
        # listener ran: a run started then loses the messages above. Say when they are in.
        runner.send_message(stepstats.READY, None)
    if runner is not None and not isinstance(runner, WorkerRunner) and \
            getattr(options, "step_stats_file", ""):
        collector = stepstats.COLLECTOR = stepstats.Collector(options.step_stats_file)
        runner.register_message(stepstats.MESSAGE, collector.on_message)
        environment.events.test_start.add_listener(lambda **_: collector.reset(
            environment.parsed_options))
        if isinstance(runner, MasterRunner):
            # test_start fires just before the shape's clock starts and the first users
            # are sent: the workers time their windows from this
            environment.events.test_start.add_listener(lambda **_: runner.send_message(
                stepstats.CLOCK, {"wall": time.time(),
                                  "arrival_users": max(runner.worker_count, 1)}))
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
            log.warning("locust's MasterRunner.quit is not the one loadtests/locustfile.py "
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
            error = _safety_error(host, environment.parsed_options)
            if error:
                return jsonify({"success": False, "message": error, "host": environment.host})
            pick_user_class(environment, host)
        return None


@events.test_start.add_listener
def on_test_start(environment: Any, **_: Any) -> None:
    runner = environment.runner
    if isinstance(runner, MasterRunner):
        return
    origin = None
    shape = environment.shape_class
    if not isinstance(runner, WorkerRunner) and shape is not None:
        # a local run: the shape's clock started a moment ago, in this process
        origin = time.time() - (time.perf_counter() - shape.start_time)
    stepstats.start(runner, environment.parsed_options, origin)


@events.test_stop.add_listener
def on_test_stop(environment: Any, **_: Any) -> None:
    if not isinstance(environment.runner, MasterRunner):
        stepstats.finish(environment.parsed_options)
