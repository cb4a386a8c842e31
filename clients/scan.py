"""``testbed scan``: TCP SYN, TCP connect and UDP port scans in nmap's manner.

States and reasons are nmap's (``nmap --reason``):

========== ============= ================================================
scan       state         reason
========== ============= ================================================
--syn      open          syn-ack: the port answered SYN with SYN-ACK
           closed        reset: it answered with a RST
           filtered      no-response, or the ICMP error (admin-prohibited...)
--connect  open          syn-ack: connect() succeeded
           closed        conn-refused: connect() was refused (a RST)
           filtered      no-response (timed out), host-unreach (an ICMP error)
--udp      open          udp-response: a datagram came back
           closed        port-unreach: ICMP port unreachable
           filtered      admin-prohibited or another ICMP unreachable
           open|filtered no-response
========== ============= ================================================

The SYN and UDP scans build and match their probes with Scapy (the ``packets``
extra) and need root; ``--connect`` needs no privilege and is the default for
other users, as in nmap. Each probe that gets no answer is sent again
``--retries`` times (1 unless told), each try waiting ``--timeout`` seconds (1
unless told): a scan's time is bounded by about (retries + 1) x timeout per batch
of ``--concurrency`` ports, and it says how long it took. Targets are loopback and
the project's lab only.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import selectors
import socket
import sys
import time
from dataclasses import asdict, dataclass

from clients.cli import ArgumentParser, count, positive_float
from clients.targets import ToolError, is_root, pick_address

PROG = "testbed scan"
MAX_RETRIES = 5
SHOWN = 25  # like nmap, a state held by more ports than this is summed up in one line
UNREACH_REASONS = {0: "net-unreach", 1: "host-unreach", 2: "proto-unreach", 3: "port-unreach",
                   9: "net-prohibited", 10: "host-prohibited", 13: "admin-prohibited"}
UNREACH6_REASONS = {0: "net-unreach", 1: "admin-prohibited", 3: "host-unreach",
                    4: "port-unreach"}


@dataclass(frozen=True)
class PortResult:
    port: int
    protocol: str
    state: str
    reason: str
    service: str


def parse_ports(text: str) -> list[int]:
    """nmap's port list: ``22``, ``1-1024``, ``80,443,8000-8100``, ``-`` (every port)."""
    ports: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if part == "-":
            part = "1-65535"
        if not part:
            raise ValueError("an empty port in the list")
        low, dash, high = part.partition("-")
        try:
            first = int(low) if low else 1
            last = (int(high) if high else 65535) if dash else first
        except ValueError:
            raise ValueError(f"not a port or range: {part!r}") from None
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"ports are 1-65535, low-high: {part!r}")
        ports.update(range(first, last + 1))
    if not ports:
        raise ValueError("no ports given")
    return sorted(ports)


def service_name(port: int, protocol: str) -> str:
    try:
        return socket.getservbyport(port, protocol)
    except OSError:
        return "unknown"


# -- connect scan -------------------------------------------------------------------

def _connect_outcome(error: int) -> tuple[str, str] | None:
    """(state, reason) for a finished connect(), None if it should be tried again."""
    if error == 0:
        return "open", "syn-ack"
    if error == errno.ECONNREFUSED:
        return "closed", "conn-refused"
    if error in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES, errno.EPERM):
        return "filtered", "host-unreach"
    if error == errno.ETIMEDOUT:
        return None
    return "filtered", errno.errorcode.get(error, str(error)).lower()


#: Connects of one port that may reach the scanning socket itself before it is given up.
SELF_CONNECT_TRIES = 4


def _connected_to_itself(sock: socket.socket) -> bool:
    """Whether the kernel gave the socket the port it connects to as its own source port,
    so that it reached itself (TCP's simultaneous open, on loopback): that says nothing
    of the port but that nothing was bound to it."""
    try:
        return sock.getsockname() == sock.getpeername()
    except OSError:
        return False


