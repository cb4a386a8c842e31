"""``testbed ping``: ICMP echo in iputils' manner, to loopback and the project's lab only.

As root it uses a raw ICMP socket; otherwise Linux's unprivileged ICMP datagram
socket, where ``net.ipv4.ping_group_range`` lets the user's group open one. It
prints iputils' reply lines and statistics block and keeps its exit codes: 0 if
replies came, 1 if none did, 2 on error. Where it differs from iputils, on purpose:
it stops after ``-c`` echoes (4 unless told: iputils goes on until interrupted), it
waits ``-W`` seconds (2 unless told) after the last echo for late replies, and it
names a reply's source by the HOST given (``from h2 (198.18.0.2)``) rather than by
a reverse lookup.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass

from clients import packets
from clients.cli import ArgumentParser, count, positive_float
from clients.targets import ToolError, is_root, pick_address, privilege_error

PROG = "testbed ping"
MAX_COUNT = 100_000
MIN_INTERVAL = 0.01  # seconds; iputils allows 0.002 to root only, 0.2 to the others
MAX_SIZE = 65507 - 8
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # Linux; Python 3.11 lacks the name


@dataclass(frozen=True)
class Reply:
    """An echo reply to one of ours (``size`` is the ICMP message's length)."""

    seq: int
    ttl: int | None
    size: int
    source: str


@dataclass(frozen=True)
class Error:
    """An ICMP error quoting one of our echo requests (Destination Unreachable...)."""

    seq: int
    text: str
    source: str


def read_reply(data: bytes, *, v6: bool, raw: bool, ident: int | None,
               source: str) -> Reply | Error | None:
    """What one received datagram is to us: a Reply, an Error, or None (not ours).

    ``raw``: an IPv4 raw socket gives the IP header too (the TTL comes from it);
    ``ident`` is None on a datagram socket, where the kernel matches replies for us.
    Raises packets.Malformed for a message that is truncated or otherwise broken.
    """
    ttl = None
    if raw and not v6:
        ip = packets.parse_ipv4(data)
        ttl, data = ip.ttl, ip.payload
        if ip.proto != packets.PROTO_ICMP:
            return None
    icmp = packets.parse_icmp(data, v6=v6, verify=raw and not v6)
    if icmp.type == (packets.ICMP6_ECHO_REPLY if v6 else packets.ICMP_ECHO_REPLY):
        if ident is not None and icmp.ident != ident:
            return None
        return Reply(icmp.seq, ttl, len(data), source)
    if icmp.type in ((packets.ICMP6_UNREACH, packets.ICMP6_TIME_EXCEEDED) if v6 else
                     (packets.ICMP_UNREACH, packets.ICMP_TIME_EXCEEDED)):
        quoted = packets.quoted_echo(icmp, v6=v6)
        if quoted is None or (ident is not None and quoted.ident != ident):
            return None
        return Error(quoted.seq, packets.icmp_error_text(icmp, v6=v6), source)
    return None


def rtt_text(ms: float) -> str:
    """A round trip with iputils' precision: 0.045, 1.23, 12.3, 123."""
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 1:
        return f"{ms:.2f}"
    return f"{ms:.3f}"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog=PROG, description="ICMP echo to loopback or the project's lab, in iputils' manner. "
        "Exit status: 0 if replies came, 1 if none did, 2 on error.")
    parser.add_argument("host", metavar="HOST")
    parser.add_argument("-c", dest="count", type=count, default=4, metavar="N",
                        help=f"echoes to send (default 4, at most {MAX_COUNT}; "
                        "iputils sends until interrupted)")
    parser.add_argument("-i", dest="interval", type=positive_float, default=1.0, metavar="S",
                        help=f"seconds between echoes (default 1, at least {MIN_INTERVAL})")
    parser.add_argument("-W", dest="timeout", type=positive_float, default=2.0, metavar="S",
                        help="seconds to wait for replies after the last echo (default 2)")
    parser.add_argument("-s", dest="size", type=int, default=56, metavar="SIZE",
                        help="data bytes per echo (default 56: 64 bytes of ICMP)")
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET,
                        default=socket.AF_UNSPEC, help="IPv4 only")
    family.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6,
                        help="IPv6 only")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    return parser


def open_socket(family: int) -> tuple[socket.socket, bool]:
    """(socket, raw?): a raw ICMP socket as root, else an unprivileged ICMP datagram socket."""
    proto = socket.IPPROTO_ICMPV6 if family == socket.AF_INET6 else socket.IPPROTO_ICMP
    if is_root():
        try:
            return socket.socket(family, socket.SOCK_RAW, proto), True
        except OSError as exc:
            raise privilege_error(exc, "a raw ICMP socket") from None
    try:
        return socket.socket(family, socket.SOCK_DGRAM, proto), False
    except OSError as exc:
        if exc.errno in (1, 13):  # EPERM, EACCES
            raise ToolError("ping needs root, or a group in net.ipv4.ping_group_range "
                            "(sysctl) for an unprivileged ICMP socket") from None
        raise privilege_error(exc, "an ICMP socket") from None


