"""The packet decoders, on crafted bytes: right fields, tcpdump's words, one reason when broken."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients import packets

LO = b"\0" * 6


def ipv4(proto: int, payload: bytes, src: str = "127.0.0.1", dst: str = "127.0.0.2") -> bytes:
    import ipaddress

    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, 64, proto, 0,
                       ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed) + payload


def tcp(sport: int, dport: int, flags: int, seq: int = 100, ack: int = 0, data: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 512, 0, 0) + data


def frame(ethertype: int, payload: bytes) -> bytes:
    return packets.ethernet(LO, LO, ethertype, payload)


def test_checksum_of_a_packet_with_its_checksum_is_zero():
    echo = packets.echo_request(1, 2, b"hello")
    assert packets.checksum(echo) == 0
    assert packets.checksum(b"\x45\x00\x00\x1c") == (~(0x4500 + 0x001C)) & 0xFFFF


@pytest.mark.parametrize("flags, seq_ack, data, words", [
    (0x02, (100, 0), b"", "Flags [S], seq 100, win 512, length 0"),
    (0x12, (300, 101), b"", "Flags [S.], seq 300, ack 101, win 512, length 0"),
    (0x10, (101, 301), b"", "Flags [.], ack 301, win 512, length 0"),
    (0x18, (101, 301), b"hello", "Flags [P.], seq 101:106, ack 301, win 512, length 5"),
    (0x11, (106, 301), b"", "Flags [F.], seq 106, ack 301, win 512, length 0"),
    (0x04, (0, 0), b"", "Flags [R], seq 0, win 512, length 0"),
])
def test_tcp_lines_are_tcpdumps(flags, seq_ack, data, words):
    line = packets.describe(frame(packets.ETH_P_IP, ipv4(6, tcp(5000, 80, flags, *seq_ack, data))))
    assert line == f"IP 127.0.0.1.5000 > 127.0.0.2.80: {words}"


def test_udp_icmp_arp_ipv6_lines():
    udp = struct.pack("!HHHH", 53, 4000, 13, 0) + b"hello"
    assert packets.describe(frame(packets.ETH_P_IP, ipv4(17, udp))) == \
        "IP 127.0.0.1.53 > 127.0.0.2.4000: UDP, length 5"
    echo = packets.echo_request(7, 1, b"x" * 56)
    assert packets.describe(frame(packets.ETH_P_IP, ipv4(1, echo))) == \
        "IP 127.0.0.1 > 127.0.0.2: ICMP echo request, id 7, seq 1, length 64"
    unreach = struct.pack("!BBHI", 3, 3, 0, 0) + ipv4(17, udp, "127.0.0.2", "127.0.0.1")
    assert packets.describe(frame(packets.ETH_P_IP, ipv4(1, unreach))) == \
        f"IP 127.0.0.1 > 127.0.0.2: ICMP 127.0.0.1 udp port 4000 unreachable, length {len(unreach)}"
    arp = packets.arp_request(b"\x02\0\0\0\0\1", "198.18.0.1", "198.18.0.2")
    assert packets.describe(arp) == "ARP, Request who-has 198.18.0.2 tell 198.18.0.1, length 28"
    assert packets.describe(arp, link=True).startswith(
        "02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype ARP (0x0806), length 42: ARP, Request")
    six = struct.pack("!IHBB16s16s", 6 << 28, 8, 17, 64, b"\0" * 15 + b"\1", b"\0" * 15 + b"\1")
    assert packets.describe(frame(packets.ETH_P_IPV6, six + struct.pack("!HHHH", 1, 2, 8, 0))) == \
        "IP6 ::1.1 > ::1.2: UDP, length 0"


@pytest.mark.parametrize("data, reason", [
    (b"\0" * 10, "truncated Ethernet header"),
    (frame(packets.ETH_P_IP, b"\x45\0"), "truncated IPv4 header"),
    (frame(packets.ETH_P_ARP, b"\0" * 10), "truncated ARP packet"),
    (frame(packets.ETH_P_IP, ipv4(6, b"\0" * 12)), "[truncated TCP header"),
])
def test_broken_frames_say_why_in_the_line(data, reason):
    assert reason in packets.describe(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([packets.ETH_P_IP, packets.ETH_P_IPV6,
                                                 packets.ETH_P_ARP, 0x1234]))
def test_any_bytes_give_a_line_never_an_exception(payload, ethertype):
    assert isinstance(packets.describe(frame(ethertype, payload)), str)
    for decode in (packets.parse_ip, packets.parse_tcp, packets.parse_udp, packets.parse_arp,
                   packets.parse_icmp, packets.parse_ntp):
        try:
            decode(payload)
        except packets.Malformed:
            pass


def test_pcap_format():
    header = packets.pcap_header()
    assert struct.unpack("<IHHiIII", header) == (0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    record = packets.pcap_record(1.25, b"abc")
    assert struct.unpack("<IIII", record[:16]) == (1, 250000, 3, 3) and record[16:] == b"abc"


def test_ntp_timestamps_and_offset():
    assert packets.from_ntp(packets.to_ntp(1_700_000_000.5)) == pytest.approx(1_700_000_000.5)
    # client sends at 10, server receives at 15.1 and answers at 15.2, client gets it at 10.3:
    offset, delay = packets.offset_and_delay(10.0, 15.1, 15.2, 10.3)
    assert offset == pytest.approx(5.0) and delay == pytest.approx(0.2)
    request = packets.parse_ntp(packets.sntp_request(123))
    assert (request.mode, request.version, request.transmit) == (3, 4, 123)
