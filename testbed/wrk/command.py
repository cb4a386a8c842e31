"""``testbed wrk``: wrk, a C load generator, against one model or contender serving http.

wrk is the outside reference for capacity: a few hundred nanoseconds of CPU per request
on its side, so what it measures is the server. The command starts the server as
``testbed load`` and ``testbed bench`` do (:func:`testbed.processes.start_server`, port 0,
its ready line; a contender where ``--model`` names one), or measures a running one
(``--target``, loopback only unless ``--allow-remote``). A short unrecorded wrk run warms
the server up, then the measured run: wrk's report is parsed (:mod:`testbed.wrk.output`),
and the server's whole process tree is read around it (:func:`testbed.sampling.sample_tree`)
for its CPU per request. ``--windows K`` takes K measured runs in a row on the same server,
each read on its own: the summary is the median window's, every window's in ``windows``
(as ``testbed bench --windows`` does), samples for a comparison's rank test; a window
without a reply ends them. ``--versus`` (with ``--target``) measures a second running server
head to head with the first, their windows alternating, and reports the ratio of their CPU
per request with its interval, as ``testbed bench --versus`` does. ``--pin`` puts the
server on the first CPU and wrk on the second (the affinity is inherited at start, so
gunicorn's workers and every thread follow).

Scenarios: keep-alive (the default), ``--close`` (``Connection: close``: a new connection
per request; wrk reconnects after each answer), ``--pipeline K`` (wrk's pipeline script,
K requests written at once per connection).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import selectors
import shlex
import shutil
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple, NoReturn
from urllib.parse import urlsplit

import psutil

from clients.harness import format_host
from clients.safety import UnsafeTarget, ensure_loopback
from servers import registry
from servers.apps.launch import CONTENDERS
from testbed.args import ArgumentParser, add_target_options, add_versus_options, duration, positive
from testbed.bench.summary import (
    alternating,
    summarize_versus,
    summarize_windows,
    versus_text,
    windows_line,
)
from testbed.processes import ServerProcess, StartError, cpu_affinity, start_server
from testbed.sampling import TreeSample, limit_of, sample_tree, server_cpu
from testbed.target import (
    Target,
    UsageError,
    add_server_workers,
    server_options_from,
    server_options_given,
)
from testbed.wrk.output import WrkOutputError, parse

PROG = "testbed wrk"
#: Seconds wrk may take beyond its duration before it is killed.
WRK_SLACK = 15.0
#: The most idle connections --idle holds (each is a descriptor here and on the server).
MAX_IDLE = 2000
#: Seconds the idle connections get to connect and be answered before the run starts.
IDLE_SETUP = 2.0


#: A run that can't happen: bad input (status 2) or a server or wrk that failed (1).
WrkError = UsageError


def build_parser() -> ArgumentParser:
    from servers.cli import add_server_options

    parser = ArgumentParser(
        prog=PROG, conflict_handler="resolve", allow_abbrev=False,
        description="Run wrk (a C HTTP load generator, the outside reference for capacity) "
        "against a model or a contender serving http: starts the server (the serve options "
        "below; --model also takes a contender: " + ", ".join(CONTENDERS) + ") or measures a "
        "running one (--target). After an unrecorded warm-up run, one measured run (or "
        "--windows K in a row): req/s, "
        "latency (average, stdev, max, percentiles), errors by class, non-2xx/3xx answers, "
        "and the server's CPU per request (its whole process tree).")
    add_server_options(parser)
    parser.set_defaults(service="http")
    for action in parser._actions:
        if action.dest == "model":
            action.choices = [*registry.model_names(), *CONTENDERS]
            action.help = "concurrency model or contender: %(choices)s (default %(default)s)"
    add_server_workers(parser, "--workers", "--server-workers")
    add_target_options(parser, "measure", "http://HOST:PORT[/PATH] or tcp://HOST:PORT")
    parser.add_argument("--server-pid", type=positive(int), metavar="PID",
                        help="with --target: the process whose tree's CPU is measured "
                        "(default: not measured)")
    add_versus_options(parser, "measured")
    parser.add_argument("--connections", "-c", type=positive(int), default=10, metavar="N",
                        help="open connections (default %(default)s)")
    parser.add_argument("--threads", type=positive(int), default=1, metavar="N",
                        help="wrk's threads (default %(default)s: one CPU's worth)")
    parser.add_argument("--duration", "-d", type=duration, default=5.0, metavar="T",
                        help="the measured run (default 5s)")
    parser.add_argument("--windows", type=positive(int), default=1, metavar="K",
                        help="K measured runs in a row on the same server, each read on its "
                        "own: the summary is the median window's (by server CPU per request) "
                        "and --json lists every window's in \"windows\"; a window without a reply "
                        "ends them (default 1)")
    parser.add_argument("--warmup", type=duration, default=1.0, metavar="T",
                        help="an unrecorded run before it (default 1s; 0: none)")
    parser.add_argument("--timeout", type=duration, default=2.0, metavar="T",
                        help="a response later than this is a timeout error (default 2s)")
    parser.add_argument("--path", default="/", help="the request target (default /)")
    parser.add_argument("--pipeline", type=positive(int), default=1, metavar="K",
                        help="K requests written at once per connection (wrk's pipeline "
                        "script; default 1)")
    parser.add_argument("--close", action="store_true",
                        help="Connection: close, a new connection per request")
    parser.add_argument("--idle", type=int, default=0, metavar="N",
                        help="hold N more keep-alive connections open during the run, each "
                        "idle after one request (default 0)")
    parser.add_argument("--wrk", metavar="PATH", help="the wrk binary (default: wrk on PATH)")
    parser.add_argument("--pin", action="store_true",
                        help="server on the first CPU, wrk on the second")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def check(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Refuse what can't run before any process exists; the run's settings."""
    binary = args.wrk or shutil.which("wrk")
    if not binary or not os.access(binary, os.X_OK):
        raise WrkError(f"wrk is not installed{f' at {args.wrk}' if args.wrk else ''} "
                       "(Debian: apt-get install wrk)")
    if args.udp:
        raise WrkError("wrk speaks HTTP over TCP: --udp is not supported")
    if args.service != "http":
        raise WrkError(f"wrk speaks HTTP: --service http, not {args.service}")
    if not args.duration >= 1:
        raise WrkError("--duration must be 1 s or more (wrk counts whole seconds)")
    if args.warmup and args.warmup < 1:
        raise WrkError("--warmup must be 0 or 1 s or more (wrk counts whole seconds)")
    if args.connections < args.threads:
        raise WrkError(f"--connections ({args.connections}) must be at least --threads "
                       f"({args.threads})")
    if not 0 <= args.idle <= MAX_IDLE:
        raise WrkError(f"--idle must be 0-{MAX_IDLE}, not {args.idle}")
    if args.pipeline > 1 and args.close:
        raise WrkError("--pipeline and --close do not go together (one request per connection)")
    if not args.path.startswith("/"):
        raise WrkError(f"--path must start with /, not {args.path!r}")
    placement: Any = "free"
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise WrkError("--pin needs at least two CPUs (one for the server, one for wrk)")
        placement = {"server": cpus[:1], "client": cpus[1:2]}
    plan: dict[str, Any] = {"wrk": binary, "placement": placement, "target": None,
                            "versus": None}
    Target.check_versus(args.versus, args.versus_pid, args.target)
    if args.target:
        given = server_options_given(argv)
        if given:
            raise WrkError(f"give either --target or server options ({', '.join(given)}), "
                           "not both")
        target = Target.parse(args.target, default_scheme="http", schemes=("http", "tcp"),
                              allow_remote=args.allow_remote)
        path = urlsplit(args.target if "://" in args.target else f"http://{args.target}").path
        if path and path != "/" and args.path == "/":
            args.path = path
        if isinstance(placement, dict):
            placement["server"] = "not started here: left where it runs"
        plan.update(target=f"http://{format_host(target.host)}:{target.port}",
                    host=target.host, port=target.port)
        if args.versus:
            if not (args.server_pid and args.versus_pid):
                raise WrkError("--versus sets the two servers' CPU per request side by side: "
                               "give --server-pid and --versus-pid")
            versus = target.versus(args.versus, allow_remote=args.allow_remote)
            plan["versus"] = f"http://{format_host(versus.host)}:{versus.port}"
    elif args.server_pid:
        raise WrkError("--server-pid goes with --target (a server started here is known)")
    return plan