def _ttl_from(ancillary: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, value in ancillary:
        if (level, kind) in ((socket.IPPROTO_IP, socket.IP_TTL),
                             (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT)) and len(value) >= 4:
            return struct.unpack("i", value[:4])[0]
    return None


class Pinger:
    """One run: sends the echoes, collects replies, keeps the statistics."""

    def __init__(self, args: argparse.Namespace, family: int, address: str,
                 out: object = sys.stdout) -> None:
        self.args, self.family, self.address = args, family, address
        self.v6 = family == socket.AF_INET6
        self.sent: dict[int, float] = {}
        self.rtts: list[float] = []
        self.replies: list[dict[str, object]] = []
        self.received: set[int] = set()
        self.duplicates = 0
        self.errors = 0
        self.malformed = 0
        self.last_reply = 0.0
        self.out = out

    def say(self, line: str) -> None:
        if not self.args.json:
            print(line, file=self.out, flush=True)  # type: ignore[call-overload]

    def run(self) -> int:
        args = self.args
        sock, raw = open_socket(self.family)
        with sock:
            if self.v6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
            elif not raw:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            ident = os.getpid() & 0xFFFF if raw else None
            payload_tail = bytes(i & 0xFF for i in range(8, args.size)) if args.size > 8 else b""
            if self.v6:
                self.say(f"PING {args.host}({self.address}) {args.size} data bytes")  # sic, iputils
            else:
                self.say(f"PING {args.host} ({self.address}) {args.size}({args.size + 28}) "
                         "bytes of data.")
            start = time.monotonic()
            next_send, seq, last = start, 0, start
            while True:
                now = time.monotonic()
                if seq < args.count and now >= next_send:
                    seq += 1
                    stamp = struct.pack("!d", time.time())[:args.size]
                    packet = packets.echo_request(ident or 0, seq, stamp + payload_tail, v6=self.v6)
                    self.sent[seq] = time.monotonic()
                    try:
                        sock.sendto(packet, (self.address, 0))
                    except OSError as exc:
                        self.errors += 1
                        print(f"{PROG}: sendmsg: {exc.strerror or exc}", file=sys.stderr)
                    last = now = time.monotonic()
                    next_send += args.interval
                all_sent = seq >= args.count
                if all_sent and (len(self.received) >= args.count or now >= last + args.timeout):
                    break
                wake = last + args.timeout if all_sent else next_send
                ready, _, _ = select.select([sock], [], [], max(0.0, wake - now))
                if ready:
                    self.receive(sock, raw, ident)
            elapsed = max(last, self.last_reply) - start
        return self.report(seq, elapsed)

    def name(self, source: str) -> str:
        """The reply's source as iputils shows it: ``h2 (198.18.0.2)`` when HOST was that name
        (iputils looks the name up again; this takes the one given, and asks nothing)."""
        if source == self.address and self.args.host.strip("[]") != source:
            return f"{self.args.host} ({source})"
        return source

    def receive(self, sock: socket.socket, raw: bool, ident: int | None) -> None:
        try:
            data, ancillary, _, peer = sock.recvmsg(65535, 64)
        except OSError as exc:
            self.errors += 1
            self.say(f"From {self.address}: {exc.strerror or exc}")
            return
        arrived = self.last_reply = time.monotonic()
        source = peer[0]
        try:
            what = read_reply(data, v6=self.v6, raw=raw, ident=ident, source=source)
        except packets.Malformed as exc:
            if source == self.address:
                self.malformed += 1
                print(f"{PROG}: malformed reply from {source}: {exc}", file=sys.stderr)
            return
        if what is None or what.seq not in self.sent:
            return
        if isinstance(what, Error):
            self.errors += 1
            self.say(f"From {what.source} icmp_seq={what.seq} {what.text}")
            return
        ttl = what.ttl if what.ttl is not None else _ttl_from(ancillary)
        ms = (arrived - self.sent[what.seq]) * 1000
        dup = what.seq in self.received
        if dup:
            self.duplicates += 1
        else:
            self.received.add(what.seq)
            self.rtts.append(ms)
        self.replies.append({"seq": what.seq, "bytes": what.size, "ttl": ttl,
                             "time_ms": round(ms, 3), "duplicate": dup})
        self.say(f"{what.size} bytes from {self.name(what.source)}: icmp_seq={what.seq} ttl={ttl} "
                 f"time={rtt_text(ms)} ms" + (" (DUP!)" if dup else ""))

    def report(self, transmitted: int, elapsed: float) -> int:
        received = len(self.received)
        loss = 100.0 * (transmitted - received) / transmitted if transmitted else 0.0
        rtt = None
        if self.rtts:
            mean = sum(self.rtts) / len(self.rtts)
            mdev = math.sqrt(max(0.0, sum(r * r for r in self.rtts) / len(self.rtts) - mean**2))
            rtt = {"min": min(self.rtts), "avg": mean, "max": max(self.rtts), "mdev": mdev}
        if self.args.json:
            print(json.dumps({
                "host": self.args.host, "address": self.address, "transmitted": transmitted,
                "received": received, "duplicates": self.duplicates, "errors": self.errors,
                "malformed": self.malformed, "loss_percent": round(loss, 4),
                "time_ms": round(elapsed * 1000), "replies": self.replies,
                "rtt_ms": {k: round(v, 3) for k, v in rtt.items()} if rtt else None}))
        else:
            extra = (f"+{self.duplicates} duplicates, " if self.duplicates else "") + \
                    (f"+{self.errors} errors, " if self.errors else "")
            self.say("")
            self.say(f"--- {self.args.host} ping statistics ---")
            self.say(f"{transmitted} packets transmitted, {received} received, {extra}"
                     f"{loss:g}% packet loss, time {elapsed * 1000:.0f}ms")
            if rtt:
                self.say("rtt min/avg/max/mdev = " + "/".join(
                    f"{rtt[k]:.3f}" for k in ("min", "avg", "max", "mdev")) + " ms")
        return 0 if received else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.count > MAX_COUNT:
        parser.error(f"-c: at most {MAX_COUNT}")
    if args.interval < MIN_INTERVAL:
        parser.error(f"-i: at least {MIN_INTERVAL} s")
    if not 0 <= args.size <= MAX_SIZE:
        parser.error(f"-s: 0 to {MAX_SIZE} bytes")
    try:
        family, address = pick_address(args.host, args.family)
        return Pinger(args, family, address).run()
    except ToolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
