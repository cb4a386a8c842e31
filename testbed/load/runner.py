"""``testbed load``: one locust load test against one server, with the results kept.

The server runs as its own process (or an already running one is named with
``--target``); locust runs as a master and ``--workers`` worker processes (the
workers carry the load; the master only steers the schedule and collects); a
sampler thread reads the server's process tree with psutil. Everything is in
its own process group and is stopped at the end, also on Ctrl-C or SIGTERM.

A run is a schedule of steps (one step for a flat run), each an unrecorded
warm-up followed by a measured window on connections opened after the
warm-up. ``results/<run-id>/`` receives locust's CSV and HTML, its logs, the
per-window statistics of every worker (``steps.json``), the server samples
(``samples.json``) and ``summary.json`` (see :func:`run_load`).

:func:`run_load` is the API the comparison calls; :func:`main` is the command.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

from clients.harness import (
    FAILURE_CLASSES,
    ExchangeError,
    exchange_once,
    open_connection,
    parse_endpoint,
)
from clients.safety import UnsafeTarget, ensure_loopback
from testbed.args import ArgumentParser, duration, non_negative, positive, user_counts
from testbed.processes import ManagedProcess, StartError, cpu_affinity, free_port, start_server
from testbed.sampling import Sampler, covered, window_figures

#: A step whose rps is at least this share of the calibrated ceiling is generator-bound.
CEILING_SHARE = 0.8
#: A locust worker using at least this share of one CPU in a window is saturated.
SATURATED_CPU = 0.9
#: Seconds allowed for locust's start (imports, workers connecting) and for its stop.
START_SLACK, STOP_SLACK = 45.0, 30.0
#: The calibration's fixed load: the fastest model, small persistent exchanges, many users.
CALIBRATION_USERS = 50
CALIBRATION_SERVER = ["--model", "select", "--service", "echo", "--quiet"]
DEFAULT_STEPS = [1, 10, 50, 100, 200]


class LoadError(Exception):
    """A load test that cannot run: a bad spec (status 2) or an unreachable target (status 1)."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def default_workers() -> int:
    """The CPUs this process may use, minus one for the server; at least one."""
    return max(len(os.sched_getaffinity(0)) - 1, 1)


@dataclass
class LoadSpec:
    """Everything one load test needs; ``server_options`` are ``testbed serve``'s options."""

    server_options: list[str] = field(default_factory=list)
    target: str | None = None
    allow_remote: bool = False
    steps: list[int] = field(default_factory=lambda: [10])
    step_time: float = 30.0  # measured seconds per step, after its warm-up
    warmup: float = 2.0
    spawn_rate: float | None = None  # users started per second; None: each step's users at once
    mode: str = "persistent"
    payload_size: int = 64
    udp: bool = False
    expect: str | None = None  # the reply to check for; None: the server's service (echo for a target)
    think_time: float = 0.0
    connect_timeout: float = 5.0
    io_timeout: float = 5.0
    workers: int = field(default_factory=default_workers)
    pin: bool = False
    out_dir: Path = Path("results")
    run_id: str | None = None
    web: bool = False  # locust's web UI on 127.0.0.1:web_port while the schedule runs
    web_port: int = 8089
    calibration_file: Path | None = None  # None: $TESTBED_CALIBRATION or the user's cache dir
    sample_interval: float = 0.25
    locust_html: bool = True  # locust's own HTML report (about 1 s and 1 MB a run)


# -- checking a spec -----------------------------------------------------------------------


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


def parse_target(target: str, udp: bool) -> tuple[str, str, int | None]:
    """``tcp://HOST:PORT`` (or ``HOST:PORT``, ``udp://...``) -> scheme, host, port (or None)."""
    try:
        return parse_endpoint(target, "udp" if udp else "tcp", port_required=False)
    except ValueError as exc:
        raise LoadError(f"--target: {exc}") from None


def check(spec: LoadSpec) -> Plan:
    """Refuse a spec that can't run, with one clear line (LoadError)."""
    if spec.mode not in ("persistent", "connect"):
        raise LoadError(f"mode must be persistent or connect, not {spec.mode!r}")
    if spec.expect not in (None, "echo", "upper"):
        raise LoadError(f"expect must be echo or upper, not {spec.expect!r}")
    if not spec.steps or any(int(n) != n or n < 1 for n in spec.steps):
        raise LoadError(f"steps must be user counts of 1 or more, not {spec.steps!r}")
    if not spec.step_time > 0:
        raise LoadError("the measured window (run time) must be longer than 0 s")
    if spec.warmup < 0 or spec.think_time < 0:
        raise LoadError("warm-up and think time can't be negative")
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
        scheme, host, port = parse_target(spec.target, spec.udp)
        try:
            ensure_loopback(host, allow_remote=spec.allow_remote)
        except UnsafeTarget as exc:
            raise LoadError(str(exc)) from None
        if port is None:
            raise LoadError(f"--target needs a port: {scheme}://{host}:PORT")
        _check_payload(spec, scheme == "udp")
        return Plan(spec, scheme == "udp", None, None, [], host, port, placement,
                    spec.expect or "echo")
    from servers.cli import build_parser

    options = list(spec.server_options)
    if spec.udp and "--udp" not in options:
        options.append("--udp")
    try:
        parsed = _quiet_parse(build_parser(), options)
    except ValueError as exc:
        raise LoadError(f"server options: {exc}") from None
    from servers import registry

    if parsed.udp and not registry.get_model(parsed.model).udp:
        raise LoadError(f"the {parsed.model} model serves TCP only")
    _check_payload(spec, bool(parsed.udp))
    return Plan(spec, bool(parsed.udp), parsed.model, parsed.service, options, None, None,
                placement, spec.expect or parsed.service)


