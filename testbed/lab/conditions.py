"""Link conditions: a rate (tbf), a random loss (nftables) and a delay (netem, where it exists).

A condition applies to one host's link, in both directions, as a slow or lossy
cable would: ``--loss 20%`` drops 20% of what the host sends and 20% of what it
receives, so a path h1 -> h2 across two lossy links loses 1 - 0.8² = 36%.
``--rate R`` is ``tc qdisc ... tbf`` on both ends of the host's veth pair;
``--delay D`` is netem on both ends (half of it each way, so a round trip
takes D more); ``--loss P%`` is one nftables table of the lab's own,
``bridge testbed`` in the fabric namespace, that drops at random with
``numgen random mod 10000 < P*100`` on the bridge port of the host (ARP and
IPv6 neighbour discovery pass, so a lossy link still finds its neighbours).

Options take ``VALUE`` (every host) or ``HOST=VALUE`` (one host), repeatable;
a host's own value wins over the value for all.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from testbed.lab import iproute
from testbed.lab.state import LabError

_RATE = re.compile(r"^(\d+(?:\.\d+)?)(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$")
_RATE_BITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9,
              "bps": 8, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}
_DELAY = re.compile(r"^(\d+(?:\.\d+)?)(us|ms|s)$")
_DELAY_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
KINDS = ("rate", "loss", "delay")
NFT_TABLE = ("bridge", "testbed")


def rate_bits(text: str) -> float:
    """``100mbit`` -> 1e8 bits per second (tc's units: ``mbit`` bits, ``mbps`` bytes)."""
    match = _RATE.match(text.strip().lower())
    if not match or float(match[1]) <= 0:
        raise argparse.ArgumentTypeError(f"not a rate: {text!r} (e.g. 100mbit, 512kbit, 1gbit)")
    return float(match[1]) * _RATE_BITS[match[2]]


def loss_percent(text: str) -> float:
    value = text.strip().rstrip("%")
    try:
        percent = float(value)
    except ValueError:
        percent = -1.0
    if not 0 < percent <= 100:
        raise argparse.ArgumentTypeError(f"not a loss: {text!r} (a percentage above 0, e.g. 1%)")
    return round(percent, 2)


def delay_seconds(text: str) -> float:
    match = _DELAY.match(text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"not a delay: {text!r} (e.g. 20ms, 500us, 1s)")
    return float(match[1]) * _DELAY_S[match[2]]


_CHECKERS = {"rate": rate_bits, "loss": loss_percent, "delay": delay_seconds}


def option(kind: str):
    """An argparse type for ``--rate/--loss/--delay``: ``VALUE`` or ``HOST=VALUE``."""
    def convert(text: str) -> tuple[str | None, Any]:
        target, _, value = text.rpartition("=")
        if target and not re.match(r"^h[1-9]\d*$", target):
            raise argparse.ArgumentTypeError(f"not a host: {target!r} (h1, h2, ...)")
        checked = _CHECKERS[kind](value)
        return target or None, checked if kind == "loss" else value.strip().lower()
    convert.__name__ = kind
    return convert


def per_host(hosts: list[str], given: dict[str, list[tuple[str | None, Any]]]) -> dict[str, dict]:
    """{host: {"rate": ..., "loss": ..., "delay": ...}} for the hosts with any condition."""
    table: dict[str, dict[str, Any]] = {}
    for kind, values in given.items():
        for target, _ in values:
            if target is not None and target not in hosts:
                raise LabError(f"--{kind} {target}=...: the lab has no host {target} "
                               f"(hosts: {', '.join(hosts)})", 2)
        for name in hosts:
            chosen = [v for t, v in values if t is None] + [v for t, v in values if t == name]
            if chosen:
                table.setdefault(name, dict.fromkeys(KINDS))[kind] = chosen[-1]
    return table


def check_netem(ns: str) -> None:
    """LabError (status 2) unless this kernel has netem, tried on ``ns``'s loopback."""
    done = iproute.tc(ns, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                      check=False)
    if done.returncode != 0:
        reason = (done.stderr.strip() or "tc failed").splitlines()[0]
        raise LabError("--delay needs the kernel's netem qdisc (sch_netem), which this machine "
                       f"lacks ({reason}); use --rate and --loss, or a kernel with netem", 2)
    iproute.tc(ns, "qdisc", "del", "dev", "lo", "root", check=False)


def _qdiscs(ns: str, dev: str, rate: str | None, delay: str | None) -> None:
    parent = ["root"]
    if delay:
        half = f"{delay_seconds(delay) / 2 * 1e6:.0f}us"
        iproute.tc(ns, "qdisc", "add", "dev", dev, "root", "handle", "1:", "netem",
                   "delay", half, "limit", "10000")
        parent = ["parent", "1:1"]
    if rate:
        bits = rate_bits(rate)
        # a burst of 10 ms at the rate (at least 16 KiB) lets GSO-sized packets through
        burst = max(int(bits / 8 / 100), 16384)
        iproute.tc(ns, "qdisc", "add", "dev", dev, *parent, "handle", "10:", "tbf",
                   "rate", f"{int(bits)}bit", "burst", str(burst), "latency", "100ms")


def apply(state: dict[str, Any], table: dict[str, dict[str, Any]], save) -> None:
    """Put ``table``'s conditions on the lab's links, recording them (and the nft table)."""
    fabric = state["fabric"]["namespace"]
    state["conditions"] = table
    lossy = {name: c["loss"] for name, c in table.items() if c.get("loss")}
    if lossy:
        family, name = NFT_TABLE
        state["nft_tables"].append({"namespace": fabric, "family": family, "name": name})
        save(state)
        rules = []
        for host, percent in lossy.items():
            cut = int(round(percent * 100))
            for direction in ("iifname", "oifname"):
                rules.append(f'    {direction} "{host}" numgen random mod 10000 < {cut} drop')
        iproute.nft(fabric, "\n".join([
            f"table {family} {name} {{", "  chain forward {",
            "    type filter hook forward priority 0; policy accept;",
            "    ether type arp accept",
            "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept",
            *rules, "  }", "}", ""]))
    save(state)
    for entry in state["hosts"]:
        cond = table.get(entry["name"])
        if cond and (cond.get("rate") or cond.get("delay")):
            _qdiscs(fabric, entry["port"], cond.get("rate"), cond.get("delay"))
            _qdiscs(entry["namespace"], entry["interface"], cond.get("rate"), cond.get("delay"))


def describe(cond: dict[str, Any] | None) -> str:
    """``rate 10mbit, loss 20%`` or ``-``."""
    if not cond:
        return "-"
    parts = [f"rate {cond['rate']}" if cond.get("rate") else "",
             f"loss {cond['loss']:g}%" if cond.get("loss") else "",
             f"delay {cond['delay']}" if cond.get("delay") else ""]
    return ", ".join(p for p in parts if p) or "-"
