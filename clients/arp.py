"""``testbed arp``: ARP who-has over PF_PACKET, in arping's manner (Habets' arping 2.x).

It broadcasts ``who-has HOST tell <our address>`` on one Ethernet interface,
``-c`` times (3 unless told) one second apart, and prints each reply's MAC address and
round trip::

    42 bytes from 92:57:a8:7f:da:d9 (198.18.0.2): index=0 time=0.052 ms

then a statistics block; ``--json`` prints the same figures. A reply addressed to
us that claims another address than the one asked, or whose Ethernet source is
not the MAC it announces, is reported as malformed and not counted. HOST must be
an IPv4 address of the project's lab (the guard refuses any other before a socket
is opened); the tool needs root (CAP_NET_RAW). Exit status: 0 if a reply came, 1 if
none did, 2 on error.
"""

from __future__ import annotations

import fcntl
import json
import select
import socket
import struct
import sys
import time
from pathlib import Path

from clients import packets
from clients.cli import ArgumentParser, count, positive_float
from clients.targets import ToolError, pick_address, privilege_error

PROG = "testbed arp"
SIOCGIFADDR = 0x8915
MAX_COUNT = 1000


def interface(name: str) -> tuple[bytes, str]:
    """(MAC, IPv4 address) of an Ethernet interface; ToolError if it has either not."""
    try:
        socket.if_nametoindex(name)
    except OSError:
        raise ToolError(f"no interface {name!r} here (see ip link)") from None
    base = Path("/sys/class/net") / name
    try:
        kind = int((base / "type").read_text())
        mac = packets.mac_bytes((base / "address").read_text().strip())
    except (OSError, ValueError):
        raise ToolError(f"{name}: cannot read its type and address") from None
    if kind != 1:
        raise ToolError(f"{name} is not an Ethernet interface: ARP needs one")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            request = struct.pack("256s", name.encode()[:15])
            address = socket.inet_ntoa(fcntl.ioctl(sock.fileno(), SIOCGIFADDR, request)[20:24])
        except OSError:
            raise ToolError(f"{name} has no IPv4 address to ask from") from None
    return mac, address


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="ARP who-has for an IPv4 address of the "
                            "project's lab on one Ethernet interface; prints the MAC address "
                            "and the round trip. Needs root.")
    parser.add_argument("host", metavar="HOST")
    parser.add_argument("-i", dest="interface", required=True, metavar="IFACE",
                        help="the Ethernet interface to ask on")
    parser.add_argument("-c", dest="count", type=count, default=3, metavar="N",
                        help=f"requests to send, one a second (default 3, at most {MAX_COUNT})")
    parser.add_argument("-W", dest="timeout", type=positive_float, default=1.0, metavar="S",
                        help="seconds to wait for each reply (default 1)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def run(args, address: str) -> int:  # noqa: ANN001 - the parsed arguments
    mac, source = interface(args.interface)
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(packets.ETH_P_ARP))
    except OSError as exc:
        raise privilege_error(exc, "ARP (a packet socket)") from None
    replies: list[dict[str, object]] = []
    malformed: list[str] = []
    with sock:
        sock.bind((args.interface, packets.ETH_P_ARP))
        request = packets.arp_request(mac, source, address)
        if not args.json:
            print(f"ARPING {address} from {source} {args.interface}", flush=True)
        extra = 0
        for index in range(args.count):
            started = time.monotonic()
            sock.send(request)
            last = index + 1 == args.count
            # listen through the interval (late, extra and malformed replies are seen too);
            # after the last request only until its reply or -W
            deadline = started + (args.timeout if last else max(1.0, args.timeout))
            answered = False
            while (left := deadline - time.monotonic()) > 0:
                if not select.select([sock], [], [], left)[0]:
                    break
                frame = sock.recv(65535)
                arrived = time.monotonic()
                try:
                    eth = packets.parse_ethernet(frame)
                    if eth.dst != packets.mac_text(mac):
                        continue  # not addressed to us
                    reply = packets.arp_answer(frame, address)
                except packets.Malformed as exc:
                    malformed.append(str(exc))
                    print(f"{PROG}: malformed reply: {exc}", file=sys.stderr)
                    continue
                if reply is None or reply.target_ip != source:
                    continue
                if answered:
                    extra += 1
                    continue
                answered = True
                ms = (arrived - started) * 1000
                replies.append({"index": index, "mac": reply.sender_mac, "address": address,
                                "bytes": len(frame), "time_ms": round(ms, 3)})
                if not args.json:
                    print(f"{len(frame)} bytes from {reply.sender_mac} ({address}): "
                          f"index={index} time={ms:.3f} ms", flush=True)
                if last:
                    break
    macs = sorted({str(r["mac"]) for r in replies})
    if args.json:
        print(json.dumps({"host": args.host, "address": address, "interface": args.interface,
                          "from": source, "transmitted": args.count, "received": len(replies),
                          "mac": macs[0] if len(macs) == 1 else macs or None,
                          "extra": extra, "replies": replies, "malformed": malformed}))
    else:
        lost = 100 * (args.count - len(replies)) / args.count
        print(f"\n--- {address} statistics ---")
        print(f"{args.count} packets transmitted, {len(replies)} packets received, "
              f"{lost:3.0f}% unanswered ({extra} extra)")
        if replies:
            times = [float(r["time_ms"]) for r in replies]  # type: ignore[arg-type]
            print(f"rtt min/avg/max = {min(times):.3f}/{sum(times) / len(times):.3f}/"
                  f"{max(times):.3f} ms")
    return 0 if replies else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.count > MAX_COUNT:
        parser.error(f"-c: at most {MAX_COUNT}")
    try:
        _, address = pick_address(args.host, socket.AF_INET)
        if address.startswith("127."):
            raise ToolError(f"{address} is loopback: ARP needs an address on an Ethernet link")
        return run(args, address)
    except ToolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
