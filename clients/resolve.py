"""``testbed resolve``: forward and reverse lookups in ``host``'s manner, by the system resolver.

``testbed resolve NAME`` prints ``NAME has address A`` and ``NAME has IPv6 address A``
for every address getaddrinfo(3) gives; ``testbed resolve ADDRESS`` prints
``1.0.0.127.in-addr.arpa domain name pointer localhost.`` from getnameinfo(3). A name
that does not resolve is ``Host NAME not found: 3(NXDOMAIN)`` and exit status 1, as
with ``host``.

The difference from ``host`` (bind9-dnsutils), on purpose: ``host`` asks the DNS
servers of resolv.conf and nothing else, whereas this asks the system resolver, so
the hosts file answers first (nsswitch.conf decides): that is how every program,
and the project's own tools, turn a name into an address, and how a lab host's
names resolve inside the lab. It sends no packet to the address it looks up; for a
name the hosts file lacks, the resolver may ask the configured DNS servers, as any
other name lookup on this machine does.
"""

from __future__ import annotations

import ipaddress
import socket
import sys

from clients.cli import ArgumentParser

PROG = "testbed resolve"


def forward(name: str, family: int = socket.AF_UNSPEC) -> list[str]:
    """``host``'s lines for a name: aliases, then IPv4 addresses, then IPv6 ones."""
    infos = socket.getaddrinfo(name, None, family, socket.SOCK_STREAM, 0, socket.AI_CANONNAME)
    canonical = next((info[3] for info in infos if info[3]), name)
    lines = []
    if canonical.rstrip(".").lower() != name.rstrip(".").lower():
        lines.append(f"{name} is an alias for {canonical}.")
    seen: list[tuple[int, str]] = []
    for info in infos:
        key = (info[0], info[4][0])
        if key not in seen:
            seen.append(key)
    for kind, words in ((socket.AF_INET, "has address"), (socket.AF_INET6, "has IPv6 address")):
        lines += [f"{canonical} {words} {address}" for fam, address in seen if fam == kind]
    return lines


def reverse(address: str) -> list[str]:
    """``host``'s line for an address: its reverse name and the name it points to."""
    ip = ipaddress.ip_address(address)
    name, _ = socket.getnameinfo((str(ip), 0), socket.NI_NAMEREQD)
    return [f"{ip.reverse_pointer} domain name pointer {name.rstrip('.')}."]


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog=PROG, description="Look a name or an address up through the "
                            "system resolver (hosts file, then DNS), printing in host's manner.")
    parser.add_argument("target", metavar="NAME|ADDRESS")
    family = parser.add_mutually_exclusive_group()
    family.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET,
                        default=socket.AF_UNSPEC, help="IPv4 addresses only")
    family.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6,
                        help="IPv6 addresses only")
    args = parser.parse_args(argv)
    target = args.target.strip()
    if not target or len(target) > 253 or any(c.isspace() or c == "\0" for c in target):
        parser.error(f"not a name or an address: {args.target!r}")
    try:
        address = ipaddress.ip_address(target)
    except ValueError:
        address = None
    shown = target if address is None else address.reverse_pointer + "."
    try:
        lines = forward(target, args.family) if address is None else reverse(target)
    except socket.gaierror as exc:
        missing = (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5))
        code = "3(NXDOMAIN)" if exc.errno in missing else "2(SERVFAIL)"
        print(f"Host {shown} not found: {code}", file=sys.stderr)
        return 1
    except (UnicodeError, ValueError) as exc:
        print(f"{PROG}: {target!r}: {exc}", file=sys.stderr)
        return 2
    print(*lines, sep="\n")
    return 0