def _check_payload(spec: LoadSpec, udp: bool) -> None:
    largest = 65507 if udp else 1 << 30  # a UDP request is one datagram
    if not 1 <= spec.payload_size <= largest:
        raise LoadError(f"payload size must be 1-{largest} bytes, not {spec.payload_size}")


def _quiet_parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse without exiting: an error becomes ValueError with argparse's message."""
    def error(message: str) -> NoReturn:
        raise ValueError(message)

    parser.error = error  # type: ignore[method-assign]
    try:
        return parser.parse_args(argv)
    except SystemExit:
        raise ValueError(f"bad options: {' '.join(argv)}") from None


def probe_target(plan: Plan) -> None:
    """One exchange (or connection) with a given target before locust starts; LoadError if none."""
    spec = plan.spec
    assert plan.target_host is not None and plan.target_port is not None
    url = spec.target
    try:
        if plan.udp:
            exchange_once(plan.target_host, plan.target_port, b"ping\n", udp=True,
                          expect=plan.expect, io_timeout=min(spec.io_timeout, 2.0))
        else:
            open_connection(plan.target_host, plan.target_port,
                            timeout=min(spec.connect_timeout, 5.0)).close()
    except ExchangeError as exc:
        raise LoadError(f"cannot reach {url}: {exc.kind} ({exc.detail})", status=1) from None


# -- calibration ---------------------------------------------------------------------------


