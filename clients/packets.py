"""Packet bytes in and out, without I/O: the headers the packet tools build and read.

Every function here is pure: it takes bytes (or fields) and returns fields (or bytes),
so the tools' decoders are tested with crafted bytes, truncated and wrong ones too.
A packet that cannot be decoded raises :class:`Malformed` with one line saying why;
a tool reports that line and goes on, it never shows a traceback.

Covered: the Internet checksum, Ethernet II, ARP (IPv4 over Ethernet), IPv4, IPv6
(fixed header), ICMP and ICMPv6 echo and errors, TCP, UDP, NTP/SNTP (RFC 4330), the
pcap file format, and :func:`describe`, one line per frame in tcpdump's manner.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
ETH_P_ALL = 0x0003

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58

ICMP_ECHO_REPLY = 0
ICMP_UNREACH = 3
ICMP_ECHO_REQUEST = 8
ICMP_TIME_EXCEEDED = 11
ICMP6_UNREACH = 1
ICMP6_TIME_EXCEEDED = 3
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129

#: ICMP destination-unreachable codes, in iputils' and nmap's words
UNREACH_CODES = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 3: "port-unreach",
                 9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
UNREACH6_CODES = {0: "net-unreach", 1: "admin-prohibited", 3: "host-unreach", 4: "port-unreach"}


class Malformed(ValueError):
    """Bytes that are not the packet they should be: the message says what is wrong."""


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) < size:
        raise Malformed(f"truncated {what}: {len(data)} bytes, at least {size} needed")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``: 0 over a packet whose checksum is right."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mac_text(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def mac_bytes(text: str) -> bytes:
    parts = text.split(":")
    if len(parts) != 6:
        raise Malformed(f"not a MAC address: {text!r}")
    try:
        return bytes(int(part, 16) for part in parts)
    except ValueError:
        raise Malformed(f"not a MAC address: {text!r}") from None


# -- Ethernet and ARP -----------------------------------------------------------------

@dataclass(frozen=True)
class Ethernet:
    dst: str
    src: str
    ethertype: int
    payload: bytes


def parse_ethernet(frame: bytes) -> Ethernet:
    _need(frame, 14, "Ethernet header")
    dst, src, ethertype = struct.unpack("!6s6sH", frame[:14])
    return Ethernet(mac_text(dst), mac_text(src), ethertype, frame[14:])


def ethernet(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return struct.pack("!6s6sH", dst, src, ethertype) + payload


@dataclass(frozen=True)
class Arp:
    op: int  # 1 request, 2 reply
    sender_mac: str
    sender_ip: str
    target_mac: str
    target_ip: str


ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST = b"\xff" * 6


def arp_request(src_mac: bytes, src_ip: str, target_ip: str) -> bytes:
    """A whole Ethernet frame: who-has ``target_ip`` tell ``src_ip``, to the broadcast address."""
    body = struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, ARP_REQUEST, src_mac,
                       ipaddress.IPv4Address(src_ip).packed, b"\0" * 6,
                       ipaddress.IPv4Address(target_ip).packed)
    return ethernet(BROADCAST, src_mac, ETH_P_ARP, body)


def parse_arp(data: bytes) -> Arp:
    """An ARP packet (the Ethernet payload) for IPv4 over Ethernet."""
    _need(data, 28, "ARP packet")
    htype, ptype, hlen, plen, op, smac, sip, tmac, tip = struct.unpack(
        "!HHBBH6s4s6s4s", data[:28])
    if (htype, ptype, hlen, plen) != (1, ETH_P_IP, 6, 4):
        raise Malformed(f"ARP for hardware {htype}/protocol {ptype:#06x}, not IPv4 over Ethernet")
    return Arp(op, mac_text(smac), str(ipaddress.IPv4Address(sip)), mac_text(tmac),
               str(ipaddress.IPv4Address(tip)))


def arp_answer(frame: bytes, asked: str) -> Arp | None:
    """The ARP reply in ``frame`` that answers who-has ``asked``; None for other frames.

    Malformed if it is an ARP reply that claims to come from some other address than
    the one asked for, or whose Ethernet source is not the MAC it announces.
    """
    eth = parse_ethernet(frame)
    if eth.ethertype != ETH_P_ARP:
        return None
    arp = parse_arp(eth.payload)
    if arp.op != ARP_REPLY:
        return None
    if arp.sender_ip != asked:
        raise Malformed(f"ARP reply from {arp.sender_ip} ({arp.sender_mac}), not from {asked}")
    if eth.src != arp.sender_mac:
        raise Malformed(f"ARP reply for {asked} says {arp.sender_mac} "
                        f"but came from Ethernet address {eth.src}")
    return arp


# -- IP -------------------------------------------------------------------------------

@dataclass(frozen=True)
class IP:
    version: int
    src: str
    dst: str
    proto: int  # IPv6: the next header
    ttl: int  # IPv6: the hop limit
    payload: bytes
    length: int  # the whole packet's length, header included, as the header says


def parse_ipv4(data: bytes) -> IP:
    _need(data, 20, "IPv4 header")
    if data[0] >> 4 != 4:
        raise Malformed(f"IP version {data[0] >> 4} in an IPv4 header")
    ihl = (data[0] & 0x0F) * 4
    if ihl < 20:
        raise Malformed(f"IPv4 header length {ihl} is less than 20")
    _need(data, ihl, "IPv4 header with options")
    total, = struct.unpack("!H", data[2:4])
    ttl, proto = data[8], data[9]
    payload = data[ihl:total] if ihl <= total <= len(data) else data[ihl:]
    return IP(4, str(ipaddress.IPv4Address(data[12:16])), str(ipaddress.IPv4Address(data[16:20])),
              proto, ttl, payload, total)


def parse_ipv6(data: bytes) -> IP:
    _need(data, 40, "IPv6 header")
    if data[0] >> 4 != 6:
        raise Malformed(f"IP version {data[0] >> 4} in an IPv6 header")
    plen, nxt, hops = struct.unpack("!HBB", data[4:8])
    payload = data[40:40 + plen]
    return IP(6, str(ipaddress.IPv6Address(data[8:24])), str(ipaddress.IPv6Address(data[24:40])),
              nxt, hops, payload, 40 + plen)


def parse_ip(data: bytes) -> IP:
    _need(data, 1, "IP header")
    return parse_ipv6(data) if data[0] >> 4 == 6 else parse_ipv4(data)


# -- ICMP -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Icmp:
    type: int
    code: int
    ident: int  # echo only (0 otherwise)
    seq: int  # echo only
    payload: bytes  # echo: the data; errors: the start of the packet that caused them


def echo_request(ident: int, seq: int, payload: bytes, *, v6: bool = False) -> bytes:
    """An ICMP (or ICMPv6) echo request; ICMPv6's checksum is left to the kernel."""
    kind = ICMP6_ECHO_REQUEST if v6 else ICMP_ECHO_REQUEST
    header = struct.pack("!BBHHH", kind, 0, 0, ident & 0xFFFF, seq & 0xFFFF)
    if v6:
        return header + payload
    total = checksum(header + payload)
    return struct.pack("!BBHHH", kind, 0, total, ident & 0xFFFF, seq & 0xFFFF) + payload


