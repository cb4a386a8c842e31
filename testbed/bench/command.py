"""The ``testbed bench`` command: its options, the spec they describe, its exit status."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import NoReturn

from clients.bench import OPEN_WINDOW
from testbed.args import (
    ArgumentParser,
    add_target_options,
    add_versus_options,
    duration,
    positive,
    user_counts,
)
from testbed.bench.plan import EXPECTS
from testbed.bench.runner import run_bench
from testbed.bench.scale import DEFAULT_STEPS, run_scale, scale_table
from testbed.bench.spec import BenchSpec
from testbed.bench.summary import bench_text, versus_text
from testbed.target import (
    UsageError,
    add_server_workers,
    parse_server_options,
    server_options_from,
    server_options_given,
)

PROG = "testbed bench"


def build_parser() -> ArgumentParser:
    from servers.cli import add_server_options

    parser = ArgumentParser(
        prog=PROG, conflict_handler="resolve",
        allow_abbrev=False,  # an abbreviated server option would slip past --target's check
        description="Keep one server busy with a lean closed-loop TCP client (TCP only): "
        "--connections persistent connections (--active of them busy, the rest idle), "
        "--pipeline requests in flight on each busy one, every reply verified (a line of the "
        "echo or upper service, or GET / over keep-alive HTTP/1.1 for http); after a "
        "warm-up on connections closed before it, a measured window reports requests/s, "
        "latency, errors by class, the server's CPU per request and memory per connection "
        "(its whole process tree) and how busy the client itself was. Starts the server (the serve "
        "options below) or benches a running one (--target).")
    add_server_options(parser)
    # The bench has no workers of its own: --workers is the server's, as in testbed serve.
    add_server_workers(parser, "--workers", "--server-workers")
    parser.add_argument("--udp", action="store_true", help=argparse.SUPPRESS)  # refused: TCP only
    add_target_options(parser, "bench", "tcp://HOST:PORT, or http://HOST:PORT for GET /")
    parser.add_argument("--server-pid", type=positive(int), metavar="PID",
                        help="with --target: the process whose tree's CPU is measured "
                        "(default: the process listening on the target's port, if it is ours "
                        "to see)")
    add_versus_options(parser, "benched")
    parser.add_argument("--connections", "-c", type=int, default=10, metavar="N",
                        help="persistent connections, one request in flight on each "
                        "(default %(default)s)")
    parser.add_argument("--active", "-a", type=positive(int), metavar="K",
                        help="only K of the connections carry the loop; the others are opened, "
                        "left idle, and each proved alive at the end by one verified request "
                        "(default: all active)")
    parser.add_argument("--pipeline", "-P", type=positive(int), default=1, metavar="K",
                        help="requests in flight on each active connection, every reply "
                        "verified in order (default %(default)s)")
    parser.add_argument("--open-timeout", type=positive(float), default=120.0, metavar="S",
                        help="the opening of all the connections (paced, "
                        f"{OPEN_WINDOW} handshakes at a time) ends after S seconds; the rest "
                        "count as connect_timeout (default 120)")
    parser.add_argument("--process-limit", type=positive(int), default=2000, metavar="N",
                        help="refuse more connections than N on a model that forks a process "
                        "per connection (default %(default)s)")
    parser.add_argument("--server-nofile", type=positive(int), metavar="N",
                        help="the started server's soft descriptor limit (default: this "
                        "command's, raised for --connections): to see where it runs out")
    parser.add_argument("--payload-size", type=int, default=64, metavar="B",
                        help="bytes per request of a line service, the newline included "
                        "(default %(default)s; http sends GET /)")
    parser.add_argument("--expect", choices=list(EXPECTS),
                        help="the answer to check replies against (default: the --service; "
                        "for a --target, http for http://, else echo)")
    parser.add_argument("--warmup", type=duration, default=2.0, metavar="T",
                        help="unrecorded warm-up on connections closed before the window "
                        "opens (default 2s; 0: none)")
    parser.add_argument("--duration", "-t", type=duration, default=5.0, metavar="T",
                        help="the measured window (default 5s)")
    parser.add_argument("--windows", type=positive(int), default=1, metavar="K",
                        help="measure K windows in a row on the same server, each on new "
                        "connections: the summary is the median window's (by server CPU per "
                        "request) and --json lists every window's in \"windows\"; samples "
                        "cheaper than K runs, which each start a server and warm it up "
                        "(default 1)")
    parser.add_argument("--max-requests", type=int, default=50_000_000, metavar="N",
                        help="stop a phase after N replies even if time is left "
                        "(default %(default)s)")
    parser.add_argument("--io-timeout", type=positive(float), default=5.0, metavar="S",
                        help="a reply later than this is an io_timeout error (default 5)")
    parser.add_argument("--connect-timeout", type=positive(float), default=5.0, metavar="S")
    parser.add_argument("--reopens", type=int, default=3, metavar="N",
                        help="times a failed connection is reopened before it is given up "
                        "(default %(default)s)")
    parser.add_argument("--pin", action="store_true",
                        help="server on the first CPU, this client on the second")
    parser.add_argument("--no-memory", dest="memory", action="store_false",
                        help="skip the memory readings, and the waits for the server's tree "
                        "to settle that they need (0.4 s or more each): CPU and throughput "
                        "alone, for many short runs")
    parser.add_argument("--scale", nargs="?", const=",".join(map(str, DEFAULT_STEPS)),
                        type=user_counts, metavar="N,N,...",
                        help="the scale scenario instead of one run: a fresh server at each "
                        "step of open connections (default "
                        f"{','.join(map(str, DEFAULT_STEPS))}), --active of them busy "
                        "(default 10), a line per step; the steps after a failure are not "
                        "attempted")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def spec_from(args: argparse.Namespace, argv: list[str]) -> BenchSpec:
    """The spec the parsed arguments describe; UsageError for --target with server options."""
    if args.target:
        given = server_options_given(argv)
        if given:
            raise UsageError(f"give either --target or server options ({', '.join(given)}), "
                             "not both")
    return BenchSpec(
        server_options=[] if args.target else server_options_from(args),
        target=args.target, allow_remote=args.allow_remote, server_pid=args.server_pid,
        versus=args.versus, versus_pid=args.versus_pid,
        udp=args.udp, connections=args.connections, active=args.active,
        pipeline=args.pipeline, open_timeout=args.open_timeout,
        process_limit=args.process_limit, server_nofile=args.server_nofile,
        payload_size=args.payload_size,
        expect=args.expect, warmup=args.warmup, duration=args.duration, windows=args.windows,
        max_requests=args.max_requests, io_timeout=args.io_timeout,
        connect_timeout=args.connect_timeout, reopens=args.reopens, pin=args.pin,
        memory=args.memory)


def _scale(args: argparse.Namespace, argv: list[str], spec: BenchSpec) -> int:
    """``--scale``: :func:`run_scale` over the steps with the server options given; its own
    shorter window and warm-up unless they are given. Exit 0 once it ran: the step where a
    model fails is a finding, recorded in the table."""
    if spec.target:
        raise UsageError("--scale starts a server at each step: give server options, "
                         "not --target")
    if spec.windows > 1:
        raise UsageError("--scale measures one window at each step: --windows is for one run")
    given = {word.split("=")[0] for word in argv}
    records = run_scale(spec.server_options, args.scale, active=spec.active or 10,
                        duration=spec.duration if given & {"--duration", "-t"} else 2.0,
                        warmup=spec.warmup if "--warmup" in given else 0.5,
                        process_limit=spec.process_limit, pin=spec.pin,
                        server_nofile=spec.server_nofile,
                        payload_size=spec.payload_size,
                        progress=lambda text: print(text, file=sys.stderr, flush=True))
    model = parse_server_options(spec.server_options).model
    print(json.dumps(records) if args.json else scale_table(model, records))
    return 0


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        spec = spec_from(args, argv)
        if args.scale:
            if spec.versus:
                raise UsageError("--scale starts its own servers: --versus is for --target")
            return _scale(args, argv, spec)
        summary = run_bench(spec)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the server is stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    text = versus_text if "versus" in summary else bench_text
    print(json.dumps(summary) if args.json else text(summary))
    return 0 if summary["ok"] else 1