def calibration_path(spec: LoadSpec | None = None) -> Path:
    """Where the generator's ceiling is kept: the spec's file, $TESTBED_CALIBRATION, or
    ``$XDG_CACHE_HOME/testbed/calibration.json`` (``~/.cache/testbed/calibration.json``)."""
    if spec is not None and spec.calibration_file is not None:
        return Path(spec.calibration_file)
    if os.environ.get("TESTBED_CALIBRATION"):
        return Path(os.environ["TESTBED_CALIBRATION"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "testbed" / "calibration.json"


def read_ceiling(spec: LoadSpec) -> float | None:
    """The calibrated rps of this machine's locust setup with ``spec.workers`` workers, if any."""
    try:
        data = json.loads(calibration_path(spec).read_text())
        return float(data["by_workers"][str(spec.workers)]["rps"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store_ceiling(spec: LoadSpec, summary: dict[str, Any]) -> Path:
    path = calibration_path(spec)
    try:
        data = json.loads(path.read_text())
        assert isinstance(data.get("by_workers"), dict)
    except (OSError, ValueError, AssertionError, AttributeError):
        data = {"by_workers": {}}
    data["note"] = ("requests/s the locust workers reached against the select model "
                    "(echo, 64 B persistent); testbed load marks steps within "
                    f"{round((1 - CEILING_SHARE) * 100)}% of it generator-bound")
    data["by_workers"][str(spec.workers)] = {
        "rps": summary["rps"], "users": spec.steps[-1], "measured": summary["started"],
        "run_id": summary["run_id"], "cpus": os.cpu_count(), "host": platform.node(),
        "versions": summary["versions"], "placement": summary["placement"],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def calibration_spec(spec: LoadSpec) -> LoadSpec:
    """The calibration run: the fastest model with no delay, 64 B persistent, many users."""
    return LoadSpec(server_options=list(CALIBRATION_SERVER), steps=[CALIBRATION_USERS],
                    step_time=spec.step_time, warmup=spec.warmup, mode="persistent",
                    payload_size=64, expect="echo", workers=spec.workers, pin=spec.pin,
                    out_dir=spec.out_dir, calibration_file=spec.calibration_file)


# -- running -------------------------------------------------------------------------------


def _locustfiles() -> tuple[Path, Path]:
    found = importlib.util.find_spec("loadtests")
    if found is None or not found.submodule_search_locations:
        raise LoadError("the loadtests package is not installed", status=1)
    folder = Path(next(iter(found.submodule_search_locations)))
    return folder / "locustfile.py", folder / "shapes.py"


def _new_run_id(plan: Plan) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    what = f"{plan.model}-{plan.service}" if plan.model else "target"
    return f"{stamp}-{what}-{secrets.token_hex(2)}"


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _seconds(value: float) -> str:
    return f"{value:g}"


def locust_options(plan: Plan, run_dir: Path, host_url: str, stop_file: Path) -> list[str]:
    """The locustfile's own options, the same for the master and every worker."""
    spec = plan.spec
    options = [
        "--host", host_url,
        "--payload-size", str(spec.payload_size), "--mode", spec.mode, "--expect", plan.expect,
        "--think-time", _seconds(spec.think_time),
        "--connect-timeout", _seconds(spec.connect_timeout),
        "--io-timeout", _seconds(spec.io_timeout),
        "--steps", ",".join(str(n) for n in spec.steps), "--step-time", _seconds(spec.step_time),
        "--warmup", _seconds(spec.warmup),
        "--step-spawn-rate", _seconds(spec.spawn_rate or 0.0),
        "--step-stats-file", str(run_dir / "steps.json"), "--stop-file", str(stop_file),
    ]
    if spec.allow_remote:
        options.append("--allow-remote")
    return options


class Run:
    """The processes of one load test, stopped whatever happens."""

    def __init__(self, plan: Plan, run_dir: Path, progress: Callable[[str], None] | None) -> None:
        self.plan, self.spec, self.run_dir = plan, plan.spec, run_dir
        self.progress = progress
        self.server: ManagedProcess | None = None
        self.master: ManagedProcess | None = None
        self.workers: list[ManagedProcess] = []
        self.sampler = Sampler(plan.spec.sample_interval)
        self.error: str | None = None
        self.stop_file = run_dir / "stop-requested"
        self.server_status: int | None = None
        self._files: list[Any] = []
        self._said = ""
        self._stopped = False

    def say(self, text: str) -> None:
        if self.progress is not None and text != self._said:
            self._said = text
            self.progress(text)

    def start(self) -> str:
        """Start the server (unless there is a target) and locust; returns the URL loaded."""
        plan, spec = self.plan, self.spec
        server_cpus = locust_cpus = None
        if isinstance(plan.placement, dict):
            server_cpus, locust_cpus = plan.placement["server"], plan.placement["locust"]
        if plan.target_host is None:
            self.say("starting the server")
            with cpu_affinity(server_cpus):
                try:
                    self.server = start_server(plan.server_options,
                                               stderr_path=self.run_dir / "server.log")
                except StartError as exc:
                    raise LoadError(f"the server did not start: {str(exc).splitlines()[0]}",
                                    status=1) from None
            self.sampler.watch("server", self.server.pid)
            url = self.server.endpoint.url  # type: ignore[attr-defined]
            try:
                ensure_loopback(self.server.host, allow_remote=spec.allow_remote)
            except UnsafeTarget as exc:
                raise LoadError(f"the server listens on {url}: {exc}") from None
            self.say(f"server pid {self.server.pid} listening on {url}")
        else:
            probe_target(plan)
            host = f"[{plan.target_host}]" if ":" in plan.target_host else plan.target_host
            url = f"{'udp' if plan.udp else 'tcp'}://{host}:{plan.target_port}"
        locustfile, shapes = _locustfiles()
        port = free_port()
        common = locust_options(plan, self.run_dir, url, self.stop_file)
        master = [sys.executable, "-m", "locust", "-f", f"{locustfile},{shapes}", "--master",
                  "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                  "--expect-workers", str(spec.workers), "--expect-workers-max-wait",
                  str(int(START_SLACK)), "--csv", str(self.run_dir / "locust"),
                  *(["--html", str(self.run_dir / "locust.html")] if spec.locust_html else []),
                  "--json-file", str(self.run_dir / "locust"), "--exit-code-on-error", "0",
                  "--stop-timeout", "0", *common]
        if spec.web:
            master += ["--web-host", "127.0.0.1", "--web-port", str(spec.web_port),
                       "--autostart", "--autoquit", "0"]
        else:
            master += ["--headless", "--only-summary"]
        worker = [sys.executable, "-m", "locust", "-f", str(locustfile), "--worker",
                  "--master-host", "127.0.0.1", "--master-port", str(port), *common]
        self.say("starting locust: 1 master, "
                 f"{spec.workers} worker{'s' if spec.workers != 1 else ''}")
        with cpu_affinity(locust_cpus):
            self.master = self._spawn(master, "locust-master")
            for index in range(spec.workers):
                process = self._spawn(worker, f"locust-worker-{index + 1}")
                self.workers.append(process)
                self.sampler.watch(f"worker-{index + 1}", process.pid)
        self.sampler.start()
        return url

    def _spawn(self, argv: list[str], name: str) -> ManagedProcess:
        out = open(self.run_dir / f"{name}.out", "wb")  # noqa: SIM115 - closed in stop()
        self._files.append(out)
        return ManagedProcess(argv, stdout=out, stderr_path=self.run_dir / f"{name}.log",
                              cwd=self.run_dir, env=dict(os.environ,
                                                         PYTHONPATH=self._pythonpath()))

    @staticmethod
    def _pythonpath() -> str:
        found = importlib.util.find_spec("loadtests")
        parts = []
        if found is not None and found.submodule_search_locations:
            parts.append(str(Path(next(iter(found.submodule_search_locations))).parent))
        if os.environ.get("PYTHONPATH"):
            parts.append(os.environ["PYTHONPATH"])
        return os.pathsep.join(parts)

    def wait(self) -> None:
        """Wait for locust to finish the schedule; stop it early if the server or a worker dies."""
        spec = self.spec
        duration = len(spec.steps) * (spec.warmup + spec.step_time)
        deadline = time.monotonic() + duration + START_SLACK + STOP_SLACK
        assert self.master is not None
        stopping_since: float | None = None
        while self.master.running:
            now = time.monotonic()
            if self.error is None:
                if self.server is not None and not self.server.running:
                    self.server_status = self.server.popen.returncode
                    self.error = f"server exited with status {self.server_status} during the run"
                else:
                    for index, worker in enumerate(self.workers):
                        # A worker leaves normally once the master told it to quit, after
                        # its final report; leaving before that report is a failure.
                        if not worker.running and self._reported() < len(self.workers):
                            self.error = (f"locust worker {index + 1} exited with status "
                                          f"{worker.popen.returncode} during the run"
                                          f"{_last_line(worker)}")
                            break
                if self.error is None and now > deadline:
                    self.error = "locust did not finish in time"
            if self.error is not None:
                if stopping_since is None:
                    stopping_since = now
                    self.say(f"stopping: {self.error}")
                    self.stop_file.touch()
                elif now - stopping_since > STOP_SLACK / 2:
                    break  # the master did not stop by itself: stop() will
            else:
                self._report_progress()
            time.sleep(0.2)
        status = self.master.popen.poll()
        if status not in (None, 0) and self.error is None:
            self.error = f"locust master exited with status {status}{_last_line(self.master)}"

    def _reported(self) -> int:
        """How many workers have sent their final report."""
        try:
            workers = json.loads((self.run_dir / "steps.json").read_text())["workers"]
        except (OSError, ValueError, KeyError):
            return 0
        return sum(1 for data in workers.values() if data.get("final"))

    def _report_progress(self) -> None:
        try:
            started = json.loads((self.run_dir / "steps.json").read_text())["started"]
        except (OSError, ValueError, KeyError):
            self.say("waiting for the locust workers")
            return
        spec = self.spec
        elapsed = time.time() - started
        length = spec.warmup + spec.step_time
        index = min(int(elapsed // length), len(spec.steps) - 1)
        into = elapsed - index * length
        where = (f"warm-up {into:.0f}/{spec.warmup:g} s" if into < spec.warmup else
                 f"window {min(into - spec.warmup, spec.step_time):.0f}/{spec.step_time:g} s")
        self.say(f"step {index + 1}/{len(spec.steps)}: {spec.steps[index]} users, {where}")

    def finish_early(self, timeout: float = 10.0) -> None:
        """Ask locust for an orderly end (the workers report what they measured), and
        wait up to ``timeout`` s for the master to leave by itself."""
        if self.master is None or not self.master.running:
            return
        self.say("stopping: collecting what the workers measured")
        self.stop_file.touch()
        deadline = time.monotonic() + timeout
        while self.master.running and time.monotonic() < deadline:
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop locust, then the server; record how the server ended (once)."""
        if self._stopped:
            return
        self._stopped = True
        for process in (self.master, *self.workers):
            if process is not None:
                process.stop(grace=10.0)
        self.sampler.stop()
        if self.server is not None:
            was_running = self.server.running
            status = self.server.stop(grace=5.0)
            if not was_running and self.server_status is None:
                self.server_status = status
                if self.error is None:
                    self.error = f"server exited with status {status} during the run"
        for handle in self._files:
            handle.close()


def _last_line(process: ManagedProcess) -> str:
    lines = [line for line in process.stderr_text().splitlines() if line.strip()]
    return f": {lines[-1].strip()}" if lines else ""


def run_load(spec: LoadSpec, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run one load test; return its summary (also written to ``<out>/<run-id>/summary.json``).

    Raises LoadError for a spec that can't run (bad options, a refused or unreachable
    target, a server that does not start). A run that goes wrong once started (the server
    dies, a worker dies) is not an exception: locust is stopped, what was measured is kept,
    and the summary says ``complete: false`` with the ``error``. KeyboardInterrupt stops
    everything, writes the partial summary, and is raised again.
    """
    plan = check(spec)
    run_id = spec.run_id or _new_run_id(plan)
    run_dir = Path(spec.out_dir).resolve() / run_id  # locust runs inside it: absolute
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise LoadError(f"cannot create {run_dir}: {exc.strerror or exc}", status=1) from None
    started = datetime.now().astimezone()
    run = Run(plan, run_dir, progress)
    interrupted = False
    try:
        run.start()
        run.wait()
    except KeyboardInterrupt:
        interrupted = True
        run.error = run.error or "interrupted"
        try:
            run.finish_early()
        except KeyboardInterrupt:
            pass  # interrupted again: stop at once
    except LoadError:
        run.stop()
        _remove_if_empty(run_dir)
        raise
    finally:
        run.stop()  # also on any other exception: no process is left behind
    summary = summarize(plan, run, run_id, started)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if interrupted:
        raise KeyboardInterrupt
    return summary


def _remove_if_empty(run_dir: Path) -> None:
    """A run refused before anything happened leaves no directory of logs behind."""
    keep = [p for p in run_dir.iterdir() if p.stat().st_size > 0] if run_dir.exists() else []
    if not keep and run_dir.exists():
        for p in run_dir.iterdir():
            p.unlink()
        run_dir.rmdir()


# -- summarising ---------------------------------------------------------------------------


def percentile(hist: dict[int, int], fraction: float, buckets_per_e: float) -> float | None:
    """The latency (ms) below which ``fraction`` of the histogram's requests fall."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for key in sorted(hist):
        seen += hist[key]
        if seen >= rank:
            return (math.exp((key + 0.5) / buckets_per_e) - 1.0) / 1000.0
    return None  # not reached


def latency_figures(hist: dict[int, int], max_ms: float | None,
                    buckets_per_e: float) -> dict[str, float | None]:
    figures: dict[str, float | None] = {}
    for name, fraction in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        value = percentile(hist, fraction, buckets_per_e)
        if value is not None and max_ms is not None:
            value = min(value, max_ms)  # a bucket's middle may lie above the largest latency
        figures[name] = None if value is None else round(value, 4)
    figures["max_ms"] = None if max_ms is None or not hist else round(max_ms, 4)
    return figures


def _failures(counts: dict[str, int]) -> dict[str, int]:
    merged = {kind: 0 for kind in FAILURE_CLASSES}
    for kind, count in counts.items():
        merged[kind if kind in merged else "other"] += count
    return merged


def _merge(windows: list[dict[str, Any]]) -> dict[str, Any]:
    hist: dict[int, int] = {}
    failures: dict[str, int] = {}
    for window in windows:
        for key, count in window["hist"]:
            hist[int(key)] = hist.get(int(key), 0) + int(count)
        for kind, count in window["failures"].items():
            failures[kind] = failures.get(kind, 0) + count
    return {
        "requests": sum(w["requests"] for w in windows),
        "served": sum(w["served"] for w in windows),
        "bytes": sum(w["bytes"] for w in windows),
        "failures": failures, "hist": hist,
        "max_ms": max((w["max_ms"] for w in windows if w["served"]), default=None),
        "window_s": sum(w["window_s"] for w in windows) / len(windows),
        "t_start": sum(w["t_start"] for w in windows) / len(windows),
        "t_end": sum(w["t_end"] for w in windows) / len(windows),
        "complete": all(w["complete"] for w in windows),
        # users present when the window opened (fewer than the step's: the ramp was too slow)
        "users_running": sum(w["users_start"] for w in windows),
    }


def _server_figures(run: Run, start: float, end: float, served: int) -> dict[str, Any] | None:
    samples = run.sampler.series("server")
    if run.server is None or not samples:
        return None
    figures = window_figures(samples, start, end)
    if figures is None:
        return None
    measured = covered(samples, start, end)
    figures = {
        "cpu_s": round(figures["cpu_s"], 4) if measured else None,
        "cpu_us_per_request": (round(figures["cpu_s"] * 1e6 / served, 2)
                               if measured and served else None),
        "peak_rss_mib": round(figures["peak_rss_mib"], 2),
        "peak_threads": figures["peak_threads"], "peak_processes": figures["peak_processes"],
        "peak_fds": figures["peak_fds"],
    }
    return figures


def _generator_cpu(run: Run, start: float, end: float) -> float | None:
    """The busiest locust worker's share of one CPU during ``[start, end]``."""
    shares = []
    for index in range(len(run.workers)):
        samples = run.sampler.series(f"worker-{index + 1}")
        if samples and covered(samples, start, end) and end > start:
            figures = window_figures(samples, start, end)
            assert figures is not None
            shares.append(figures["cpu_s"] / (end - start))
    return round(max(shares), 3) if shares else None


def _bound(rps: float, ceiling: float | None, cpu: float | None) -> bool:
    return bool((ceiling and rps >= CEILING_SHARE * ceiling) or (cpu is not None and
                                                                 cpu >= SATURATED_CPU))


def _record(plan: Plan, run: Run, users: int, merged: dict[str, Any], buckets_per_e: float,
            ceiling: float | None, by_worker: dict[str, int]) -> dict[str, Any]:
    window_s = merged["window_s"]
    served, requests = merged["served"], merged["requests"]
    rps = served / window_s if window_s > 0 else 0.0
    cpu = _generator_cpu(run, merged["t_start"], merged["t_end"])
    return {
        "users": users, "window_s": round(window_s, 3), "requests": requests, "served": served,
        "served_share": round(served / requests, 4) if requests else None,
        "failures": _failures(merged["failures"]), "rps": round(rps, 1),
        **latency_figures(merged["hist"], merged["max_ms"], buckets_per_e),
        "server": _server_figures(run, merged["t_start"], merged["t_end"], served),
        "generator_bound": _bound(rps, ceiling, cpu), "generator_cpu": cpu,
        "complete": merged["complete"], "users_running": merged["users_running"],
        "bytes": merged["bytes"], "workers": by_worker,
        "t_start": round(merged["t_start"], 3), "t_end": round(merged["t_end"], 3),
    }


def summarize(plan: Plan, run: Run, run_id: str, started: datetime) -> dict[str, Any]:
    """Turn what the workers reported and what the sampler saw into the summary."""
    spec = plan.spec
    try:
        stats = json.loads((run.run_dir / "steps.json").read_text())
    except (OSError, ValueError):
        stats = {"workers": {}, "histogram": {"buckets_per_e": 100.0}}
    buckets_per_e = float(stats.get("histogram", {}).get("buckets_per_e", 100.0))
    workers = stats.get("workers", {})
    ceiling = read_ceiling(spec)
    steps: list[dict[str, Any]] = []
    all_windows: list[dict[str, Any]] = []
    for index, users in enumerate(spec.steps):
        windows = {wid: [w for w in data["windows"] if w["step"] == index]
                   for wid, data in workers.items()}
        found = [w for ws in windows.values() for w in ws]
        if not found:
            continue
        merged = _merge(found)
        by_worker = {wid: sum(w["requests"] for w in ws) for wid, ws in windows.items()}
        record = _record(plan, run, users, merged, buckets_per_e, ceiling, by_worker)
        if len(found) < spec.workers:
            record["complete"] = False
        steps.append(record)
        all_windows.extend(found)
    complete = (run.error is None and len(steps) == len(spec.steps)
                and all(step["complete"] for step in steps))
    error = run.error
    if error is None and not complete:
        error = "the workers did not report every measured window"
    summary: dict[str, Any] = {
        "run_id": run_id, "started": started.isoformat(timespec="seconds"),
        "model": plan.model, "service": plan.service,
        "target": spec.target, "transport": "udp" if plan.udp else "tcp",
        "options": _options(plan), "versions": {
            "python": platform.python_version(), "locust": _version("locust"),
            "testbed": _version("testbed"), "psutil": _version("psutil")},
        "placement": plan.placement, "warmup_s": spec.warmup, "window_s": spec.step_time,
        "complete": complete, "error": error,
        "server_exit_status": run.server_status,
        "generator_ceiling_rps": ceiling,
        "steps": steps,
    }
    summary.update(_totals(plan, run, all_windows, steps, buckets_per_e, ceiling))
    summary["generator"] = {
        "workers": spec.workers,
        "requests_all_phases": sum((data.get("final") or {}).get("requests", 0)
                                   for data in workers.values()),
        "locust_requests": _locust_total(run.run_dir),
        "per_worker": {wid: (data.get("final") or {}).get("requests")
                       for wid, data in workers.items()},
    }
    summary["files"] = sorted(p.name for p in run.run_dir.iterdir()) + ["summary.json"]
    (run.run_dir / "samples.json").write_text(json.dumps(run.sampler.dump()) + "\n")
    return summary


def _totals(plan: Plan, run: Run, windows: list[dict[str, Any]], steps: list[dict[str, Any]],
            buckets_per_e: float, ceiling: float | None) -> dict[str, Any]:
    """The whole run's figures: every measured window of every step together."""
    if not windows:
        return {"requests": 0, "served": 0, "served_share": None,
                "failures": _failures({}), "rps": 0.0, "p50_ms": None, "p95_ms": None,
                "p99_ms": None, "max_ms": None, "server": None, "generator_bound": False}
    merged = _merge(windows)
    window_s = sum(step["window_s"] for step in steps)
    served = merged["served"]
    rps = served / window_s if window_s > 0 else 0.0
    server = None
    measured = [step["server"] for step in steps if step["server"] is not None]
    if measured:
        cpu = [s["cpu_s"] for s in measured if s["cpu_s"] is not None]
        server = {
            "cpu_s": round(sum(cpu), 4) if cpu else None,
            "cpu_us_per_request": (round(sum(cpu) * 1e6 / served, 2)
                                   if cpu and served and len(cpu) == len(measured) else None),
            **{key: max(s[key] for s in measured)
               for key in ("peak_rss_mib", "peak_threads", "peak_processes", "peak_fds")},
        }
    return {
        "requests": merged["requests"], "served": served,
        "served_share": round(served / merged["requests"], 4) if merged["requests"] else None,
        "failures": _failures(merged["failures"]), "rps": round(rps, 1),
        **latency_figures(merged["hist"], merged["max_ms"], buckets_per_e),
        "server": server,
        "generator_bound": any(step["generator_bound"] for step in steps),
    }


def _locust_total(run_dir: Path) -> int | None:
    """Requests in locust's own final statistics (all phases), as a cross-check."""
    try:
        entries = json.loads((run_dir / "locust.json").read_text())
        return sum(int(entry["num_requests"]) for entry in entries)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _options(plan: Plan) -> dict[str, Any]:
    spec = asdict(plan.spec)
    spec["out_dir"] = str(spec["out_dir"])
    if spec["calibration_file"] is not None:
        spec["calibration_file"] = str(spec["calibration_file"])
    spec["server_options"] = plan.server_options
    spec["expect"] = plan.expect
    return spec


# -- the command ---------------------------------------------------------------------------


def build_parser() -> ArgumentParser:
    from servers.cli import add_server_options

    parser = ArgumentParser(
        prog="testbed load", conflict_handler="resolve",
        description="One locust load test against one server: a master and --workers worker "
        "processes, headless, with the server's processes sampled; results in "
        "OUT/<run-id>/ (summary.json, locust CSV and HTML, logs).")
    add_server_options(parser)
    # --workers means locust workers here; the server's own pool size is --server-workers.
    parser.add_argument("--server-workers", type=int, default=0, metavar="N",
                        help="worker threads or processes of the pool-based server models")
    parser.add_argument("--server-log", action="store_true",
                        help="let the server log every connection (default: --quiet)")
    parser.add_argument("--target", metavar="URL",
                        help="load a server that is already running: tcp://HOST:PORT or "
                        "udp://HOST:PORT (loopback only unless --allow-remote)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a --target that is not a loopback address")
    parser.add_argument("--users", "-u", type=positive(int), default=10, metavar="N",
                        help="users of a flat run (default %(default)s)")
    parser.add_argument("--step", action="store_true",
                        help=f"stepped load over --steps (default {','.join(map(str, DEFAULT_STEPS))})")
    parser.add_argument("--steps", type=user_counts, metavar="N,N,...",
                        help="users of each step (implies --step)")
    parser.add_argument("--spawn-rate", "-r", type=positive(float), metavar="R",
                        help="users started per second (default: each step's users at once)")
    parser.add_argument("--run-time", "-t", type=duration, default=30.0, metavar="T",
                        help="measured time of each step, after its warm-up (default 30s)")
    parser.add_argument("--warmup", type=duration, default=2.0, metavar="T",
                        help="unrecorded warm-up before each step's window, on connections "
                        "closed before the window opens (default 2s)")
    parser.add_argument("--mode", choices=("persistent", "connect"), default="persistent",
                        help="persistent: one connection per user; connect: one per request")
    parser.add_argument("--payload-size", type=positive(int), default=64, metavar="B",
                        help="bytes per request, newline included (default 64)")
    parser.add_argument("--expect", choices=("echo", "upper"),
                        help="the answer to check replies against (default: the --service)")
    parser.add_argument("--think-time", type=non_negative, default=0.0, metavar="S",
                        help="seconds each user waits between requests (default 0)")
    parser.add_argument("--connect-timeout", type=positive(float), default=5.0, metavar="S")
    parser.add_argument("--io-timeout", type=positive(float), default=5.0, metavar="S")
    parser.add_argument("--workers", "-w", type=positive(int), default=default_workers(),
                        metavar="W", help="locust worker processes carrying the load "
                        "(default: CPUs - 1 = %(default)s)")
    parser.add_argument("--pin", action="store_true",
                        help="server on the first CPU, locust on the others")
    parser.add_argument("--calibrate", action="store_true",
                        help="measure this machine's locust ceiling against the select model "
                        f"(echo, 64 B, persistent, {CALIBRATION_USERS} users) and store it in "
                        f"{calibration_path()}")
    parser.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                        help="where results/<run-id>/ goes (default results/)")
    parser.add_argument("--web", action="store_true",
                        help="show locust's web UI on 127.0.0.1 while the schedule runs")
    parser.add_argument("--web-port", type=int, default=8089, metavar="PORT")
    return parser


def server_options_from(args: argparse.Namespace) -> list[str]:
    """The ``testbed serve`` options the parsed arguments describe (defaults left out)."""
    from servers.cli import add_server_options

    probe = argparse.ArgumentParser(add_help=False)
    add_server_options(probe)
    options: list[str] = []
    for action in probe._actions:
        name = max(action.option_strings, key=len)
        value = getattr(args, "server_workers" if action.dest == "workers" else action.dest,
                        action.default)
        if value == action.default and action.dest not in ("model", "service"):
            continue
        if action.nargs == 0:
            options.append(name)
        else:
            options += [name, f"{value:g}" if isinstance(value, float) else str(value)]
    if not args.server_log:
        options.append("--quiet")
    return options


def spec_from(args: argparse.Namespace, argv: list[str]) -> LoadSpec:
    steps = args.steps or (list(DEFAULT_STEPS) if args.step else [args.users])
    explicit = {arg.split("=")[0] for arg in argv if arg.startswith("-")}
    server_given = bool(explicit & {"--model", "-m", "--service", "-s", "--delay", "--work-ms",
                                    "--backlog", "--max-connections", "--idle-timeout",
                                    "--server-workers", "--queue", "--loop"})
    if args.target and server_given:
        raise LoadError("give either --target or server options (--model, --service, ...), "
                        "not both")
    return LoadSpec(
        server_options=[] if args.target else server_options_from(args),
        target=args.target, allow_remote=args.allow_remote, steps=steps,
        step_time=args.run_time, warmup=args.warmup, spawn_rate=args.spawn_rate,
        mode=args.mode, payload_size=args.payload_size, udp=args.udp,
        expect=args.expect, think_time=args.think_time,
        connect_timeout=args.connect_timeout, io_timeout=args.io_timeout,
        workers=args.workers, pin=args.pin, out_dir=args.out, web=args.web,
        web_port=args.web_port)


def _fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def table(summary: dict[str, Any]) -> str:
    """The short table printed at the end of a run."""
    head = ("users", "rps", "p50 ms", "p95 ms", "p99 ms", "max ms", "failures", "cpu µs/req",
            "rss MiB", "gen-bound")
    rows = [head]
    for step in summary["steps"]:
        server = step["server"] or {}
        rows.append((str(step["users"]), _fmt(step["rps"]), _fmt(step["p50_ms"], ".3f"),
                     _fmt(step["p95_ms"], ".3f"), _fmt(step["p99_ms"], ".3f"),
                     _fmt(step["max_ms"], ".2f"),
                     _fmt(sum(step["failures"].values()), ",d"),
                     _fmt(server.get("cpu_us_per_request"), ",.1f"),
                     _fmt(server.get("peak_rss_mib"), ".1f"),
                     "yes" if step["generator_bound"] else "no"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]
    failures = {k: v for k, v in summary["failures"].items() if v}
    what = summary["model"] and f"{summary['model']} · {summary['service']}" or summary["target"]
    status = "complete" if summary["complete"] else f"INCOMPLETE: {summary['error']}"
    lines.insert(0, f"{what} · {summary['transport']} · {summary['options']['mode']} "
                 f"{summary['options']['payload_size']} B · {summary['options']['workers']} "
                 f"worker(s) · {status}")
    if failures:
        lines.append("failures: " + ", ".join(f"{k} {v:,}" for k, v in failures.items()))
    return "\n".join(lines)


def _progress_printer() -> Callable[[str], None]:
    """One updating line on a terminal; elsewhere a line per phase (not per second)."""
    tty = sys.stderr.isatty()
    started = time.monotonic()
    last = [""]

    def show(text: str) -> None:
        line = f"[{time.monotonic() - started:5.1f}s] {text}"
        if tty:
            sys.stderr.write("\r\033[K" + line)
        else:
            phase = re.sub(r"(warm-up|window) [\d.]+/", r"\1 ", text)
            if phase == last[0]:
                return
            last[0] = phase
            sys.stderr.write(line + "\n")
        sys.stderr.flush()
    return show


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    show = _progress_printer()
    try:
        spec = spec_from(args, argv)
        if args.calibrate:
            spec = calibration_spec(spec)
        if spec.web:
            print(f"locust web UI: http://127.0.0.1:{spec.web_port} (while the schedule runs)",
                  file=sys.stderr)
        summary = run_load(spec, progress=show)
    except LoadError as exc:
        _end_line()
        print(f"testbed load: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        _end_line()
        print("testbed load: interrupted; partial results kept", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    _end_line()
    run_dir = Path(spec.out_dir) / summary["run_id"]
    print(table(summary))
    print(f"results: {run_dir}/summary.json")
    if args.calibrate:
        if summary["complete"]:
            path = store_ceiling(spec, summary)
            print(f"generator ceiling with {spec.workers} worker(s): {summary['rps']:,.0f} "
                  f"requests/s, stored in {path}")
        else:
            print("calibration incomplete: nothing stored", file=sys.stderr)
    if not summary["complete"]:
        print(f"testbed load: error: {summary['error']} (partial results kept)", file=sys.stderr)
        return 1
    return 0


def _end_line() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")
        sys.stderr.flush()
