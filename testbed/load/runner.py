"""Running one load test: the server, the locust master and workers, stopped whatever happens."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from clients.safety import UnsafeTarget, ensure_loopback
from testbed.load.plan import Plan, check_spec, probe_target
from testbed.load.spec import LoadError, LoadSpec
from testbed.load.summary import summarize_run
from testbed.processes import ManagedProcess, StartError, cpu_affinity, free_port, start_server
from testbed.sampling import Sampler

#: Seconds allowed for locust's start (imports, workers connecting) and for its stop.
START_SLACK, STOP_SLACK = 45.0, 30.0
#: Longest pause between two looks at the processes while locust runs (the master's exit
#: ends the pause at once).
POLL = 0.2


def _loadtests_dir() -> Path:
    """Where the loadtests package is: locust loads its files, its processes import it."""
    found = importlib.util.find_spec("loadtests")
    if found is None or not found.submodule_search_locations:
        raise LoadError("the loadtests package is not installed", status=1)
    return Path(next(iter(found.submodule_search_locations)))


def _locustfiles() -> tuple[str, str]:
    """The master's locustfiles (users, shape, runner adjustments) and the workers'."""
    folder = _loadtests_dir()
    users, shapes, runners = (str(folder / name)
                              for name in ("locustfile.py", "shapes.py", "runners.py"))
    return f"{users},{shapes},{runners}", f"{users},{runners}"


def _new_run_id(plan: Plan) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    what = f"{plan.model}-{plan.service}" if plan.model else "target"
    return f"{stamp}-{what}-{secrets.token_hex(2)}"


def _seconds(value: float) -> str:
    return f"{value:g}"


def locust_options(plan: Plan, run_dir: Path, host_url: str, stop_file: Path) -> list[str]:
    """The locustfile's own options, the same for the master and every worker."""
    spec = plan.spec
    options = [
        "--host", host_url,
        "--payload-size", str(spec.payload_size), "--mode", spec.mode, "--expect", plan.expect,
        "--think-time", _seconds(spec.think_time),
        "--start-jitter", _seconds(spec.start_jitter),
        "--connect-timeout", _seconds(spec.connect_timeout),
        "--io-timeout", _seconds(spec.io_timeout),
        "--steps", ",".join(str(n) for n in spec.steps), "--step-time", _seconds(spec.step_time),
        "--warmup", _seconds(spec.warmup),
        "--first-warmup", _seconds(spec.first_step_warmup),
        "--step-spawn-rate", _seconds(spec.spawn_rate or 0.0),
        "--step-stats-file", str(run_dir / "steps.json"), "--stop-file", str(stop_file),
    ]
    if spec.allow_remote:
        options.append("--allow-remote")
    return options