def parse_icmp(data: bytes, *, v6: bool = False, verify: bool = True) -> Icmp:
    """An ICMP message; ``verify`` checks ICMPv4's checksum (ICMPv6's needs the IPv6 header)."""
    _need(data, 8, "ICMPv6 message" if v6 else "ICMP message")
    kind, code, _, ident, seq = struct.unpack("!BBHHH", data[:8])
    if verify and not v6 and checksum(data):
        raise Malformed("ICMP checksum is wrong")
    if kind in ((ICMP6_ECHO_REQUEST, ICMP6_ECHO_REPLY) if v6 else (ICMP_ECHO_REQUEST,
                                                                  ICMP_ECHO_REPLY)):
        return Icmp(kind, code, ident, seq, data[8:])
    return Icmp(kind, code, 0, 0, data[8:])


def quoted_echo(error: Icmp, *, v6: bool = False) -> Icmp | None:
    """The echo request an ICMP error quotes (its id and seq), or None if it quotes another."""
    try:
        inner = parse_ipv6(error.payload) if v6 else parse_ipv4(error.payload)
        if inner.proto != (PROTO_ICMPV6 if v6 else PROTO_ICMP):
            return None
        quoted = error.payload[40:] if v6 else error.payload[(error.payload[0] & 0x0F) * 4:]
        echo = parse_icmp(quoted, v6=v6, verify=False)
    except Malformed:
        return None
    return echo if echo.type == (ICMP6_ECHO_REQUEST if v6 else ICMP_ECHO_REQUEST) else None


