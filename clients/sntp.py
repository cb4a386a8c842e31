"""``testbed sntp``: an SNTP client (RFC 4330) in ntpdig's manner; it never sets the clock.

It sends one mode-3 request (retried ``-r`` times, each waiting ``-t`` seconds),
checks the reply as RFC 4330 §5 asks (48 bytes, mode 4, its originate timestamp
equal to our transmit timestamp, not a Kiss-o'-Death, not unsynchronised, a
transmit timestamp), and prints one line as ntpdig does::

    2026-12-01 10:00:00.123456 (+0000) +0.000012 +/- 0.000045 localhost 127.0.0.1 s1 no-leap

the offset of the server's clock from ours, then the error bound (half the round
trip plus the server's root dispersion and half its root delay), the server, its
stratum and its leap indicator. ``--json`` prints every figure, the delay included.
Exit status: 0 for a good reply, 1 for none or a bad one, 2 for a usage error.
"""

from __future__ import annotations

import json
import os
import select
import socket
import sys
import time

from clients import packets
from clients.cli import ArgumentParser, count, port_number, positive_float
from clients.targets import ToolError, pick_address

PROG = "testbed sntp"
LEAP = {0: "no-leap", 1: "add-leap", 2: "del-leap", 3: "unsync"}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Ask an SNTP server (loopback or the "
                            "project's lab) for its time; print the offset and delay. "
                            "The clock is never set.")
    parser.add_argument("host", metavar="HOST")
    parser.add_argument("-p", "--port", type=port_number, default=123, help="(default 123)")
    parser.add_argument("-t", "--timeout", type=positive_float, default=2.0, metavar="S",
                        help="seconds to wait for each reply (default 2)")
    parser.add_argument("-r", "--retries", type=count, default=2, metavar="N",
                        help="requests to send before giving up (default 2, at most 10)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def query(address: str, family: int, port: int, timeout: float, tries: int) -> dict[str, object]:
    """One SNTP exchange; returns its figures or raises Malformed / TimeoutError."""
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((address, port))
        last_error: packets.Malformed | None = None
        for _ in range(tries):
            # the transmit timestamp's low bits are random, so a reply can't be guessed
            t1 = time.time()
            transmit = (packets.to_ntp(t1) & ~0xFFFF) | int.from_bytes(os.urandom(2), "big")
            sock.send(packets.sntp_request(transmit))
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                data = sock.recv(65535)  # ConnectionRefusedError: ICMP port unreachable
                t4 = time.time()
                try:
                    reply = packets.check_sntp_reply(data, transmit)
                except packets.KissOfDeath:
                    raise
                except packets.Malformed as exc:
                    last_error = exc  # a stray or broken datagram: wait on for the real one
                    continue
                t2, t3 = packets.from_ntp(reply.receive), packets.from_ntp(reply.transmit)
                offset, delay = packets.offset_and_delay(t1, t2, t3, t4)
                return {"offset": offset, "delay": delay, "stratum": reply.stratum,
                        "refid": reply.refid_text, "leap": LEAP[reply.leap],
                        "version": reply.version, "root_delay": reply.root_delay,
                        "root_dispersion": reply.root_dispersion, "precision": reply.precision,
                        "error": max(delay, 0.0) / 2 + reply.root_dispersion
                        + reply.root_delay / 2, "server_time": t3}
        if last_error is not None:
            raise last_error
        raise TimeoutError(f"no reply from {address} port {port} after {tries} requests "
                           f"of {timeout:g} s each")


def ntpdig_line(host: str, address: str, result: dict) -> str:
    now = time.time() + result["offset"]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1e6):06d}"
    zone = time.strftime("%z", time.localtime(now))
    names = f"{host} {address}" if host != address else address
    return (f"{stamp} ({zone}) {result['offset']:+.6f} +/- {result['error']:.6f} {names} "
            f"s{result['stratum']} {result['leap']}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.retries > 10:
        parser.error("-r: at most 10")
    try:
        family, address = pick_address(args.host)
        result = query(address, family, args.port, args.timeout, args.retries)
    except ToolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    except packets.KissOfDeath as exc:
        print(f"{PROG}: {args.host}: {exc}", file=sys.stderr)
        return 1
    except packets.Malformed as exc:
        print(f"{PROG}: {args.host}: bad reply: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: {args.host} port {args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"host": args.host, "address": address, "port": args.port, **result}))
    else:
        print(ntpdig_line(args.host, address, result))
    return 0