def connect_scan(family: int, address: str, ports: list[int], timeout: float, retries: int,
                 concurrency: int) -> dict[int, tuple[str, str]]:
    """Non-blocking connects, at most ``concurrency`` at once: {port: (state, reason)}.

    A connect that reached its own socket is tried again, on another source port; a port
    that does so :data:`SELF_CONNECT_TRIES` times is closed (nothing was bound to it),
    with the reason ``self-connect``."""
    results: dict[int, tuple[str, str]] = {}
    selfish = dict.fromkeys(ports, 0)
    tries = dict.fromkeys(ports, 0)
    queue = list(reversed(ports))
    selector = selectors.DefaultSelector()
    pending: dict[socket.socket, tuple[int, float]] = {}
    try:
        while queue or pending:
            while queue and len(pending) < concurrency:
                port = queue.pop()
                tries[port] += 1
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                code = sock.connect_ex((address, port))
                if code in (0, errno.EINPROGRESS):
                    pending[sock] = (port, time.monotonic() + timeout)
                    selector.register(sock, selectors.EVENT_WRITE)
                else:
                    sock.close()
                    results[port] = _connect_outcome(code) or ("filtered", "no-response")
            soonest = min((due for _, due in pending.values()), default=time.monotonic())
            for key, _ in selector.select(max(0.0, soonest - time.monotonic())):
                sock = key.fileobj  # type: ignore[assignment]
                port, _ = pending.pop(sock)
                selector.unregister(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                itself = code == 0 and _connected_to_itself(sock)
                sock.close()  # SO_LINGER 0: a RST, no TIME_WAIT left behind
                if itself:
                    selfish[port] += 1
                    tries[port] -= 1  # not a try of the port's own
                    if selfish[port] < SELF_CONNECT_TRIES:
                        queue.append(port)
                    else:
                        results[port] = ("closed", "self-connect")
                    continue
                outcome = _connect_outcome(code)
                if outcome is None and tries[port] <= retries:
                    queue.append(port)
                else:
                    results[port] = outcome or ("filtered", "no-response")
            now = time.monotonic()
            for sock, (port, due) in list(pending.items()):
                if due <= now:
                    del pending[sock]
                    selector.unregister(sock)
                    sock.close()
                    if tries[port] <= retries:
                        queue.append(port)
                    else:
                        results[port] = ("filtered", "no-response")
    finally:
        for sock in pending:
            sock.close()
        selector.close()
    return results


# -- SYN and UDP scans, with Scapy ------------------------------------------------------

def _scapy():  # noqa: ANN202 - the module, imported only when a raw scan runs
    try:
        import scapy.all as scapy
    except ImportError:
        raise ToolError("the SYN and UDP scans need Scapy: pip install 'testbed[packets]'") from None
    scapy.conf.verb = 0
    return scapy


def _icmp_reason(scapy, reply) -> str | None:  # noqa: ANN001
    """The reason for an ICMP(v6) destination-unreachable reply, or None if it's not one."""
    if reply.haslayer(scapy.ICMP) and reply[scapy.ICMP].type == 3:
        code = int(reply[scapy.ICMP].code)
        return UNREACH_REASONS.get(code, f"unreach-code-{code}")
    if reply.haslayer(scapy.ICMPv6DestUnreach):
        code = int(reply[scapy.ICMPv6DestUnreach].code)
        return UNREACH6_REASONS.get(code, f"unreach-code-{code}")
    return None


def raw_scan(kind: str, family: int, address: str, ports: list[int], timeout: float,
             retries: int, batch: int) -> dict[int, tuple[str, str]]:
    """SYN or UDP probes sent and matched by Scapy's ``sr``: {port: (state, reason)}."""
    scapy = _scapy()
    ip = scapy.IPv6(dst=address) if family == socket.AF_INET6 else scapy.IP(dst=address)
    sport = 40000 + os.getpid() % 20000
    results: dict[int, tuple[str, str]] = {}
    for start in range(0, len(ports), batch):
        chunk = ports[start:start + batch]
        if kind == "syn":
            probe = ip / scapy.TCP(sport=sport, dport=chunk, flags="S",
                                   seq=int.from_bytes(os.urandom(4), "big"))
        else:
            probe = ip / scapy.UDP(sport=sport, dport=chunk)
        try:
            answered, _ = scapy.sr(probe, timeout=timeout, retry=retries, verbose=0)
        except PermissionError as exc:
            raise ToolError(f"the {kind.upper()} scan needs root (raw sockets): "
                            f"{exc.strerror}") from None
        except OSError as exc:
            raise ToolError(f"sending probes: {exc.strerror or exc}") from None
        for sent, reply in answered:
            port = int(sent.dport)
            reason = _icmp_reason(scapy, reply)
            if kind == "syn":
                if reply.haslayer(scapy.TCP):
                    flags = int(reply[scapy.TCP].flags)
                    if flags & 0x12 == 0x12:
                        results[port] = ("open", "syn-ack")
                    elif flags & 0x04:
                        results[port] = ("closed", "reset")
                elif reason:
                    results[port] = ("filtered", reason)
            elif reply.haslayer(scapy.UDP):
                results[port] = ("open", "udp-response")
            elif reason:
                results[port] = ("closed" if reason == "port-unreach" else "filtered", reason)
        for port in chunk:
            results.setdefault(port, ("filtered" if kind == "syn" else "open|filtered",
                                      "no-response"))
    return results


# -- the command --------------------------------------------------------------------

def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Scan the ports of a host on loopback or "
                            "the project's lab, in nmap's manner (states and reasons).")
    parser.add_argument("host", metavar="HOST")
    parser.add_argument("-p", dest="ports", required=True, metavar="PORTS",
                        help="ports: 22, 1-1024, 80,443,8000-8100, or - for all 65535")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--syn", "-sS", dest="kind", action="store_const", const="syn",
                      help="TCP SYN scan with Scapy (root; the default as root)")
    kind.add_argument("--connect", "-sT", dest="kind", action="store_const", const="connect",
                      help="TCP connect scan (no privilege; the default otherwise)")
    kind.add_argument("--udp", "-sU", dest="kind", action="store_const", const="udp",
                      help="UDP scan with Scapy (root)")
    parser.add_argument("--timeout", type=positive_float, default=1.0, metavar="S",
                        help="seconds each try waits for an answer (default 1)")
    parser.add_argument("--retries", type=int, default=1, metavar="N",
                        help=f"tries after the first for a silent port (default 1, at most "
                        f"{MAX_RETRIES})")
    parser.add_argument("--concurrency", type=count, default=1000, metavar="N",
                        help="connects in flight, or probes per Scapy batch (default 1000)")
    parser.add_argument("-6", dest="v6", action="store_true", help="scan the host's IPv6 address")
    parser.add_argument("--open", action="store_true", help="list only open ports")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def table(results: list[PortResult], protocol: str, show_only_open: bool) -> list[str]:
    """nmap's PORT STATE SERVICE REASON table, the commonest big state summed up."""
    counts: dict[tuple[str, str], int] = {}
    for result in results:
        counts[result.state, result.reason] = counts.get((result.state, result.reason), 0) + 1
    hidden: set[tuple[str, str]] = set()
    if show_only_open:
        hidden = {key for key in counts if key[0] != "open"}
    elif len(results) > SHOWN:
        common = max(counts, key=lambda key: counts[key])
        if counts[common] > SHOWN:
            hidden = {common}
    lines = [f"Not shown: {counts[key]} {key[0]} {protocol} ports ({key[1]})"
             for key in sorted(hidden)]
    shown = [result for result in results if (result.state, result.reason) not in hidden]
    if shown:
        width = max(9, *(len(f"{r.port}/{r.protocol}") + 1 for r in shown))
        lines.append(f"{'PORT':<{width}} {'STATE':<13} {'SERVICE':<15} REASON")
        lines += [f"{f'{r.port}/{r.protocol}':<{width}} {r.state:<13} {r.service:<15} {r.reason}"
                  for r in shown]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        ports = parse_ports(args.ports)
    except ValueError as exc:
        parser.error(f"-p: {exc}")
    if not 0 <= args.retries <= MAX_RETRIES:
        parser.error(f"--retries: 0 to {MAX_RETRIES}")
    kind = args.kind or ("syn" if is_root() else "connect")
    protocol = "udp" if kind == "udp" else "tcp"
    try:
        family, address = pick_address(args.host, socket.AF_INET6 if args.v6 else socket.AF_UNSPEC)
        if kind != "connect" and not is_root():
            raise ToolError(f"the {kind.upper()} scan needs root (raw sockets); "
                            "--connect needs no privilege")
        if kind != "connect":
            _scapy()  # imported before the clock starts: about 2 s, not the scan's
        started = time.monotonic()
        if kind == "connect":
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            concurrency = max(1, min(args.concurrency, soft - 32))
            found = connect_scan(family, address, ports, args.timeout, args.retries, concurrency)
        else:
            found = raw_scan(kind, family, address, ports, args.timeout, args.retries,
                             args.concurrency)
        elapsed = time.monotonic() - started
    except ToolError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    results = [PortResult(port, protocol, *found[port], service_name(port, protocol))
               for port in ports]
    if args.json:
        print(json.dumps({"host": args.host, "address": address, "scan": kind,
                          "timeout_s": args.timeout, "retries": args.retries,
                          "elapsed_s": round(elapsed, 3),
                          "ports": [asdict(r) for r in results
                                    if not args.open or r.state == "open"]}))
        return 0
    name = f"{args.host} ({address})" if args.host != address else address
    print(f"{PROG} report for {name}")
    print(*table(results, protocol, args.open), sep="\n")
    print(f"\n{PROG} done: {len(ports)} {protocol} ports ({kind} scan, timeout {args.timeout:g} s, "
          f"{args.retries} {'retry' if args.retries == 1 else 'retries'}) scanned in "
          f"{elapsed:.2f} seconds")
    return 0
