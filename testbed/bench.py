"""``testbed bench``: a server's CPU per request and requests/s, with a generator lean enough
to keep it busy.

Locust spends about 25 µs of CPU per request, so against a fast server it is
the limit and its figures describe locust. This command drives the server with
:class:`clients.bench.ClosedLoop` instead (a few µs per request, one thread,
TCP only): ``--connections`` persistent connections, each with one request in
flight, every reply verified. It starts the server itself (port 0, its ready
line) or benches a running one (``--target``, loopback only unless
``--allow-remote``).

A run is a warm-up on connections that are closed before the window opens (a
fresh Python server can be slowed for its first connections by its allocator,
see issue 7), then a measured window on new connections. Around the window the
server's whole process tree is read (:func:`testbed.sampling.sample_tree`: user
+ system CPU, the forking model's reaped children included): its CPU divided by
the replies verified in the window is the server's CPU per request. The
client's own CPU is measured the same way; near one core busy, the client was
the limit, and the requests/s say more about it than about the server.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
from typing import Any, NoReturn

import psutil

from clients.bench import MAX_CONNECTIONS, ClosedLoop, Result
from clients.harness import ExchangeError, format_host, open_connection, parse_endpoint
from clients.safety import UnsafeTarget, ensure_loopback
from loadtests.common import make_payload
from testbed.args import (
    ArgumentParser,
    add_target_options,
    duration,
    positive,
    server_options_given,
)
from testbed.load.command import server_options_from
from testbed.processes import ServerProcess, StartError, cpu_affinity, start_server
from testbed.sampling import TreeSample, sample_tree

PROG = "testbed bench"
MAX_PAYLOAD = 16 * 1024 * 1024
#: Client cores busy at or above this: the client, not the server, was the limit.
CLIENT_BOUND = 0.9


class BenchError(Exception):
    """A bench that can't run: bad input (status 2) or a server that failed (status 1)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def build_parser() -> ArgumentParser:
    from servers.cli import add_server_options, non_negative_int

    parser = ArgumentParser(
        prog=PROG, conflict_handler="resolve",
        allow_abbrev=False,  # an abbreviated server option would slip past --target's check
        description="Keep one server busy with a lean closed-loop TCP client (TCP only): "
        "--connections persistent connections, one request in flight on each, every reply "
        "verified; after a warm-up on connections closed before it, a measured window "
        "reports requests/s, errors by class, the server's CPU per request (its whole "
        "process tree) and how busy the client itself was. Starts the server (the serve "
        "options below) or benches a running one (--target).")
    add_server_options(parser)
    # The bench has no workers of its own: --workers is the server's, as in testbed serve,
    # and --server-workers (testbed load's name) says the same.
    parser.add_argument("--workers", "--server-workers", dest="server_workers",
                        type=non_negative_int, default=0, metavar="N",
                        help="worker threads or processes of the pool-based server models "
                        "(default: the model's own)")
    parser.add_argument("--udp", action="store_true", help=argparse.SUPPRESS)  # refused: TCP only
    add_target_options(parser, "bench", "tcp://HOST:PORT")
    parser.add_argument("--server-pid", type=positive(int), metavar="PID",
                        help="with --target: the process whose tree's CPU is measured "
                        "(default: the process listening on the target's port, if it is ours "
                        "to see)")
    parser.add_argument("--connections", "-c", type=int, default=10, metavar="N",
                        help="persistent connections, one request in flight on each "
                        "(default %(default)s)")
    parser.add_argument("--payload-size", type=int, default=64, metavar="B",
                        help="bytes per request, the newline included (default %(default)s)")
    parser.add_argument("--expect", choices=("echo", "upper"),
                        help="the answer to check replies against (default: the --service; "
                        "echo for a --target)")
    parser.add_argument("--warmup", type=duration, default=2.0, metavar="T",
                        help="unrecorded warm-up on connections closed before the window "
                        "opens (default 2s; 0: none)")
    parser.add_argument("--duration", "-t", type=duration, default=5.0, metavar="T",
                        help="the measured window (default 5s)")
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
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser


