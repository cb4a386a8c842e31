"""``testbed storm``: the course's attackDDoS, made safe and measurable.

N clients (default 100), C at a time (default: all at once), each a fresh
connection that sends one line and waits for its reply, through
:func:`clients.harness.exchange_once`. The summary counts the served ones and
every failure class apart (they add up to the attempts), so a denial of service
shows *how* it happened: on Linux an overflowing listen queue mostly drops the
handshake silently, so denied clients see I/O or connect timeouts, not refusals.

Bounded: at most N exchanges, each bounded by its timeouts, and none started after
the overall deadline. Loopback only unless ``--allow-remote``: the target is checked
before any socket exists, so a refused target never sees a packet.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from clients.cli import ArgumentParser, count, payload_line, port_number, positive_float
from clients.harness import EXPECTED, FAILURE_CLASSES, classify, exchange_once, format_host
from clients.safety import UnsafeTarget, ensure_loopback

MAX_CLIENTS = 100_000
MAX_CONCURRENCY = 1000  # threads; beyond this the client machine, not the server, is measured


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values``; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class StormResult:
    """What a storm did: attempts, served, failures by class, latencies of the served."""

    host: str
    port: int
    transport: str
    clients: int
    concurrency: int
    timeout: float
    deadline: float
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_CLASSES, 0))
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def served(self) -> int:
        return len(self.latencies)

    @property
    def attempts(self) -> int:
        return self.served + sum(self.failures.values())

    @property
    def not_attempted(self) -> int:
        return self.clients - self.attempts

    def latency(self) -> dict[str, float] | None:
        """min, p50, p99 and max of the served exchanges, in seconds (nearest rank)."""
        if not self.latencies:
            return None
        values = self.latencies
        return {"min": min(values), "p50": percentile(values, 0.50),
                "p99": percentile(values, 0.99), "max": max(values)}

    def as_dict(self) -> dict:
        return {
            "target": f"{format_host(self.host)}:{self.port}", "host": self.host, "port": self.port,
            "transport": self.transport, "clients": self.clients,
            "concurrency": self.concurrency, "timeout": self.timeout,
            "deadline": self.deadline, "attempts": self.attempts, "served": self.served,
            "failures": dict(self.failures), "not_attempted": self.not_attempted,
            "latency": self.latency(), "elapsed": round(self.elapsed, 3),
        }

    def render(self) -> str:
        lines = [f"storm {format_host(self.host)}:{self.port} {self.transport}: {self.clients} "
                 f"clients, {self.concurrency} at a time, timeout {self.timeout:g} s",
                 f"  {'attempts':<16}{self.attempts:>7}",
                 f"  {'served':<16}{self.served:>7}"]
        lines += [f"  {kind:<16}{n:>7}" for kind, n in self.failures.items()]
        if self.not_attempted:
            lines.append(f"  {'not attempted':<16}{self.not_attempted:>7}   (the overall "
                         f"deadline of {self.deadline:g} s came first)")
        latency = self.latency()
        if latency:
            lines.append("  latency of served: " + ", ".join(
                f"{name} {value * 1000:.1f} ms" for name, value in latency.items()))
        else:
            lines.append("  latency of served: none served")
        lines.append(f"  elapsed {self.elapsed:.2f} s")
        return "\n".join(lines)


def default_deadline(clients: int, concurrency: int, timeout: float) -> float:
    """Enough for every wave of C clients to use both its timeouts, plus a margin."""
    return math.ceil(clients / concurrency) * 2 * timeout + 5.0


def storm(host: str, port: int, *, clients: int = 100, concurrency: int | None = None,
          timeout: float = 5.0, payload: bytes = b"storm\n", udp: bool = False,
          expect: str | None = "echo", deadline: float | None = None,
          allow_remote: bool = False) -> StormResult:
    """Run a storm and return its counts. Raises UnsafeTarget before any socket exists."""
    ensure_loopback(host, allow_remote=allow_remote)
    concurrency = min(concurrency or clients, clients)
    deadline = deadline if deadline is not None else default_deadline(clients, concurrency,
                                                                       timeout)
    result = StormResult(host, port, "udp" if udp else "tcp", clients, concurrency, timeout,
                         deadline)
    lock = threading.Lock()
    go = threading.Event()
    started = 0
    stop_at = math.inf  # set when the clients are released

    def worker() -> None:
        nonlocal started
        go.wait()
        while True:
            with lock:
                if started >= clients or time.monotonic() >= stop_at:
                    return
                started += 1
            kind, latency = _one(host, port, payload, udp, expect, timeout)
            with lock:
                if kind is None:
                    result.latencies.append(latency)
                else:
                    result.failures[kind] += 1

    threads = [threading.Thread(target=worker, name=f"storm-{i}", daemon=True)
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start = time.monotonic()
    stop_at = start + deadline
    go.set()  # all C clients leave together: "at once" means at once
    for thread in threads:
        thread.join()
    result.elapsed = time.monotonic() - start
    return result


def _one(host: str, port: int, payload: bytes, udp: bool, expect: str | None,
         timeout: float) -> tuple[str | None, float]:
    """One fresh-connection exchange: (None, latency) if served, else (class, 0)."""
    try:
        exchange = exchange_once(host, port, payload, udp=udp, expect=expect,
                                 connect_timeout=timeout, io_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - counted, never lost: the counts must add up
        return classify(exc), 0.0
    return None, exchange.latency


def build_parser(prog: str = "testbed storm") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Many clients at once (the course's attackDDoS): N fresh connections, "
        "C at a time, each sending one line and waiting for the reply; prints how many were "
        "served and every failure class apart. Loopback targets only unless --allow-remote.")
    parser.add_argument("host", help="server address (127.0.0.1, ::1, localhost)")
    parser.add_argument("port", type=port_number, help="server port")
    parser.add_argument("--clients", "-n", type=count, default=100, metavar="N",
                        help=f"client exchanges in all (default %(default)s, at most "
                        f"{MAX_CLIENTS})")
    parser.add_argument("--concurrency", "-c", type=count, default=None, metavar="C",
                        help=f"clients at a time (default: all at once, at most "
                        f"{MAX_CONCURRENCY})")
    parser.add_argument("--timeout", "-t", type=positive_float, default=5.0, metavar="S",
                        help="connect timeout and reply timeout of each client, seconds "
                        "(default %(default)s)")
    parser.add_argument("--deadline", type=positive_float, default=None, metavar="S",
                        help="start no client after S seconds (default: enough for every "
                        "client to use its timeouts)")
    parser.add_argument("--payload", type=payload_line, default=b"storm\n", metavar="TEXT",
                        help="the line each client sends (default 'storm')")
    parser.add_argument("--service", choices=list(EXPECTED), default="echo",
                        help="what the server answers, to verify replies (default %(default)s)")
    parser.add_argument("--udp", action="store_true", help="one datagram per client")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a target that is not loopback (only a machine you may test)")
    return parser


def main(argv: list[str] | None = None, prog: str = "testbed storm") -> int:
    """Run a storm from the command line; 0 once it ran (failures are its findings)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.clients > MAX_CLIENTS:
        parser.error(f"--clients is at most {MAX_CLIENTS}")
    if args.concurrency is not None and args.concurrency > MAX_CONCURRENCY:
        parser.error(f"--concurrency is at most {MAX_CONCURRENCY}")
    if args.concurrency is None and args.clients > MAX_CONCURRENCY:
        parser.error(f"{args.clients} clients at once is more than {MAX_CONCURRENCY} threads: "
                     f"give --concurrency")
    try:
        result = storm(args.host, args.port, clients=args.clients,
                       concurrency=args.concurrency, timeout=args.timeout,
                       payload=args.payload, udp=args.udp, expect=args.service,
                       deadline=args.deadline, allow_remote=args.allow_remote)
    except UnsafeTarget as exc:
        parser.exit(2, f"{prog}: error: {exc}\n")
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print(result.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
