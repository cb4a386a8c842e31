"""The ``testbed`` command: one subcommand per job, each handed to the module that owns it."""

from __future__ import annotations

import importlib
import sys

#: subcommand -> ("module:function taking argv and returning an exit status", summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("servers.cli:main", "serve a service in a concurrency model"),
    "contender": ("servers.apps.launch:main", "serve the http app in uvicorn or gunicorn, "
                  "started like testbed serve"),
    "models": ("testbed.cli:list_models", "list the models, services and contenders"),
    "nc": ("clients.nc:main", "netcat: connect, listen, scan (OpenBSD netcat options)"),
    "probe": ("clients.probe:main", "ping a server with requests, print round-trip times"),
    "storm": ("clients.storm:main", "many clients at once (attackDDoS), failures counted by class"),
    "ping": ("clients.ping:main", "ICMP echo to loopback or the lab, in iputils' manner"),
    "scan": ("clients.scan:main", "port scans (SYN, connect, UDP) with nmap's states and reasons"),
    "sniff": ("clients.sniff:main", "capture packets, tcpdump-style lines or a pcap file"),
    "arp": ("clients.arp:main", "ARP who-has on a lab link: the MAC address and round trip"),
    "sntp": ("clients.sntp:main", "ask an SNTP server the time: offset and delay, ntpdig-style"),
    "resolve": ("clients.resolve:main", "forward and reverse name lookups, in host's manner"),
    "load": ("testbed.load:main", "one locust load test against one model"),
    "bench": ("testbed.bench:main", "a lean TCP client keeps one server busy: its CPU per request"),
    "wrk": ("testbed.wrk:main", "wrk (C, HTTP) against a model or contender: req/s, latency, "
            "server CPU per request"),
    "compare": ("testbed.compare:main", "run every model through the same scenarios, report"),
    "report": ("testbed.reporting:main", "rebuild a comparison report from its results.json"),
    "resilience": ("testbed.resilience:main", "attack every model on loopback, print figures"),
    "lab": ("testbed.lab:main", "hosts in network namespaces on a bridge: up, exec, status, down"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: testbed COMMAND [options]   (testbed COMMAND --help for each)", "",
             "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def list_models(argv: list[str]) -> int:
    """Print the registry: every model and service with one line of description."""
    from servers import registry
    from servers.apps.launch import CONTENDERS

    if argv:
        print(f"testbed models: error: unexpected arguments: {' '.join(argv)}", file=sys.stderr)
        return 2
    print("models:")
    for name in registry.model_names():
        model = registry.get_model(name)
        transports = "tcp, udp" if model.udp else "tcp"
        print(f"  {name:<12} {model.description} [{transports}]")
    print("services:")
    for name, service in registry.SERVICES.items():
        print(f"  {name:<12} {service.description}")
    print("contenders (testbed contender NAME, http only):")
    for name, contender in CONTENDERS.items():
        missing = contender.missing()
        note = f" [not installed: {missing}]" if missing else ""
        print(f"  {name:<16} {contender.description}{note}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from testbed import __version__

        print(f"testbed {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"testbed: error: unknown command {name!r} (choose from {', '.join(COMMANDS)})",
              file=sys.stderr)
        return 2
    module, _, function = COMMANDS[name][0].partition(":")
    entry = getattr(importlib.import_module(module), function)
    if name == "serve":
        return entry(rest, prog="testbed serve")
    try:
        return entry(rest)
    except KeyboardInterrupt:
        print(f"testbed {name}: interrupted", file=sys.stderr)
        return 130