class LoadRun:
    """The processes of one load test, stopped whatever happens."""

    def __init__(self, plan: Plan, run_dir: Path, progress: Callable[[str], None] | None) -> None:
        self.plan, self.spec, self.run_dir = plan, plan.spec, run_dir
        self.schedule = plan.spec.schedule
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
        self.lab: Any = None  # the lab's placement (testbed.lab.placement), with --lab

    def say(self, text: str) -> None:
        if self.progress is not None and text != self._said:
            self._said = text
            self.progress(text)

    def start(self) -> str:
        """Start the server (unless there is a target) and locust; returns the URL loaded."""
        plan, spec = self.plan, self.spec
        self.lab = _lab_placement(spec)
        lab = self.lab
        server_cpus = locust_cpus = None
        if isinstance(plan.placement, dict):
            server_cpus, locust_cpus = plan.placement["server"], plan.placement["locust"]
        if plan.target_host is None:
            self.say("starting the server")
            with cpu_affinity(server_cpus):
                try:
                    self.server = start_server(
                        [*plan.server_options, *(["--host", lab.server.ipv4] if lab else [])],
                        stderr_path=self.run_dir / "server.log",
                        prefix=lab.server.prefix if lab else ())
                except StartError as exc:
                    raise LoadError(f"the server did not start: {str(exc).splitlines()[0]}",
                                    status=1) from None
            self.sampler.watch("server", self.server.pid)
            url = self.server.endpoint.url  # type: ignore[attr-defined]
            if plan.expect == "http":
                url = "http://" + url.partition("://")[2]
            try:  # a lab's address is checked inside the lab, by locust's own guard
                if lab is None:
                    ensure_loopback(self.server.host, allow_remote=spec.allow_remote)
            except UnsafeTarget as exc:
                raise LoadError(f"the server listens on {url}: {exc}") from None
            self.say(f"server pid {self.server.pid} listening on {url}")
        else:
            if spec.target_pid is None:
                probe_target(plan)
            else:
                self.sampler.watch("server", spec.target_pid)
            host = f"[{plan.target_host}]" if ":" in plan.target_host else plan.target_host
            scheme = "http" if plan.expect == "http" else "udp" if plan.udp else "tcp"
            url = f"{scheme}://{host}:{plan.target_port}"
        master_files, worker_files = _locustfiles()
        port = free_port()
        master_host = lab.master.ipv4 if lab else "127.0.0.1"
        common = locust_options(plan, self.run_dir, url, self.stop_file)
        master = [sys.executable, "-m", "locust", "-f", master_files, "--master",
                  "--master-bind-host", master_host, "--master-bind-port", str(port),
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
        worker = [sys.executable, "-m", "locust", "-f", worker_files, "--worker",
                  "--master-host", master_host, "--master-port", str(port), *common]
        self.say("starting locust: 1 master, "
                 f"{spec.workers} worker{'s' if spec.workers != 1 else ''}")
        with cpu_affinity(locust_cpus):
            self.master = self._spawn([*(lab.master.prefix if lab else []), *master],
                                      "locust-master")
            for index in range(spec.workers):
                process = self._spawn([*(lab.workers[index].prefix if lab else []), *worker],
                                      f"locust-worker-{index + 1}")
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
        parts = [str(_loadtests_dir().parent)]
        if os.environ.get("PYTHONPATH"):
            parts.append(os.environ["PYTHONPATH"])
        return os.pathsep.join(parts)

    def wait(self) -> None:
        """Wait for locust to finish the schedule; stop it early if the server or a worker dies."""
        deadline = time.monotonic() + self.schedule.duration + START_SLACK + STOP_SLACK
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
            _wait_exit(self.master, POLL)
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
        schedule = self.schedule
        elapsed = min(time.time() - started, schedule.duration - 1e-9)
        phase = schedule.phase_at(elapsed)
        assert phase is not None
        into = elapsed - schedule.step_start(phase.index)
        warmup = schedule.warmup_of(phase.index)
        where = (f"window {into - warmup:.0f}/{schedule.window:g} s" if phase.measured
                 else f"warm-up {into:.0f}/{warmup:g} s")
        self.say(f"step {phase.index + 1}/{len(schedule.steps)}: {phase.users} users, {where}")

    def finish_early(self, timeout: float = 10.0) -> None:
        """Ask locust for an orderly end (the workers report what they measured), and
        wait up to ``timeout`` s for the master to leave by itself."""
        if self.master is None or not self.master.running:
            return
        self.say("stopping: collecting what the workers measured")
        self.stop_file.touch()
        _wait_exit(self.master, timeout)

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


def _lab_placement(spec: LoadSpec) -> Any:
    """Where each process goes in ``spec.lab`` (None without a lab); LoadError if it can't."""
    if spec.lab is None:
        return None
    from testbed.lab.placement import placement
    from testbed.lab.state import LabError

    if spec.target:
        raise LoadError("give either --target or --lab (the lab runs its own server on h1)")
    try:
        return placement(spec.lab, spec.workers)
    except LabError as exc:
        raise LoadError(f"--lab: {exc}", status=exc.status) from None


def _wait_exit(process: ManagedProcess, timeout: float) -> None:
    """Return when ``process`` exits, or after ``timeout`` s."""
    try:
        process.popen.wait(timeout)
    except subprocess.TimeoutExpired:
        pass


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
    plan = check_spec(spec)
    run_id = spec.run_id or _new_run_id(plan)
    run_dir = Path(spec.out_dir).resolve() / run_id  # locust runs inside it: absolute
    try:
        run_dir.mkdir(parents=True, exist_ok=False)
    except OSError as exc:
        raise LoadError(f"cannot create {run_dir}: {exc.strerror or exc}", status=1) from None
    started = datetime.now().astimezone()
    run = LoadRun(plan, run_dir, progress)
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
    summary = summarize_run(plan, run, run_id, started)
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