def icmp_error_text(error: Icmp, *, v6: bool = False) -> str:
    """An ICMP error in iputils' words ("Destination Port Unreachable")."""
    if v6:
        if error.type == ICMP6_UNREACH:
            return {0: "Destination unreachable: No route",
                    1: "Destination unreachable: Administratively prohibited",
                    3: "Destination unreachable: Address unreachable",
                    4: "Destination unreachable: Port unreachable"}.get(
                        error.code, f"Destination unreachable: Unknown code {error.code}")
        if error.type == ICMP6_TIME_EXCEEDED:
            return "Time exceeded: Hop limit"
        return f"ICMPv6 type {error.type} code {error.code}"
    if error.type == ICMP_UNREACH:
        return {0: "Destination Net Unreachable", 1: "Destination Host Unreachable",
                2: "Destination Protocol Unreachable", 3: "Destination Port Unreachable",
                9: "Destination Net Prohibited", 10: "Destination Host Prohibited",
                13: "Communication prohibited by filter"}.get(
                    error.code, f"Dest Unreachable, Bad Code: {error.code}")
    if error.type == ICMP_TIME_EXCEEDED:
        return "Time to live exceeded"
    return f"ICMP type {error.type} code {error.code}"


# -- TCP and UDP ----------------------------------------------------------------------

@dataclass(frozen=True)
class Tcp:
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    payload: bytes


@dataclass(frozen=True)
class Udp:
    sport: int
    dport: int
    length: int
    payload: bytes


TCP_FLAGS = "FSRPAUEC"  # bit 0 .. bit 7


def parse_tcp(data: bytes) -> Tcp:
    _need(data, 20, "TCP header")
    sport, dport, seq, ack, off, flags, window = struct.unpack("!HHIIBBH", data[:16])
    offset = (off >> 4) * 4
    if offset < 20:
        raise Malformed(f"TCP header length {offset} is less than 20")
    _need(data, offset, "TCP header with options")
    return Tcp(sport, dport, seq, ack, flags, window, data[offset:])


def parse_udp(data: bytes) -> Udp:
    _need(data, 8, "UDP header")
    sport, dport, length, _ = struct.unpack("!HHHH", data[:8])
    return Udp(sport, dport, length, data[8:length] if 8 <= length <= len(data) else data[8:])


def tcp_flags_text(flags: int) -> str:
    """tcpdump's flags: S, F, R, P, U, E, W, and '.' for ACK ("S." is a SYN-ACK)."""
    text = "".join(letter for bit, letter in ((1, "S"), (0, "F"), (2, "R"), (3, "P"), (5, "U"),
                                              (6, "E"), (7, "W")) if flags >> bit & 1)
    return text + ("." if flags & 0x10 else "") or "none"


# -- one line per frame, tcpdump's manner ---------------------------------------------

def _endpoint(addr: str, port: int) -> str:
    return f"{addr}.{port}"


def describe_ip(data: bytes) -> str:
    """One line for an IP packet: ``IP 127.0.0.1.5000 > 127.0.0.1.6000: UDP, length 5``."""
    ip = parse_ip(data)
    tag = "IP6" if ip.version == 6 else "IP"
    try:
        if ip.proto == PROTO_TCP:
            tcp = parse_tcp(ip.payload)
            text = f"Flags [{tcp_flags_text(tcp.flags)}]"
            if tcp.payload or tcp.flags & 0x07:  # as tcpdump: no seq on a bare ACK
                text += f", seq {tcp.seq}"
                if tcp.payload:
                    text += f":{(tcp.seq + len(tcp.payload)) & 0xFFFFFFFF}"
            if tcp.flags & 0x10:
                text += f", ack {tcp.ack}"
            text += f", win {tcp.window}, length {len(tcp.payload)}"
            return (f"{tag} {_endpoint(ip.src, tcp.sport)} > {_endpoint(ip.dst, tcp.dport)}: "
                    f"{text}")
        if ip.proto == PROTO_UDP:
            udp = parse_udp(ip.payload)
            return (f"{tag} {_endpoint(ip.src, udp.sport)} > {_endpoint(ip.dst, udp.dport)}: "
                    f"UDP, length {len(udp.payload)}")
        if ip.proto in (PROTO_ICMP, PROTO_ICMPV6):
            v6 = ip.proto == PROTO_ICMPV6
            icmp = parse_icmp(ip.payload, v6=v6, verify=False)
            return f"{tag} {ip.src} > {ip.dst}: {_icmp_text(icmp, v6, len(ip.payload))}"
    except Malformed as exc:
        return f"{tag} {ip.src} > {ip.dst}: [{exc}]"
    return f"{tag} {ip.src} > {ip.dst}: ip-proto-{ip.proto} {len(ip.payload)}"


