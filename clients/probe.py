"""``testbed probe``: the course's UDP ping, over UDP or TCP, through the harness.

Sends N requests one after another, each waiting for its reply or its timeout,
and prints one line per request (the round-trip time, ``Request timed out``, or
the failure class), then a summary like ping's: sent, received, lost %, and
min/avg/max of the round-trip times.

Over UDP every request is a datagram on one socket (late replies to requests
that timed out are recognised and skipped); over TCP every request is a line on
one connection, re-opened after a failure. A reply counts when it came
back whole and is what the service (``--service``, echo by default) answers, so
a late reply to an earlier request is never taken for the current one.
"""

from __future__ import annotations

import sys
import time

from clients.cli import ArgumentParser, count, non_negative_float, payload_line, port_number, positive_float
from clients.harness import EXPECTED, ExchangeError, TCPClient, UDPClient, format_host

MAX_COUNT = 100_000


def probe(host: str, port: int, *, requests: int = 10, timeout: float = 1.0,
          interval: float = 0.0, udp: bool = False, expect: str | None = None,
          payload: bytes | None = None, out=None) -> tuple[int, list[float]]:
    """Send the requests, print a line for each; returns (sent, round-trip times)."""
    out = out or sys.stdout
    target = f"{format_host(host)}:{port}"
    client: TCPClient | UDPClient
    if udp:
        client = UDPClient(host, port, expect=expect, timeout=timeout)
    else:
        client = TCPClient(host, port, expect=expect, connect_timeout=timeout,
                           io_timeout=timeout)
    times: list[float] = []
    sent = 0
    print(f"PROBE {target} ({'udp' if udp else 'tcp'}): {requests} requests, "
          f"timeout {timeout:g} s", file=out, flush=True)
    try:
        for seq in range(1, requests + 1):
            if seq > 1 and interval:
                time.sleep(interval)
            data = payload or f"probe seq={seq} {time.time():.6f}\n".encode()
            sent += 1
            try:
                reply = client.exchange(data)
            except ExchangeError as exc:
                if not udp:
                    client.close()  # a stream in an unknown state: a fresh one for the next
                if exc.kind == "io_timeout":
                    print("Request timed out", file=out, flush=True)
                else:
                    print(f"seq={seq} {exc.kind}: {exc.detail}", file=out, flush=True)
                continue
            times.append(reply.latency)
            print(f"reply from {target}: seq={seq} bytes={len(reply.reply)} "
                  f"time={reply.latency * 1000:.3f} ms", file=out, flush=True)
    except KeyboardInterrupt:  # as ping: ^C ends the run, the summary still comes
        print(file=out)
    finally:
        client.close()
    return sent, times


def summary(target: str, sent: int, times: list[float]) -> str:
    received = len(times)
    lost = 100.0 * (sent - received) / sent if sent else 0.0
    lines = [f"--- {target} probe statistics ---",
             f"{sent} sent, {received} received, {lost:.1f}% lost"]
    if times:
        ms = [t * 1000 for t in times]
        lines.append(f"rtt min/avg/max = {min(ms):.3f}/{sum(ms) / len(ms):.3f}/{max(ms):.3f} ms")
    else:
        lines.append("rtt min/avg/max = -/-/- ms (no replies)")
    return "\n".join(lines)


def build_parser(prog: str = "testbed probe") -> ArgumentParser:
    parser = ArgumentParser(
        prog=prog,
        description="Ping a server with requests, one after another, and print each "
        "round-trip time or 'Request timed out', then a summary (the course's UDP ping).")
    parser.add_argument("host", help="server address")
    parser.add_argument("port", type=port_number, help="server port")
    parser.add_argument("--udp", "-u", action="store_true", help="datagrams instead of TCP")
    parser.add_argument("-c", "--count", type=count, default=10, metavar="N", dest="requests",
                        help=f"requests to send (default %(default)s, at most {MAX_COUNT})")
    parser.add_argument("--timeout", "-W", type=positive_float, default=1.0, metavar="S",
                        help="seconds to wait for each reply (default %(default)s)")
    parser.add_argument("--interval", "-i", type=non_negative_float, default=0.0, metavar="S",
                        help="pause between requests, seconds (default 0: the next request "
                        "leaves when the last one is answered or timed out)")
    parser.add_argument("--service", choices=[*EXPECTED, "any"], default="echo",
                        help="what the server answers, to check each reply (default "
                        "%(default)s); 'any': any reply of the right length counts, even a "
                        "late one to an earlier request")
    parser.add_argument("--payload", type=payload_line, default=None, metavar="TEXT",
                        help="the line to send (default: 'probe seq=N TIME')")
    return parser


def main(argv: list[str] | None = None, prog: str = "testbed probe") -> int:
    """0 if any reply came back, 1 if none did (as ping)."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.requests > MAX_COUNT:
        parser.error(f"--count is at most {MAX_COUNT}")
    target = f"{format_host(args.host)}:{args.port}"
    sent, times = probe(args.host, args.port, requests=args.requests, timeout=args.timeout,
                        interval=args.interval, udp=args.udp,
                        expect=None if args.service == "any" else args.service,
                        payload=args.payload)
    print(summary(target, sent, times), flush=True)
    return 0 if times else 1


if __name__ == "__main__":
    sys.exit(main())
