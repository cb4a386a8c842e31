"""``testbed lab up|exec|status|down``: the command line of the network lab."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from typing import Any

from servers.cli import ArgumentParser
from testbed.lab import build, conditions, iproute, members
from testbed.lab import state as lab_state
from testbed.lab.state import LabError

PROG = "testbed lab"


def _name(parser: argparse.ArgumentParser, default: str | None = "lab") -> None:
    parser.add_argument("--name", default=default,
                        help="the lab's name (default: %(default)s); several labs can be up at once")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=(
        "Hosts h1..hN in network namespaces joined by a bridge in a namespace of its own, "
        "198.18.0.0/15 and fd00::/8 addresses, names in each host's /etc/hosts. Needs root."))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND",
                                     parser_class=ArgumentParser)
    up = commands.add_parser("up", help="create a lab")
    _name(up)
    up.add_argument("--hosts", type=int, default=3, metavar="N",
                    help=f"hosts h1..hN (default: %(default)s, at most {lab_state.MAX_HOSTS})")
    for kind, example, what in (("rate", "100mbit", "the kernel's token bucket filter (tbf)"),
                                ("loss", "1%", "a random drop in nftables"),
                                ("delay", "20ms", "netem, where the kernel has it")):
        up.add_argument(f"--{kind}", type=conditions.option(kind), action="append", default=[],
                        metavar="[HOST=]VALUE",
                        help=f"e.g. {example} or h2={example}: {what}, on every link or one "
                             "host's, both directions (repeatable)".replace("%", "%%"))
    run = commands.add_parser("exec", help="run a command inside a host")
    _name(run)
    run.add_argument("host", help="h1, h2, ...")
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    status = commands.add_parser("status", help="hosts, addresses, links, conditions, processes")
    _name(status, None)
    status.add_argument("--json", action="store_true", help="the state files, as one JSON list")
    down = commands.add_parser("down", help="remove exactly what up made (idempotent)")
    _name(down)
    return parser


def _up(args: argparse.Namespace) -> int:
    lab_state.check_name(args.name)
    if not 1 <= args.hosts <= lab_state.MAX_HOSTS:
        raise LabError(f"--hosts must be 1-{lab_state.MAX_HOSTS}, not {args.hosts}", 2)
    given = {"rate": args.rate, "loss": args.loss, "delay": args.delay}

    def table_of(hosts: list[str]) -> dict[str, dict[str, Any]]:
        return conditions.per_host(hosts, given)

    state = build.up(args.name, args.hosts, table_of)
    print(f"lab {state['name']} is up: {len(state['hosts'])} hosts, {state['ipv4']}, "
          f"{state['ipv6']}")
    for entry in state["hosts"]:
        cond = conditions.describe(state["conditions"].get(entry["name"]))
        print(f"  {entry['name']}  {entry['ipv4']:<15} {entry['ipv6']:<24} {cond}")
    print(f"run a command in a host: testbed lab exec --name {args.name} h1 -- COMMAND; "
          f"remove it: testbed lab down --name {args.name}")
    return 0


def _up_state(name: str) -> dict[str, Any]:
    lab_state.check_name(name)
    state = lab_state.load(name)
    if state is None or not lab_state.is_up(state):
        raise LabError(f"lab {name} is not up (testbed lab up --name {name})")
    return state


def _exec(args: argparse.Namespace) -> int:
    argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
    if not argv:
        raise LabError("give a command after --, e.g. testbed lab exec h1 -- ip addr", 2)
    state = _up_state(args.name)
    entry = lab_state.host(state, args.host)
    try:
        child = subprocess.Popen([*iproute.exec_prefix(entry["namespace"]), *argv])
    except OSError as exc:
        raise LabError(f"cannot run ip netns exec: {exc.strerror}")

    def forward(signum: int, frame: object) -> None:
        child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    members.record(state["name"], child.pid, entry["name"], argv)
    try:
        status = child.wait()
    finally:
        members.forget(state["name"], child.pid)
    return 128 - status if status < 0 else status


def _process_lines(state: dict[str, Any]) -> list[str]:
    """The processes in the lab's hosts; ``*`` marks those started with testbed lab exec."""
    recorded = {p["pid"] for p in state.get("processes", []) if members.alive(p)}
    lines = []
    for host, procs in sorted(members.inside(state).items()):
        for pid, line in procs:
            mark = "*" if pid in recorded else " "
            lines.append(f"  {mark}pid {pid:<7} in {host}: {line[:120]}")
    return lines


def _status(args: argparse.Namespace) -> int:
    if args.name is not None:
        lab_state.check_name(args.name)
        one = lab_state.load(args.name)
        if one is None:
            raise LabError(f"no lab named {args.name} (no state file in {lab_state.state_dir()})")
        states = [one]
    else:
        states = lab_state.all_states()
    if args.json:
        print(json.dumps([{**s, "up": lab_state.is_up(s),
                           "running": {host: [{"pid": pid, "command": line} for pid, line in procs]
                                       for host, procs in members.inside(s).items()}}
                          for s in states], indent=1))
        return 0
    if not states:
        print("no lab is up")
    for state in states:
        how = "up" if lab_state.is_up(state) else "NOT up (left behind? testbed lab down " \
                                                  f"--name {state['name']})"
        print(f"lab {state['name']}: {how}; {state['ipv4']}, {state['ipv6']}; created "
              f"{state['created']}; state {lab_state.state_path(state['name'])}")
        fabric = state["fabric"]
        print(f"  fabric: namespace {fabric['namespace']}, bridge {fabric['bridge']}")
        for entry in state["hosts"]:
            cond = conditions.describe(state.get("conditions", {}).get(entry["name"]))
            print(f"  {entry['name']}  {entry['namespace']:<18} {entry['ipv4']:<15} "
                  f"{entry['ipv6']:<24} {entry['interface']} <-> {entry['port']}  {cond}")
        print(*(_process_lines(state) or ["  no process runs in the lab's hosts"]), sep="\n")
    return 0


def _down(args: argparse.Namespace) -> int:
    lab_state.check_name(args.name)
    with lab_state.locked():  # held throughout: a lab exec ending now must not rewrite the file
        state = lab_state.load(args.name)
        if state is None:
            print(f"lab {args.name} is down (nothing recorded in {lab_state.state_dir()})")
            return 0
        problems = build.down(state)
    if problems:
        raise LabError(f"lab {args.name}: could not remove everything: {'; '.join(problems)} "
                       f"(state kept in {lab_state.state_path(args.name)})")
    print(f"lab {args.name} is down: {len(state['namespaces'])} namespaces, "
          f"{len(state['links'])} links, {len(state['files'])} files removed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_usage(sys.stderr)
        return 2
    why = iproute.missing_privilege() or iproute.missing_tool()
    if why:
        print(f"{PROG} {args.command}: error: {why}", file=sys.stderr)
        return 2
    try:
        return {"up": _up, "exec": _exec, "status": _status, "down": _down}[args.command](args)
    except LabError as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return exc.status