def _icmp_text(icmp: Icmp, v6: bool, length: int) -> str:
    names = ({ICMP6_ECHO_REQUEST: "echo request", ICMP6_ECHO_REPLY: "echo reply"} if v6 else
             {ICMP_ECHO_REQUEST: "echo request", ICMP_ECHO_REPLY: "echo reply"})
    prefix = "ICMP6, " if v6 else "ICMP "
    if icmp.type in names:
        return f"{prefix}{names[icmp.type]}, id {icmp.ident}, seq {icmp.seq}, length {length}"
    if icmp.type == (ICMP6_UNREACH if v6 else ICMP_UNREACH):
        codes = UNREACH6_CODES if v6 else UNREACH_CODES
        if icmp.code == (4 if v6 else 3):  # tcpdump: "127.0.0.1 udp port 9 unreachable"
            try:
                inner = parse_ipv6(icmp.payload) if v6 else parse_ipv4(icmp.payload)
                quoted = icmp.payload[40:] if v6 else icmp.payload[(icmp.payload[0] & 15) * 4:]
                names = {PROTO_UDP: "udp", PROTO_TCP: "tcp"}
                if inner.proto in names and len(quoted) >= 4:
                    dport = struct.unpack("!H", quoted[2:4])[0]
                    where = f"{inner.dst} {names[inner.proto]} port {dport} unreachable"
                    return (f"{prefix}unreachable port, {where}, length {length}" if v6 else
                            f"{prefix}{where}, length {length}")
            except Malformed:
                pass
        return f"{prefix}unreachable {codes.get(icmp.code, f'code {icmp.code}')}, length {length}"
    return f"{prefix}type {icmp.type}, code {icmp.code}, length {length}"


def describe(frame: bytes, *, link: bool = False) -> str:
    """One line for an Ethernet frame; ``link`` puts the MAC header first (tcpdump -e)."""
    try:
        eth = parse_ethernet(frame)
        names = {ETH_P_IP: "IPv4", ETH_P_IPV6: "IPv6", ETH_P_ARP: "ARP"}
        head = (f"{eth.src} > {eth.dst}, ethertype {names.get(eth.ethertype, 'Unknown')} "
                f"({eth.ethertype:#06x}), length {len(frame)}: " if link else "")
        if eth.ethertype in (ETH_P_IP, ETH_P_IPV6):
            return head + describe_ip(eth.payload)
        if eth.ethertype == ETH_P_ARP:
            arp = parse_arp(eth.payload)
            if arp.op == ARP_REQUEST:
                return head + f"ARP, Request who-has {arp.target_ip} tell {arp.sender_ip}, length 28"
            if arp.op == ARP_REPLY:
                return head + f"ARP, Reply {arp.sender_ip} is-at {arp.sender_mac}, length 28"
            return head + f"ARP, op {arp.op}, length 28"
        return head + f"ethertype {eth.ethertype:#06x}, length {len(frame)}"
    except Malformed as exc:
        return f"[{exc}]"


# -- pcap -----------------------------------------------------------------------------

LINKTYPE_ETHERNET = 1
PCAP_SNAPLEN = 262144


def pcap_header(linktype: int = LINKTYPE_ETHERNET, snaplen: int = PCAP_SNAPLEN) -> bytes:
    """The global header of a pcap file (microsecond timestamps, little-endian, v2.4)."""
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)


def split_time(timestamp: float) -> tuple[int, int]:
    """(seconds, microseconds) of a Unix time, as pcap records and tcpdump's lines show it."""
    seconds = int(timestamp)
    return seconds, min(int(round((timestamp - seconds) * 1e6)), 999_999)


def pcap_record(timestamp: float, frame: bytes, original_length: int | None = None) -> bytes:
    seconds, micros = split_time(timestamp)
    size = len(frame)
    return struct.pack("<IIII", seconds, micros, size,
                       size if original_length is None else original_length) + frame


