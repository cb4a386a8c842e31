"""The words around the figures: when, where and how a comparison was measured."""

from __future__ import annotations

from typing import Any

from testbed.reporting.data import Results


def duration(seconds: float | None) -> str:
    """``2 min 16 s``, ``48 s``."""
    if seconds is None:
        return "unknown"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _num(value: object, unit: str) -> str:
    return f"{value:g} {unit}" if isinstance(value, int | float) else "?"


def facts(results: Results) -> list[tuple[str, str]]:
    """(label, text) pairs for the head of a report."""
    meta = results.metadata
    machine = meta.get("machine") or {}
    versions = meta.get("versions") or {}
    cores = machine.get("cores")
    where = (f"{machine.get('hostname', 'unknown host')} ({machine.get('cpu_model', 'unknown CPU')}"
             f"{f', {cores} cores' if cores else ''}), {machine.get('platform', 'unknown OS')}")
    software = ", ".join(f"{name} {version}" for name, version in
                         (("Python", machine.get("python")), ("locust", versions.get("locust")),
                          ("testbed", versions.get("testbed"))) if version)
    workers = meta.get("workers")
    pinned = ", pinned to cores" if meta.get("pin") else ""
    if isinstance(meta.get("lab"), dict):  # testbed compare --lab
        lab = meta["lab"]
        pinned += (f"; across lab {lab.get('lab')}: server on h1, master on h2, workers on "
                   f"{', '.join(sorted({w.get('host', '?') for w in lab.get('workers', [])}))}"
                   f", {_link_conditions(lab.get('conditions') or {})}")
    uniform_window = isinstance(meta.get("window_s"), int | float)
    if uniform_window and isinstance(meta.get("warmup_s"), int | float):
        timing = (f"each step: {_num(meta.get('warmup_s'), 's')} warm-up (not recorded), then "
                  f"a {_num(meta.get('window_s'), 's')} measured window")
    elif uniform_window:
        timing = (f"each step: the scenario's warm-up (not recorded), then a "
                  f"{_num(meta.get('window_s'), 's')} measured window")
    else:
        timing = "each step: a warm-up (not recorded), then a measured window, as per scenario"
    repeats = results.repeats
    again = (f"; {repeats} repeats, the models' order rotated from one to the next, figures "
             "the medians with their spreads" if repeats > 1 else "; one run of each")
    method = (f"{meta.get('preset', '?')} preset; {timing}; "
              f"{workers if workers is not None else '?'} locust worker process(es){pinned}; "
              f"every model on a freshly started server, one model at a time{again}")
    rows = [
        ("Date", str(meta.get("date", "unknown"))),
        ("Machine", where),
        ("Software", software or "unknown"),
        ("Command", str(meta.get("command_line", "unknown"))),
        ("Method", method),
        ("Duration", duration(meta.get("duration_s"))),
    ]
    stolen = host_steal(results)
    if stolen:
        rows.append(("Host steal", stolen))
    if meta.get("interrupted"):
        rows.append(("Interrupted", "the run was stopped early; only the runs done are shown"))
    return rows


def host_steal(results: Results) -> str | None:
    """How much of the machine's CPU time its hypervisor took over the comparison, and in
    the one run where it took the most; None where it was not counted."""
    overall = results.host_steal
    if overall is None:
        return None
    text = (f"{overall:.1%} of the machine's CPU time went to other work on its host "
            "(steal): figures in wall-clock time (req/s, latency) slow down with it")
    measured = [run for run in results.repeat_runs if run.host_steal is not None]
    if measured:
        worst = max(measured, key=lambda run: run.host_steal or 0.0)
        text += f"; the most in one run: {worst.host_steal:.1%} ({worst.model}, {worst.scenario})"
    return text


def scenario_facts(results: Results, name: str) -> list[tuple[str, str]]:
    for scenario in results.scenarios:
        if scenario.name == name:
            return [("Server", f"testbed serve --model M {scenario.server_options}".strip()),
                    ("Load", scenario.load)]
    return []


def glossary(results: Results, generator_marker: str) -> list[str]:
    """What each column means, for the foot of a report: only the lines that apply to the
    report's scenarios (a report of the scale scenario alone has no locust figures)."""
    locust = [scenario for scenario in results.scenarios if not scenario.is_scale]
    lines = []
    if locust:
        lines += [
            "req/s: replies received and verified per second of the measured window.",
            "p50/p95/p99/max ms: round-trip time of the exchanges served, as the client saw "
            "it; failed attempts are not in these figures but in the failure columns.",
            "Every attempt that started in a measured window counts in it, followed to its end "
            "(served, failed or timed out) even after the window's time is up; with persistent "
            "connections, each on a connection opened in that window."]
    if any(not s.arrivals and s.raw.get("mode", "persistent") == "persistent" for s in locust):
        lines.append("clients served: the users that got at least one reply in the window; "
                     "fairness: Jain's index of the replies per user, 1.00 when all got as "
                     "many, 1/N when one got them all.")
    if any(s.arrivals for s in locust):
        lines.append("conn/s (denial): new connections offered per second, Poisson arrivals, "
                     "each independent of how the others fared; achieved: the rate locust made.")
    if any(s.raw.get("capacity") for s in locust):
        lines.append("bench columns: testbed bench, a lean closed loop (10 persistent "
                     "connections, one request in flight on each) that keeps a fast server "
                     "busy where locust cannot; its server CPU per request decides the fast "
                     "scenario.")
    if locust:
        lines += [
            "With repeats: each figure is the median over the repeats, with its spread "
            "(min–max); models whose spreads overlap are called level (for CPU per request, "
            "the spreads of the repeats' medians), as are models within 10% of throughput, "
            "2 points of share served or 20% of CPU per request. CPU per request from 4 "
            "bench runs or more per model (over every repeat) is level unless a two-sided "
            "Mann-Whitney test of the runs tells the models apart at 5%; two models it "
            "cannot tell apart whose interval reaches more than 10% from even are measured "
            "again side by side while the budget allows.",
            "served %: the share of attempts that got the right reply; the others are counted "
            "by failure class (refused, reset, connect_timeout, io_timeout, closed_early, "
            "mismatch, unreachable, other).",
            "CPU s: CPU time of the server's whole process tree during the window, sampled "
            "from the kernel's clock ticks (so below a few hundredths of a second it is "
            "rough, and 0 means less than one tick); CPU µs/req: that time divided by the "
            "requests served.",
            "RSS MiB, threads, procs, fds: peaks over the server's process tree.",
            f"{generator_marker} generator-bound: the load generator was near its own "
            "measured ceiling, a worker's core was busy, or arrivals fell short of the offered "
            "rate, so the figure is a floor for the server, not its limit; no verdict names a "
            "winner from it."]
    if len(locust) < len(results.scenarios):
        lines.append("scale: testbed bench's closed loop on the active connections, the "
                     "others opened and left idle, each proved alive by one verified request "
                     "at the end of its step; each figure is the step's, from one run per "
                     "model, and the notes under its tables say what each one is.")
    return lines


def _link_conditions(conditions: dict[str, Any]) -> str:
    """``links: rate 10mbit`` (one value for every host) or ``links: h2 loss 20%``."""
    from testbed.lab.conditions import describe

    if not conditions:
        return "links unconditioned"
    described = {host: describe(cond) for host, cond in conditions.items()}
    if len(set(described.values())) == 1:
        return f"every link: {next(iter(described.values()))}"
    return "links: " + "; ".join(f"{host} {text}" for host, text in described.items())
