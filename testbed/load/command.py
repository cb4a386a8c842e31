"""The ``testbed load`` command: its options, the spec they describe, and the table it prints."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clients.harness import EXPECTED
from testbed.args import (
    ArgumentParser,
    add_target_options,
    duration,
    non_negative,
    positive,
    user_counts,
)
from testbed.load.calibration import (
    CALIBRATION_USERS,
    calibration_path,
    calibration_spec,
    store_ceiling,
)
from testbed.load.runner import run_load
from testbed.load.spec import LoadError, LoadSpec, default_workers
from testbed.target import add_server_workers, server_options_from, server_options_given

DEFAULT_STEPS = [1, 10, 50, 100, 200]


def build_parser() -> ArgumentParser:
    from servers.cli import add_server_options

    parser = ArgumentParser(
        prog="testbed load", conflict_handler="resolve",
        allow_abbrev=False,  # an abbreviated server option would slip past --target's check
        description="One locust load test against one server: a master and --workers worker "
        "processes, headless, with the server's processes sampled; results in "
        "OUT/<run-id>/ (summary.json, locust CSV and HTML, logs).")
    add_server_options(parser)
    # --workers means locust workers here; the server's own pool size is --server-workers.
    add_server_workers(parser)
    add_target_options(parser, "load", "tcp://HOST:PORT or udp://HOST:PORT")
    parser.add_argument("--users", "-u", type=positive(int), default=10, metavar="N",
                        help="users of a flat run (default %(default)s)")
    parser.add_argument("--step", action="store_true",
                        help=f"stepped load over --steps (default {','.join(map(str, DEFAULT_STEPS))})")
    parser.add_argument("--steps", type=user_counts, metavar="N,N,...",
                        help="users of each step (implies --step)")
    parser.add_argument("--spawn-rate", "-r", type=positive(float), metavar="R",
                        help="users started per second (default: each step's users at once)")
    parser.add_argument("--run-time", "-t", type=duration, default=30.0, metavar="T",
                        help="measured time of each step, after its warm-up (default 30s)")
    parser.add_argument("--warmup", type=duration, default=2.0, metavar="T",
                        help="unrecorded warm-up before each step's window, on connections "
                        "closed before the window opens (default 2s)")
    parser.add_argument("--mode", choices=("persistent", "connect", "arrivals"),
                        default="persistent",
                        help="persistent: one connection per user; connect: one per request; "
                        "arrivals: new connections at an offered rate (--rate, --rates)")
    parser.add_argument("--rate", type=positive(int), metavar="R",
                        help="offered rate of a flat arrivals run, new connections per "
                        "second, Poisson arrivals (implies --mode arrivals)")
    parser.add_argument("--rates", type=user_counts, metavar="R,R,...",
                        help="offered rate of each step, connections per second (implies "
                        "--mode arrivals and --step)")
    parser.add_argument("--payload-size", type=positive(int), default=64, metavar="B",
                        help="bytes per request, newline included (default 64)")
    parser.add_argument("--expect", choices=(*EXPECTED, "http"),
                        help="the answer to check replies against (default: the --service)")
    parser.add_argument("--think-time", type=non_negative, default=0.0, metavar="S",
                        help="seconds each user waits between requests (default 0)")
    parser.add_argument("--start-jitter", type=non_negative, default=0.0, metavar="S",
                        help="spread the users' first requests over S seconds (user k waits "
                        "k * 0.618 mod 1 of S), so that users started together do not run "
                        "in step (default 0; give it the server's --delay)")
    parser.add_argument("--connect-timeout", type=positive(float), default=5.0, metavar="S")
    parser.add_argument("--io-timeout", type=positive(float), default=5.0, metavar="S")
    parser.add_argument("--workers", "-w", type=positive(int), default=default_workers(),
                        metavar="W", help="locust worker processes carrying the load "
                        "(default: CPUs - 1 = %(default)s)")
    parser.add_argument("--pin", action="store_true",
                        help="server on the first CPU, locust on the others")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure this machine's locust ceiling against the select model "
                        f"(echo, 64 B, persistent, {CALIBRATION_USERS} users) and store it in "
                        f"{calibration_path()}")
    parser.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                        help="where results/<run-id>/ goes (default results/)")
    parser.add_argument("--web", action="store_true",
                        help="show locust's web UI on 127.0.0.1 while the schedule runs")
    parser.add_argument("--web-port", type=int, default=8089, metavar="PORT")
    parser.add_argument("--lab", metavar="NAME", help="run across the hosts of a lab that is up "
                        "(testbed lab): server on h1, locust master on h2, workers on h3..hN")
    return parser


def spec_from(args: argparse.Namespace, argv: list[str]) -> LoadSpec:
    steps = args.steps or (list(DEFAULT_STEPS) if args.step else [args.users])
    if args.rate or args.rates:
        if args.mode == "persistent" and any(a.split("=")[0] == "--mode" for a in argv):
            raise LoadError("--rate and --rates offer new connections (--mode arrivals), "
                            "not persistent ones")
        if args.steps or "--users" in argv or "-u" in argv:
            raise LoadError("--rate and --rates set the load of an arrivals run: give them "
                            "instead of --users and --steps")
        args.mode = "arrivals"
        steps = args.rates or [args.rate]
    elif args.mode == "arrivals":
        raise LoadError("--mode arrivals needs an offered rate: --rate R or --rates R,R,...")
    if args.target and server_options_given(argv, ignore=("--udp", "--workers")):
        raise LoadError("give either --target or server options (--model, --service, ...), "
                        "not both")
    if args.lab and args.web:
        raise LoadError("--web with --lab: the web UI would listen inside h2, out of reach")
    return LoadSpec(
        server_options=[] if args.target else server_options_from(args),
        target=args.target, allow_remote=args.allow_remote, steps=steps,
        step_time=args.run_time, warmup=args.warmup, spawn_rate=args.spawn_rate,
        mode=args.mode, payload_size=args.payload_size, udp=args.udp,
        expect=args.expect, think_time=args.think_time, start_jitter=args.start_jitter,
        connect_timeout=args.connect_timeout, io_timeout=args.io_timeout,
        workers=args.workers, pin=args.pin, out_dir=args.out, web=args.web,
        web_port=args.web_port, lab=args.lab)


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def table(summary: dict[str, Any]) -> str:
    """The short table printed at the end of a run."""
    arrivals = summary["options"]["mode"] == "arrivals"
    head = ("conn/s offered" if arrivals else "users",
            "achieved" if arrivals else "clients served", "served %", "rps", "p50 ms",
            "p95 ms", "p99 ms", "max ms", "failures", "cpu µs/req", "rss MiB", "gen-bound")
    rows = [head]
    for step in summary["steps"]:
        server = step["server"] or {}
        clients = step.get("clients") or {}
        second = (_fmt(step.get("achieved_rate"), ",.1f") if arrivals else
                  f"{clients['served_any']} of {clients['users']}" if clients else "-")
        share = step.get("served_share")
        rows.append((str(step["users"]), second, _fmt(None if share is None else share * 100,
                                                      ".1f"),
                     _fmt(step["rps"]), _fmt(step["p50_ms"], ".3f"),
                     _fmt(step["p95_ms"], ".3f"), _fmt(step["p99_ms"], ".3f"),
                     _fmt(step["max_ms"], ".2f"),
                     _fmt(sum(step["failures"].values()), ",d"),
                     _fmt(server.get("cpu_us_per_request"), ",.1f"),
                     _fmt(server.get("peak_rss_mib"), ".1f"),
                     "yes" if step["generator_bound"] else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]
    failures = {k: v for k, v in summary["failures"].items() if v}
    what = summary["model"] and f"{summary['model']} · {summary['service']}" or summary["target"]
    status = "complete" if summary["complete"] else f"INCOMPLETE: {summary['error']}"
    lines.insert(0, f"{what} · {summary['transport']} · {summary['options']['mode']} "
                 f"{summary['options']['payload_size']} B · {summary['options']['workers']} "
                 f"worker(s) · {status}")
    if failures:
        lines.append("failures: " + ", ".join(f"{k} {v:,}" for k, v in failures.items()))
    for index, step in enumerate(summary["steps"]):
        running = step.get("users_running")
        if not arrivals and running is not None and running < step["users"]:
            lines.append(f"step {index + 1}: {running} of its {step['users']} users were running "
                         "when its window opened (a longer --warmup or a faster --spawn-rate "
                         "lets them all arrive first)")
    return "\n".join(lines)


def _progress_printer() -> Callable[[str], None]:
    """One updating line on a terminal; elsewhere a line per phase (not per second)."""
    tty = sys.stderr.isatty()
    started = time.monotonic()
    last = [""]

    def show(text: str) -> None:
        line = f"[{time.monotonic() - started:5.1f}s] {text}"
        if tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            phase = re.sub(r"(warm-up|window) [\d.]+/", r"\1 ", text)
            if phase == last[0]:
                return
            last[0] = phase
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
    return show


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    show = _progress_printer()
    try:
        spec = spec_from(args, argv)
        if args.calibrate:
            spec = calibration_spec(spec)
        if spec.web:
            print(f"locust web UI: http://127.0.0.1:{spec.web_port} (while the schedule runs)",
                  file=sys.stderr)
        summary = run_load(spec, progress=show)
    except LoadError as exc:
        _end_line()
        print(f"testbed load: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        _end_line()
        print("testbed load: interrupted; partial results kept", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    _end_line()
    run_dir = Path(spec.out_dir) / summary["run_id"]
    print(table(summary))
    print(f"results: {run_dir}/summary.json")
    if args.calibrate:
        if summary["complete"]:
            path = store_ceiling(spec, summary)
            print(f"generator ceiling with {spec.workers} worker(s): {summary['rps']:,.0f} "
                  f"requests/s, stored in {path}")
        else:
            print("calibration incomplete: nothing stored", file=sys.stderr)
    if not summary["complete"]:
        print(f"testbed load: error: {summary['error']} (partial results kept)", file=sys.stderr)
        return 1
    return 0


def _end_line() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