# -- NTP (RFC 4330, SNTP) -------------------------------------------------------------

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
NTP_PACKET = struct.Struct("!BBbbII4sQQQQ")  # 48 bytes
MODE_CLIENT, MODE_SERVER, MODE_BROADCAST = 3, 4, 5
LEAP_UNSYNCHRONISED = 3


def to_ntp(unix: float) -> int:
    """A Unix time as a 64-bit NTP timestamp (32.32 fixed point since 1900)."""
    return int((unix + NTP_EPOCH_OFFSET) * 2**32) & 0xFFFF_FFFF_FFFF_FFFF


def from_ntp(stamp: int) -> float:
    return stamp / 2**32 - NTP_EPOCH_OFFSET


@dataclass(frozen=True)
class Ntp:
    leap: int
    version: int
    mode: int
    stratum: int
    poll: int
    precision: int
    root_delay: float  # seconds
    root_dispersion: float
    refid: bytes
    reference: int  # the four timestamps, raw 64-bit NTP values
    originate: int
    receive: int
    transmit: int

    def pack(self) -> bytes:
        return NTP_PACKET.pack(
            (self.leap << 6) | (self.version << 3) | self.mode, self.stratum, self.poll,
            self.precision, int(self.root_delay * 65536) & 0xFFFFFFFF,
            int(self.root_dispersion * 65536) & 0xFFFFFFFF, self.refid, self.reference,
            self.originate, self.receive, self.transmit)

    @property
    def refid_text(self) -> str:
        """The reference id as ntpq shows it: 4 ASCII letters at stratum 0-1, else an IPv4."""
        if self.stratum <= 1:
            return self.refid.rstrip(b"\0").decode("ascii", "replace")
        return str(ipaddress.IPv4Address(self.refid))


def parse_ntp(data: bytes) -> Ntp:
    """An NTP packet: 48 bytes (more only with extension fields or a MAC, ignored here)."""
    if len(data) < NTP_PACKET.size:
        raise Malformed(f"NTP packet of {len(data)} bytes, 48 needed")
    first, stratum, poll, precision, rdelay, rdisp, refid, ref, org, rec, xmt = \
        NTP_PACKET.unpack_from(data)
    return Ntp(first >> 6, (first >> 3) & 7, first & 7, stratum, poll, precision,
               rdelay / 65536, rdisp / 65536, refid, ref, org, rec, xmt)


def sntp_request(transmit: int, version: int = 4) -> bytes:
    """A client request: mode 3, every field zero but the transmit timestamp (RFC 4330 §5)."""
    return Ntp(0, version, MODE_CLIENT, 0, 0, 0, 0.0, 0.0, b"\0" * 4, 0, 0, 0, transmit).pack()


class KissOfDeath(Malformed):
    """A stratum-0 reply: the server says go away (RFC 4330 §8), with a 4-letter code."""


def check_sntp_reply(data: bytes, sent_transmit: int) -> Ntp:
    """The reply, after RFC 4330 §5's checks; Malformed (or KissOfDeath) says which failed."""
    if len(data) != NTP_PACKET.size and len(data) < NTP_PACKET.size + 4:
        raise Malformed(f"reply of {len(data)} bytes: an SNTP reply has 48")
    reply = parse_ntp(data)
    if reply.mode not in (MODE_SERVER, MODE_BROADCAST):
        raise Malformed(f"reply in mode {reply.mode}, not 4 (server)")
    if reply.version not in (3, 4):
        raise Malformed(f"reply of NTP version {reply.version}")
    if reply.originate != sent_transmit:
        raise Malformed("reply's originate timestamp is not the request's transmit timestamp")
    if reply.stratum == 0:
        code = reply.refid.rstrip(b"\0").decode("ascii", "replace")
        raise KissOfDeath(f"Kiss-o'-Death from the server: {code}")
    if reply.leap == LEAP_UNSYNCHRONISED:
        raise Malformed("the server's clock is not synchronised (leap indicator 3)")
    if reply.transmit == 0:
        raise Malformed("reply's transmit timestamp is zero")
    return reply


def offset_and_delay(t1: float, t2: float, t3: float, t4: float) -> tuple[float, float]:
    """RFC 4330 §5: the clock offset and the round-trip delay from the four timestamps."""
    return ((t2 - t1) + (t3 - t4)) / 2, (t4 - t1) - (t3 - t2)
