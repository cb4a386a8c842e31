"""``testbed sniff``: a PF_PACKET sniffer, one line per packet in tcpdump's manner.

It opens an AF_PACKET socket on one interface (``lo`` unless ``-i`` says otherwise),
decodes each frame with :mod:`clients.packets` (Ethernet, ARP, IPv4, IPv6, TCP with
its flags and sequence numbers, UDP, ICMP) and prints it, or writes it to a pcap
file (``-w``) that tcpdump and Wireshark read. As libpcap does, it keeps only one
copy of each packet on loopback, where the kernel hands a packet socket both the
outgoing and the incoming copy. ``--host``, ``--port`` and ``--proto`` select
packets (a small subset of tcpdump's filter language); ``-c`` and ``--timeout``
bound the capture. It needs root (CAP_NET_RAW) and sends nothing.
"""

from __future__ import annotations

import ipaddress
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import IO

from clients import packets
from clients.cli import ArgumentParser, count, port_number, positive_float
from clients.targets import ToolError, privilege_error

PROG = "testbed sniff"
PACKET_OUTGOING = 4
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
SNAPLEN = packets.PCAP_SNAPLEN


def matches(frame: bytes, *, host: str | None = None, port: int | None = None,
            proto: str | None = None) -> bool:
    """Whether a frame passes ``host``/``port``/``proto`` (tcpdump's ``host H and port P``)."""
    if host is None and port is None and proto is None:
        return True
    try:
        eth = packets.parse_ethernet(frame)
        if eth.ethertype == packets.ETH_P_ARP:
            if proto not in (None, "arp") or port is not None:
                return False
            arp = packets.parse_arp(eth.payload)
            return host is None or host in (arp.sender_ip, arp.target_ip)
        if eth.ethertype not in (packets.ETH_P_IP, packets.ETH_P_IPV6) or proto == "arp":
            return False
        ip = packets.parse_ip(eth.payload)
        if host is not None and host not in (ip.src, ip.dst):
            return False
        kinds = {packets.PROTO_TCP: "tcp", packets.PROTO_UDP: "udp",
                 packets.PROTO_ICMP: "icmp", packets.PROTO_ICMPV6: "icmp"}
        if proto is not None and kinds.get(ip.proto) != proto:
            return False
        if port is not None:
            if ip.proto == packets.PROTO_TCP:
                seg = packets.parse_tcp(ip.payload)
            elif ip.proto == packets.PROTO_UDP:
                seg = packets.parse_udp(ip.payload)  # type: ignore[assignment]
            else:
                return False
            return port in (seg.sport, seg.dport)
        return True
    except packets.Malformed:
        return host is None and port is None and proto is None


def interface_type(name: str) -> int:
    try:
        socket.if_nametoindex(name)
    except OSError:
        raise ToolError(f"no interface {name!r} here (see ip link)") from None
    try:
        return int(Path(f"/sys/class/net/{name}/type").read_text())
    except (OSError, ValueError):
        return ARPHRD_ETHER


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Capture packets on one interface and print "
                            "them in tcpdump's manner, or write them to a pcap file. Needs root.")
    parser.add_argument("-i", dest="interface", default="lo", metavar="IFACE",
                        help="the interface (default lo)")
    parser.add_argument("-c", dest="count", type=count, metavar="N", help="stop after N packets")
    parser.add_argument("--timeout", type=positive_float, metavar="S",
                        help="stop after S seconds")
    parser.add_argument("-w", dest="write", metavar="FILE.pcap",
                        help="write the packets to a pcap file instead of printing them")
    parser.add_argument("--print", dest="print_", action="store_true",
                        help="print the packets also while writing them (-w)")
    parser.add_argument("-e", dest="link", action="store_true",
                        help="print the link-level (Ethernet) header too")
    parser.add_argument("--host", metavar="H", help="only packets from or to address H")
    parser.add_argument("--port", type=port_number, metavar="P",
                        help="only TCP and UDP packets from or to port P")
    parser.add_argument("--proto", choices=("tcp", "udp", "icmp", "arp"),
                        help="only packets of this protocol (icmp: ICMP and ICMPv6)")
    return parser


def capture(args, out: IO[str]) -> int:  # noqa: ANN001 - the parsed arguments
    kind = interface_type(args.interface)
    if kind not in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
        raise ToolError(f"{args.interface} is not an Ethernet or loopback interface "
                        f"(type {kind}): not supported")
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(packets.ETH_P_ALL))
    except OSError as exc:
        raise privilege_error(exc, "sniffing (a packet socket)") from None
    pcap = None
    captured = 0
    with sock:
        try:
            sock.bind((args.interface, packets.ETH_P_ALL))
            if args.write:
                pcap = open(args.write, "wb")  # noqa: SIM115 - closed in the finally below
                pcap.write(packets.pcap_header())
        except OSError as exc:
            raise ToolError(f"{args.write or args.interface}: {exc.strerror or exc}") from None
        print(f"listening on {args.interface}, link-type EN10MB (Ethernet), snapshot length "
              f"{SNAPLEN} bytes", file=sys.stderr, flush=True)
        deadline = time.monotonic() + args.timeout if args.timeout else None
        show = pcap is None or args.print_
        try:
            while args.count is None or captured < args.count:
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    break
                if not select.select([sock], [], [], wait)[0]:
                    continue
                frame, address = sock.recvfrom(SNAPLEN)
                stamp = time.time()
                if address[2] == PACKET_OUTGOING and kind == ARPHRD_LOOPBACK:
                    continue  # the incoming copy of the same packet follows: keep that one
                if not matches(frame, host=args.host, port=args.port, proto=args.proto):
                    continue
                captured += 1
                if pcap is not None:
                    pcap.write(packets.pcap_record(stamp, frame))
                    pcap.flush()
                if show:
                    seconds, micros = packets.split_time(stamp)
                    clock = time.strftime("%H:%M:%S", time.localtime(seconds))
                    print(f"{clock}.{micros:06d} "
                          f"{packets.describe(frame, link=args.link)}", file=out, flush=True)
        except KeyboardInterrupt:
            pass
        finally:
            if pcap is not None:
                pcap.close()
    print(f"{captured} packets captured", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.host is not None:
        try:
            args.host = str(ipaddress.ip_address(args.host))
        except ValueError:
            parser.error(f"--host: an address, not {args.host!r}")
    if args.print_ and not args.write:
        parser.error("--print goes with -w")

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        return capture(args, sys.stdout)
    except ToolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
