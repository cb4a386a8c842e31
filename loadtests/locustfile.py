"""Locust users over raw TCP and UDP, built on ``clients/harness.py``.

Run it as any locustfile (the web UI shows the options below)::

    locust -f loadtests/locustfile.py --host tcp://127.0.0.1:9000 --web-host 127.0.0.1
    locust -f loadtests/locustfile.py --host udp://127.0.0.1:9000 --headless -u 10 -t 30s
    locust -f loadtests/locustfile.py,loadtests/shapes.py --host tcp://127.0.0.1:9000 \\
        --steps 1,10,50,100,200 --step-time 10 --warmup 2          # stepped load

The host's scheme picks the user class: ``tcp://`` (the default) runs
:class:`~loadtests.users.TCPUser`, ``udp://`` runs :class:`~loadtests.users.UDPUser`.
This file declares the options and wires the users to the per-window
statistics (:mod:`loadtests.stepstats`); the users themselves are in
``users.py``, and ``runners.py`` is a locustfile of its own that makes
locust's start and stop quicker (``testbed load`` loads all three). Traffic
goes to loopback addresses only unless ``--allow-remote`` is given.
Payloads are ``--payload-size`` bytes ending with a newline (one request is
one line).
"""

from __future__ import annotations

import sys
import time
from typing import Any

from locust import events
from locust.runners import MasterRunner, WorkerRunner

from clients.harness import EXPECTED
from loadtests import stepstats
from loadtests.users import HTTPUser, TCPUser, UDPUser, pick_user_class, safety_error

__all__ = ["HTTPUser", "TCPUser", "UDPUser"]  # the classes locust finds here


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
    group.add_argument("--expect", choices=[*EXPECTED, "http"], default="echo",
                       help="the service's answer to check replies against (default echo; "
                       "an http:// host always checks the http service's GET /)")
    group.add_argument("--think-time", type=float, default=0.0, metavar="S",
                       help="seconds a user waits between requests (default 0)")
    group.add_argument("--start-jitter", type=float, default=0.0, metavar="S",
                       help="spread the users' first requests over S seconds (user k waits "
                       "k * 0.618 mod 1 of S), so that users started together do not run "
                       "in step (default 0)")
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


@events.init.add_listener
def on_init(environment: Any, runner: Any = None, web_ui: Any = None, **_: Any) -> None:
    options = environment.parsed_options
    if not isinstance(runner, WorkerRunner):
        if environment.host:
            error = safety_error(environment.host, options)
            if error:
                print(f"locust: error: {error}", file=sys.stderr)
                sys.exit(2)
        pick_user_class(environment, environment.host)
    if not isinstance(runner, MasterRunner):
        environment.events.request.add_listener(stepstats.on_request)
    if isinstance(runner, WorkerRunner):
        runner.register_message(stepstats.FINISH, stepstats.on_finish)
        runner.register_message(stepstats.CLOCK, stepstats.on_clock)
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