def check(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Refuse what can't run before any socket or process exists; the run's settings."""
    if args.udp:
        raise BenchError("TCP only: --udp is not supported (use testbed load for UDP)")
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    largest = min(MAX_CONNECTIONS, max(nofile - 64, 1))
    if not 1 <= args.connections <= largest:
        raise BenchError(f"--connections must be 1-{largest}, not {args.connections}")
    if not 1 <= args.payload_size <= MAX_PAYLOAD:
        raise BenchError(f"--payload-size must be 1-{MAX_PAYLOAD} bytes, not {args.payload_size}")
    if not args.duration > 0:
        raise BenchError("--duration must be longer than 0 s")
    if args.max_requests < 1:
        raise BenchError(f"--max-requests must be 1 or more, not {args.max_requests}")
    if args.reopens < 0:
        raise BenchError(f"--reopens must be 0 or more, not {args.reopens}")
    placement: Any = "free"
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise BenchError("--pin needs at least two CPUs (one for the server, one for "
                             "the client)")
        placement = {"server": cpus[:1], "client": cpus[1:2]}
    plan: dict[str, Any] = {"placement": placement, "target": None, "host": None, "port": None}
    if args.target:
        given = server_options_given(argv)
        if given:
            raise BenchError(f"give either --target or server options ({', '.join(given)}), "
                             "not both")
        try:
            scheme, host, port = parse_endpoint(args.target, "tcp", port_required=False)
        except ValueError as exc:
            raise BenchError(f"--target: {exc}") from None
        if scheme != "tcp":
            raise BenchError("TCP only: --target must be tcp://HOST:PORT")
        try:
            ensure_loopback(host, allow_remote=args.allow_remote)
        except UnsafeTarget as exc:
            raise BenchError(str(exc)) from None
        if not port:
            raise BenchError(f"--target needs a port: tcp://{format_host(host)}:PORT")
        if isinstance(placement, dict):
            placement["server"] = "not started here: left where it runs"
        plan.update(target=f"tcp://{format_host(host)}:{port}", host=host, port=port)
    elif args.server_pid:
        raise BenchError("--server-pid goes with --target (a server started here is known)")
    plan["expect"] = args.expect or ("echo" if args.target else args.service)
    return plan


def _server_root(proc: psutil.Process) -> psutil.Process:
    """The top of a server's own process tree: up through the parents that run the same
    command (a prefork or reuseport worker's parent is the server that forked it)."""
    try:
        command = proc.cmdline()
        while (parent := proc.parent()) is not None and parent.cmdline() == command:
            proc = parent
    except psutil.Error:
        pass
    return proc


def listens_on(root: psutil.Process, port: int) -> bool:
    """Whether ``root`` or one of its descendants has a TCP socket listening on ``port``."""
    try:
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return False
    for proc in members:
        try:
            if any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
                   for c in proc.net_connections("tcp")):
                return True
        except psutil.Error:
            continue
    return False


def listening_pid(port: int) -> int | None:
    """The root of the server listening on TCP ``port`` here, if we may see it.

    A socket shared by several processes (prefork's workers) is listed once, under any one
    of them: the root is found from there, so the whole tree's CPU is measured.
    """
    try:
        pids = {c.pid for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    except (psutil.Error, OSError):
        return None
    roots = set()
    for pid in pids:
        try:
            roots.add(_server_root(psutil.Process(pid)).pid)
        except psutil.Error:
            continue
    return roots.pop() if len(roots) == 1 else None


def _target_root(args: argparse.Namespace, port: int) -> psutil.Process | None:
    """The process tree whose CPU a --target bench measures: --server-pid's, checked, or the
    one found listening on the port."""
    if not args.server_pid:
        pid = listening_pid(port)
        try:
            return psutil.Process(pid) if pid else None
        except psutil.Error:
            return None
    try:
        root = psutil.Process(args.server_pid)
    except psutil.Error:
        raise BenchError(f"--server-pid {args.server_pid}: no such process (or not ours to "
                         "see)") from None
    if not listens_on(root, port):
        raise BenchError(f"--server-pid {args.server_pid}: neither it nor its children listen "
                         f"on port {port}")
    return root


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
        raise BenchError(f"the server did not start: {said.strip()}", status) from None


def _phase(host: str, port: int, args: argparse.Namespace, payload: bytes, expect: str,
           seconds: float, root: psutil.Process | None
           ) -> tuple[Result, TreeSample | None, TreeSample | None]:
    """One set of connections for ``seconds``, the server tree read around it; closed after."""
    with ClosedLoop(host, port, payload, expect=expect, connections=args.connections,
                    io_timeout=args.io_timeout, connect_timeout=args.connect_timeout,
                    reopens=args.reopens) as loop:
        before = sample_tree(root) if root is not None else None
        result = loop.run(seconds, args.max_requests)
        after = sample_tree(root) if root is not None else None
    return result, before, after


def _probe(host: str, port: int, timeout: float, url: str) -> None:
    try:
        open_connection(host, port, timeout=min(timeout, 5.0)).close()
    except ExchangeError as exc:
        raise BenchError(f"cannot reach {url}: {exc.kind} ({exc.detail})", 1) from None


def run(args: argparse.Namespace, plan: dict[str, Any]) -> dict[str, Any]:
    """Start (or find) the server, warm it up, measure the window; the summary."""
    payload = make_payload(args.payload_size)
    server: ServerProcess | None = None
    try:
        root: psutil.Process | None = None
        if plan["target"] is None:
            server = _start(args, plan)
            host, port, url = server.host, server.port, server.endpoint.url
            try:
                ensure_loopback(host, allow_remote=args.allow_remote)
            except UnsafeTarget as exc:
                raise BenchError(f"the server listens on {url}: {exc}") from None
            try:
                root = psutil.Process(server.pid)
            except psutil.Error:
                pass  # already gone: the run says so
        else:
            host, port, url = plan["host"], plan["port"], plan["target"]
            _probe(host, port, args.connect_timeout, url)
            root = _target_root(args, port)
        pid = root.pid if root is not None else (server.pid if server else None)
        placement = plan["placement"]
        client_cpus = placement["client"] if isinstance(placement, dict) else None
        with cpu_affinity(client_cpus):
            warm = None
            if args.warmup > 0:
                warm, _, _ = _phase(host, port, args, payload, plan["expect"], args.warmup, None)
            window, before, after = _phase(host, port, args, payload, plan["expect"],
                                           args.duration, root)
        server_died = server is not None and not server.running
        return summarize(args, plan, url, pid, warm, window, before, after, server_died)
    finally:
        if server is not None:
            server.cleanup()


def summarize(args: argparse.Namespace, plan: dict[str, Any], url: str, pid: int | None,
              warm: Result | None, window: Result, before: TreeSample | None,
              after: TreeSample | None, server_died: bool) -> dict[str, Any]:
    """The run as one JSON-able record."""
    requests = window.requests
    server: dict[str, Any] = {"pid": pid, "measured": before is not None and after is not None}
    if before is not None and after is not None:
        cpu = max(after.cpu_s - before.cpu_s, 0.0)
        span = after.t - before.t
        server.update(cpu_s=cpu, cores_busy=cpu / span if span > 0 else None,
                      cpu_us_per_request=cpu / requests * 1e6 if requests else None,
                      processes=after.processes, threads=after.threads)
    client_busy = window.cpu_s / window.elapsed if window.elapsed > 0 else 0.0
    return {
        "model": None if plan["target"] else args.model,
        "service": None if plan["target"] else args.service,
        "server_options": [] if plan["target"] else server_options_from(args),
        "target": url, "expect": plan["expect"], "transport": "tcp",
        "connections": args.connections, "payload_size": args.payload_size,
        "warmup_s": args.warmup, "duration_s": args.duration, "window_s": window.elapsed,
        "max_requests": args.max_requests, "io_timeout_s": args.io_timeout,
        "requests": requests, "rps": window.rps,
        "errors": window.errors, "error_count": window.error_count,
        "error_details": window.details, "gave_up": window.gave_up, "capped": window.capped,
        "served_connections": window.served_connections,
        "replies_per_connection": window.replies,
        "server": server,
        "client": {"cpu_s": window.cpu_s, "cores_busy": client_busy,
                   "cpu_us_per_request": window.cpu_s / requests * 1e6 if requests else None},
        "client_bound": client_busy >= CLIENT_BOUND,
        "limit": _limit(plan["placement"], server.get("cores_busy"), client_busy),
        "placement": plan["placement"],
        "warmup": None if warm is None else {
            "requests": warm.requests, "elapsed_s": warm.elapsed,
            "error_count": warm.error_count, "errors": warm.errors},
        "server_died": server_died,
    }


def _limit(placement: Any, server_busy: float | None, client_busy: float) -> str:
    """Which side ran out of CPU: client, server, both, neither, or unknown.

    The server's share is known only when it is pinned (its CPUs are its capacity);
    otherwise only a busy client can be told.
    """
    client = client_busy >= CLIENT_BOUND
    if not isinstance(placement, dict) or not isinstance(placement["server"], list) \
            or server_busy is None:
        return "client" if client else "unknown"
    server = server_busy >= CLIENT_BOUND * len(placement["server"])
    return {(True, True): "both", (True, False): "client", (False, True): "server",
            (False, False): "neither"}[(client, server)]


#: What the limit means for a reader, one line each.
LIMIT_NOTES = {
    "client": "client-bound: the req/s say more about this client than the server",
    "server": "server-bound: the req/s are the server's",
    "both": "both at full CPU: the req/s are a floor of the server's",
    "neither": "neither at full CPU: round trips, delays or serving one client at a time set the pace",
    "unknown": "",
}


def _n(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def text(summary: dict[str, Any]) -> str:
    """A few lines: what was benched, the window, the server, the client."""
    what = (" · ".join([summary["model"], summary["service"], *_extra(summary["server_options"])])
            if summary["model"] else summary["target"])
    placement = summary["placement"]
    where = ("free" if placement == "free" else
             f"pinned: server {_cpus(placement['server'])}, client {_cpus(placement['client'])}")
    warm = summary["warmup"]
    errors = {k: v for k, v in summary["errors"].items() if v}
    server, client = summary["server"], summary["client"]
    lines = [
        f"{what} · tcp · {summary['connections']} connections · {summary['payload_size']} B "
        f"· {where}",
        "warm-up  " + ("none" if warm is None else
                       f"{warm['elapsed_s']:.1f} s, {warm['requests']:,} requests, "
                       f"{warm['error_count']:,} errors, on connections closed before the window"),
        f"window   {summary['window_s']:.2f} s  {summary['requests']:,} requests  "
        f"{summary['rps']:,.0f} req/s  errors: "
        + (", ".join(f"{k} {v:,}" for k, v in errors.items()) if errors else "none"),
        f"server   {_n(server.get('cpu_us_per_request'), ',.2f')} µs CPU/request  "
        f"{_n(server.get('cores_busy'), '.2f')} cores busy"
        + (f"  ({server.get('processes')} process(es))" if server["measured"] else
           "  (not measured: give --server-pid)"),
        f"client   {_n(client['cpu_us_per_request'], ',.2f')} µs CPU/request  "
        f"{client['cores_busy']:.2f} cores busy",
        f"served   {summary['served_connections']} of {summary['connections']} connections "
        f"(replies per connection: min {min(summary['replies_per_connection']):,}, "
        f"max {max(summary['replies_per_connection']):,})",
    ]
    if summary["error_details"]:
        lines.append("first    " + "; ".join(f"{kind}: {detail}" for kind, detail
                                             in summary["error_details"].items()))
    if LIMIT_NOTES[summary["limit"]]:
        lines.append(f"limit    {LIMIT_NOTES[summary['limit']]}")
    if summary["capped"]:
        lines.append(f"stopped at --max-requests {summary['max_requests']:,}")
    if summary["gave_up"]:
        lines.append(f"{summary['gave_up']} connection(s) given up after --reopens")
    if summary["server_died"]:
        lines.append("the server exited during the run")
    return "\n".join(lines)


def _extra(options: list[str]) -> list[str]:
    """The server options beyond the model and service, as one item (``--loop uvloop``)."""
    words, kept = iter(options), []
    for word in words:
        if word in ("--model", "--service"):
            next(words, None)
        elif word != "--quiet":
            kept.append(word)
    return [" ".join(kept)] if kept else []


def _cpus(value: Any) -> str:
    if isinstance(value, list):
        return "CPU " + ",".join(map(str, value))
    return str(value).split(":")[0]


def _interrupt(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        plan = check(args, argv)
        summary = run(args, plan)
    except BenchError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; the server is stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(json.dumps(summary) if args.json else text(summary))
    bad = summary["error_count"] or not summary["requests"] or summary["server_died"]
    return 1 if bad else 0