def wrk_argv(args: argparse.Namespace, plan: dict[str, Any], url: str, seconds: float,
             script: Path | None) -> list[str]:
    """The wrk command line of one run."""
    argv = [plan["wrk"], "--threads", str(args.threads), "--connections", str(args.connections),
            "--duration", f"{round(seconds)}s", "--timeout", f"{max(round(args.timeout), 1)}s",
            "--latency"]
    if args.close:
        argv += ["--header", "Connection: close"]
    if script is not None:
        argv += ["--script", str(script)]
    argv.append(url + args.path)
    if script is not None:
        argv += ["--", str(args.pipeline)]
    return argv


def run_wrk(argv: list[str], seconds: float, cpus: list[int] | None) -> str:
    """wrk's report (stdout); WrkError (status 1) if it fails or overstays."""
    try:
        with cpu_affinity(cpus):
            done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                                  timeout=seconds + WRK_SLACK)
    except subprocess.TimeoutExpired:
        raise WrkError(f"wrk did not finish in {seconds + WRK_SLACK:g} s", 1) from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise WrkError(f"wrk failed (status {done.returncode}): "
                       f"{lines[-1] if lines else 'no output'}", 1)
    return done.stdout


def open_idle(host: str, port: int, count: int) -> tuple[list[socket.socket], dict[str, int]]:
    """``count`` keep-alive connections, one GET /health sent on each, then left idle.

    Connected all at once without blocking, and given :data:`IDLE_SETUP` seconds in all: a
    server that serves one connection at a time answers the first only, and a full listen
    queue leaves the rest unconnected. What happened is counted, not waited for.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    request = b"GET /health HTTP/1.1\r\nHost: testbed\r\n\r\n"
    pending: dict[socket.socket, str] = {}
    deadline = time.monotonic() + IDLE_SETUP
    counts = {"opened": count, "connected": 0, "answered": 0}
    with selectors.DefaultSelector() as selector:
        for _ in range(count):
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.connect_ex((host, port))
            pending[sock] = "connecting"
            selector.register(sock, selectors.EVENT_WRITE)
        while (left := deadline - time.monotonic()) > 0 and \
                any(state != "answered" for state in pending.values()):
            for key, _ in selector.select(left):
                sock = key.fileobj  # type: ignore[assignment]
                if pending[sock] == "connecting":
                    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                        try:
                            sock.send(request)
                        except OSError:
                            pass
                        counts["connected"] += 1
                    pending[sock] = "sent"
                    selector.modify(sock, selectors.EVENT_READ)
                else:
                    try:
                        if sock.recv(65536):
                            counts["answered"] += 1
                    except OSError:
                        pass
                    pending[sock] = "answered"
                    selector.unregister(sock)
    return list(pending), counts


def _start(args: argparse.Namespace, plan: dict[str, Any]) -> ServerProcess:
    placement = plan["placement"]
    cpus = placement["server"] if isinstance(placement, dict) else None
    try:
        with cpu_affinity(cpus):
            return start_server(server_options_from(args))
    except StartError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        said = next((line for line in reversed(lines) if "error:" in line), lines[0])
        status = 2 if "exited with status 2" in lines[0] else 1
        raise WrkError(f"the server did not start: {said.strip()}", status) from None


def _root(args: argparse.Namespace, server: ServerProcess | None) -> psutil.Process | None:
    pid = server.pid if server is not None else args.server_pid
    if not pid:
        return None
    try:
        return psutil.Process(pid)
    except psutil.Error:
        if server is None:
            raise WrkError(f"--server-pid {pid}: no such process (or not ours to see)") from None
        return None


def run(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    """Start (or find) the server, warm it up, run wrk once measured; the summary."""
    if plan["versus"]:
        return run_versus(args, plan)
    server: ServerProcess | None = None
    try:
        if plan["target"] is None:
            server = _start(args, plan)
            url = f"http://{format_host(server.host)}:{server.port}"
            try:
                ensure_loopback(server.host, allow_remote=args.allow_remote)
            except UnsafeTarget as exc:
                raise WrkError(f"the server listens on {url}: {exc}") from None
        else:
            url = plan["target"]
        root = _root(args, server)
        [(argv, windows, idle_counts)] = _measure_sides(args, plan, [(url, root)])
        died = server is not None and not server.running
        return _summary(args, plan, url, argv, windows, root, died, idle_counts)
    finally:
        if server is not None:
            server.cleanup()


def run_versus(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    """``--versus``: the target and the second server head to head, after a warm-up each,
    ``--windows`` windows each, alternating as ``testbed bench --versus`` does
    (:func:`_measure_sides`). Each side's summary, their pairs and the ratio
    (:func:`testbed.bench.summary.summarize_versus`)."""
    from testbed.bench.server import target_root

    sides = [(plan["target"], target_root(args.server_pid, plan["port"])),
             (plan["versus"], target_root(args.versus_pid, urlsplit(plan["versus"]).port or 80,
                                          "--versus-pid"))]
    measured = _measure_sides(args, plan, sides)
    return summarize_versus(*(_summary(args, plan, url, argv, windows, root, False, idle_counts)
                              for (url, root), (argv, windows, idle_counts)
                              in zip(sides, measured, strict=True)))


def _measure_sides(args: argparse.Namespace, plan: dict[str, Any],
                   sides: list[tuple[str, psutil.Process | None]],
                   ) -> list[tuple[list[str], list[Window], dict[str, int] | None]]:
    """Each side's server (its URL, its process tree) warmed up, then ``--windows`` measured
    wrk runs each, alternating between the sides where there are two
    (:func:`testbed.bench.summary.alternating`), with ``--idle`` connections held on each
    throughout: for each side, its wrk command line, its windows and its idle counts.

    A window without a reply ends them once every side has had its turn at that index (a
    server stuck on a connection it holds: the next would see the same, and wrk takes
    seconds to give up each time)."""
    placement = plan["placement"]
    client = placement["client"] if isinstance(placement, dict) else None
    held: list[tuple[list[socket.socket], dict[str, int] | None]] = []
    measured: list[list[Window]] = [[] for _ in sides]
    try:
        for url, _ in sides:
            parts = urlsplit(url)
            held.append(open_idle(parts.hostname or "127.0.0.1", parts.port or 80, args.idle)
                        if args.idle else ([], None))
        with resources.as_file(resources.files("testbed.wrk") / "pipeline.lua") as lua:
            script = lua if args.pipeline > 1 else None
            if args.warmup:
                for url, _ in sides:
                    run_wrk(wrk_argv(args, plan, url, args.warmup, script), args.warmup, client)
            argvs = [wrk_argv(args, plan, url, args.duration, script) for url, _ in sides]
            for index in range(args.windows):
                for which in alternating(index, len(sides)):
                    measured[which].append(_measure(argvs[which], args.duration, client,
                                                    sides[which][1]))
                if not all(windows[-1].figures["requests"] for windows in measured):
                    break
    finally:
        for sockets, _ in held:
            for sock in sockets:
                sock.close()
    return [(argv, windows, counts)
            for argv, windows, (_, counts) in zip(argvs, measured, held, strict=True)]


def _summary(args: argparse.Namespace, plan: dict[str, Any], url: str, argv: list[str],
             windows: list[Window], root: psutil.Process | None, died: bool,
             idle_counts: dict[str, int] | None) -> dict[str, Any]:
    """One server's summary: its one window's, or the median window's with every window's
    (:func:`testbed.bench.summary.summarize_windows`), and its idle counts."""
    each = [summarize(args, plan, url, argv, figures, root, before, after, died, wrk_cpu)
            for figures, before, after, wrk_cpu in windows]
    summary = each[0] if len(each) == 1 else summarize_windows(each)
    summary["idle"] = idle_counts
    return summary


class Window(NamedTuple):
    """One measured wrk run: its parsed report, the server's tree read before and after
    it, and the CPU seconds wrk took."""

    figures: dict[str, Any]
    before: TreeSample | None
    after: TreeSample | None
    wrk_cpu: float


def _measure(argv: list[str], seconds: float, client: list[int] | None,
             root: psutil.Process | None) -> Window:
    """Run wrk once, measured."""
    before = sample_tree(root) if root is not None else None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    report = run_wrk(argv, seconds, client)
    wrk_cpu = _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)) - _cpu(usage)
    after = sample_tree(root) if root is not None else None
    try:
        return Window(parse(report), before, after, wrk_cpu)
    except WrkOutputError as exc:
        raise WrkError(str(exc), 1) from None


def _cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def summarize(args: argparse.Namespace, plan: dict[str, Any], url: str, argv: list[str],
              figures: dict[str, Any], root: psutil.Process | None, before: TreeSample | None,
              after: TreeSample | None, server_died: bool, wrk_cpu: float) -> dict[str, Any]:
    """The run as one JSON-able record: wrk's figures, the server's CPU, what was run."""
    requests = figures["requests"]
    server: dict[str, Any] = {"pid": root.pid if root is not None else None,
                              **server_cpu(before, after, requests)}
    placement = plan["placement"]
    elapsed = figures["elapsed_s"]
    client_busy = wrk_cpu / elapsed if elapsed > 0 else 0.0
    limit = limit_of(placement, server.get("cores_busy"), client_busy,
                     min(args.threads, len(os.sched_getaffinity(0))))
    scenario = ("close" if args.close else f"pipeline {args.pipeline}" if args.pipeline > 1
                else "keep-alive")
    return {
        "generator": "wrk",
        "model": None if plan["target"] else args.model,
        "service": None if plan["target"] else args.service,
        "server_options": [] if plan["target"] else server_options_from(args),
        "target": url, "path": args.path, "scenario": scenario,
        "connections": args.connections, "threads": args.threads, "pipeline": args.pipeline,
        "close": args.close, "warmup_s": args.warmup, "duration_s": args.duration,
        **{key: figures[key] for key in ("requests", "elapsed_s", "rps", "bytes_read",
                                          "transfer_bytes_per_s", "latency", "errors",
                                          "error_count", "non_2xx_3xx")},
        "server": server,
        "client": {"cpu_s": wrk_cpu, "cores_busy": client_busy,
                   "cpu_us_per_request": wrk_cpu / requests * 1e6 if requests else None},
        "limit": limit, "placement": placement, "ok": True,
        "server_died": server_died,
        "command": shlex.join(["wrk", *argv[1:]]),
    }


def _n(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _us(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} ms" if value >= 1000 else f"{value:.0f} µs"


def text(summary: dict[str, Any]) -> str:
    """A few lines: what was run, throughput, latency, errors, the server."""
    what = (" ".join([summary["model"], *summary["server_options"][2:]])
            if summary["model"] else summary["target"])
    placement = summary["placement"]
    where = ("free" if placement == "free" else
             f"pinned: server {placement['server']}, wrk {placement['client']}")
    latency, server = summary["latency"], summary["server"]
    percentiles = "  ".join(f"{key[1:-3]}% {_us(value)}" for key, value in latency.items()
                            if key.startswith("p"))
    errors = {k: v for k, v in summary["errors"].items() if v}
    lines = [
        f"{what} · {summary['scenario']} · {summary['connections']} connections · "
        f"{summary['threads']} wrk thread(s) · {where}",
        f"wrk      {summary['requests']:,} requests in {summary['elapsed_s']:.2f} s  "
        f"{summary['rps']:,.0f} req/s",
        f"latency  avg {_us(latency['avg_us'])}  stdev {_us(latency['stdev_us'])}  "
        f"max {_us(latency['max_us'])}  {percentiles}",
        "errors   " + (", ".join(f"{k} {v:,}" for k, v in errors.items()) if errors else "none")
        + f"  non-2xx/3xx {summary['non_2xx_3xx']:,}",
        f"server   {_n(server.get('cpu_us_per_request'), ',.2f')} µs CPU/request  "
        f"{_n(server.get('cores_busy'), '.2f')} cores busy"
        + (f"  ({server.get('processes')} process(es))" if server["measured"] else
           "  (not measured: give --server-pid)"),
        f"wrk      {summary['client']['cores_busy']:.2f} cores busy  limit: {summary['limit']}",
        f"command  {summary['command']}",
    ]
    windows = windows_line(summary)
    if windows:
        lines.insert(1, windows)
    if summary.get("idle"):
        idle = summary["idle"]
        lines.append(f"idle     {idle['opened']} keep-alive connections held: "
                     f"{idle['connected']} connected, {idle['answered']} answered before the run")
    if summary["server_died"]:
        lines.append("the server exited during the run")
    return "\n".join(lines)


def fail(message: str, status: int) -> NoReturn:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        plan = check(args, argv)
        summary = run(args, plan)
    except WrkError as exc:
        fail(str(exc), exc.status)
    sides = [summary["target"], summary["versus"]] if plan["versus"] else [summary]
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(versus_text(summary, text) if plan["versus"] else text(summary))
    clean = not any(side["server_died"] for side in sides) and not any(
        window["error_count"] or window["non_2xx_3xx"]
        for side in sides for window in side.get("windows") or [side])
    return 0 if clean else 1
