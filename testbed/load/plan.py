"""Checking a spec before anything starts: :func:`check_spec` turns a LoadSpec into a Plan."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from clients.harness import EXPECTED
from testbed.load.spec import LoadError, LoadSpec
from testbed.target import Target, parse_server_options


@dataclass
class Plan:
    """A checked spec: what the run will start and where it sends its load."""

    spec: LoadSpec
    udp: bool
    model: str | None
    service: str | None
    server_options: list[str]
    target_host: str | None
    target_port: int | None
    placement: Any
    expect: str


def _target(spec: LoadSpec) -> Target:
    """``--target`` checked: a scheme (tcp, udp, http), a loopback host, a port."""
    return Target.parse(spec.target or "", default_scheme="udp" if spec.udp else "tcp",
                        allow_remote=spec.allow_remote)


def check_spec(spec: LoadSpec) -> Plan:
    """Refuse a spec that can't run, with one clear line (LoadError)."""
    if spec.mode not in ("persistent", "connect", "arrivals"):
        raise LoadError(f"mode must be persistent, connect or arrivals, not {spec.mode!r}")
    if spec.mode == "arrivals" and spec.udp:
        raise LoadError("arrivals are new TCP connections; over UDP, use --mode connect")
    if spec.expect not in (None, *EXPECTED, "http"):
        raise LoadError(f"expect must be one of {', '.join([*EXPECTED, 'http'])}, "
                        f"not {spec.expect!r}")
    if not spec.steps or any(int(n) != n or n < 1 for n in spec.steps):
        raise LoadError(f"steps must be user counts of 1 or more, not {spec.steps!r}")
    if not spec.step_time > 0:
        raise LoadError("the measured window (run time) must be longer than 0 s")
    if spec.warmup < 0 or spec.first_step_warmup < 0 or spec.think_time < 0:
        raise LoadError("warm-up and think time can't be negative")
    if spec.start_jitter < 0:
        raise LoadError("the start jitter can't be negative")
    if spec.start_jitter > (shortest := spec.schedule.shortest_warmup):
        raise LoadError(f"--start-jitter {spec.start_jitter:g} s is longer than the warm-up "
                        f"({shortest:g} s): a window would open before some of its users "
                        "had sent a request")
    if spec.mode != "arrivals":  # arrivals keep their own time
        try:
            spec.schedule.check_keeps_time()
        except ValueError as exc:
            raise LoadError(str(exc)) from None
    if spec.connect_timeout <= 0 or spec.io_timeout <= 0:
        raise LoadError("timeouts must be longer than 0 s")
    if spec.spawn_rate is not None and not spec.spawn_rate > 0:
        raise LoadError("the spawn rate must be more than 0 users per second")
    if spec.workers < 1:
        raise LoadError("at least one locust worker is needed")
    placement: Any = "free"
    if spec.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise LoadError("--pin needs at least two CPUs (one for the server, one for locust)")
        placement = {"server": cpus[:1], "locust": cpus[1:]}
    if spec.target:
        if spec.server_options:
            raise LoadError("give either --target or server options, not both")
        target = _target(spec)
        _check_payload(spec, target.udp)
        return _http_checked(Plan(spec, target.udp, None, None, [], target.host, target.port,
                                  placement,
                                  "http" if target.scheme == "http" else spec.expect or "echo"))
    options = list(spec.server_options)
    if spec.udp and "--udp" not in options:
        options.append("--udp")
    parsed = parse_server_options(options)
    from servers import registry

    if parsed.udp and not registry.get_model(parsed.model).udp:
        raise LoadError(f"the {parsed.model} model serves TCP only")
    _check_payload(spec, bool(parsed.udp))
    return _http_checked(Plan(spec, bool(parsed.udp), parsed.model, parsed.service, options,
                              None, None, placement, spec.expect or parsed.service))


def _http_checked(plan: Plan) -> Plan:
    """An HTTP load is locust's FastHttpUser: keep-alive or a connection per request."""
    http_service = plan.service == "http"
    if plan.service is not None and http_service != (plan.expect == "http"):
        raise LoadError("the http service answers HTTP requests: leave --expect out"
                        if http_service else
                        f"the {plan.service} service does not answer HTTP requests")
    if plan.expect == "http" and plan.spec.mode == "arrivals":
        raise LoadError("arrivals are line requests on new TCP connections; for HTTP, use "
                        "--mode connect (a new connection per request)")
    return plan


def _check_payload(spec: LoadSpec, udp: bool) -> None:
    largest = 65507 if udp else 1 << 30  # a UDP request is one datagram
    if not 1 <= spec.payload_size <= largest:
        raise LoadError(f"payload size must be 1-{largest} bytes, not {spec.payload_size}")


def probe_target(plan: Plan) -> None:
    """One exchange (or connection) with a given target before locust starts; LoadError if none."""
    _target(plan.spec).reach(connect_timeout=plan.spec.connect_timeout,
                             io_timeout=plan.spec.io_timeout, expect=plan.expect)
