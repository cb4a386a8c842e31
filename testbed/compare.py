"""``testbed compare``: every model through the same scenarios, one at a time, then the report.

For each scenario, for each model (all registered ones unless ``--models``),
one ``testbed.load.run_load`` call: a freshly started server and one locust
run covering all of the scenario's user steps. Never two runs at once. A run
whose server dies is kept and reported as crashed; the others still run.

Everything measured goes to ``results/compare-<timestamp>/results.json``
first; the report (report.md, report.html, results.csv, PNG plots) is then
built from that file by ``testbed.report.write_report``, the same code
``testbed report`` runs, and the tables and verdicts are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from testbed import contenders, report
from testbed.args import ArgumentParser, duration, name_list, positive, user_counts
from testbed.reporting.data import FORMAT
from testbed.scenarios import Preset, Scenario, Timing, preset, scenario_names

#: First guess of a run's fixed cost (server and locust start and stop), seconds;
#: replaced by the measured mean as soon as one run has finished.
OVERHEAD_GUESS = 1.0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="testbed compare",
        description="Run every concurrency model through the same scenarios, one model at a "
        "time, each on a fresh server, with locust as the load; write results.json, "
        "results.csv, report.md, report.html and plots to OUT/compare-<timestamp>/.",
    )
    parser.add_argument("--models", type=name_list, metavar="A,B",
                        help="models to compare (default: every registered one, and "
                        "asyncio+uvloop where uvloop is installed)")
    parser.add_argument("--scenarios", type=name_list, metavar="A,B",
                        help=f"scenarios to run (default: all of {', '.join(scenario_names())})")
    parser.add_argument("--full", action="store_true",
                        help="longer steps and more user counts (default: the quick preset)")
    parser.add_argument("--run-time", type=duration, metavar="S",
                        help="measured window of every step (default: each scenario's own, "
                        "1-1.6 s in the quick preset, 6-10 s in the full one)")
    parser.add_argument("--warmup", type=duration, metavar="S",
                        help="unrecorded warm-up before every window, the first one's too "
                        "(default: each scenario's own, 2 s on each fresh server)")
    parser.add_argument("--steps", type=user_counts, metavar="N,N",
                        help="measure these user counts in every scenario instead of its own")
    parser.add_argument("--workers", type=positive(int), default=None, metavar="W",
                        help="locust worker processes (default: CPUs minus one, at least 1)")
    parser.add_argument("--pin", action="store_true",
                        help="pin the server and the load generator to separate cores")
    parser.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                        help="where compare-<timestamp>/ is written (default %(default)s)")
    parser.add_argument("--list", action="store_true",
                        help="print the models and the preset's scenarios, run nothing")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bar; print only the tables and verdicts at the end")
    return parser


def _choose(kind: str, chosen: list[str] | None, valid: list[str]) -> list[str]:
    if chosen is None:
        return list(valid)
    unknown = [name for name in chosen if name not in valid]
    if unknown:
        raise LookupError(f"unknown {kind}{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))} (choose from {', '.join(valid)})")
    return chosen


# -- the plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    model: str
    scenario: Scenario  # with its timing filled in

    @property
    def timing(self) -> Timing:
        assert self.scenario.timing is not None
        return self.scenario.timing

    def step_seconds(self) -> float:
        return self.timing.seconds(len(self.scenario.steps))


@dataclass
class Plan:
    preset: Preset
    scenarios: list[Scenario]
    models: list[str]
    workers: int
    pin: bool
    warmup: float | None = None  # set by --warmup for every scenario, else per scenario
    window: float | None = None  # set by --run-time
    runs: list[Planned] = field(default_factory=list)

    def estimate(self, overhead: float = OVERHEAD_GUESS) -> float:
        return sum(run.step_seconds() + overhead for run in self.runs)

    def warnings(self) -> list[str]:
        """Windows too short to see a waiting client fail (an attempt ends after them)."""
        return [f"in {s.name}, the {s.timing.window:g} s window is not longer than one attempt "
                f"may last ({s.longest_attempt:g} s): clients left waiting may not show as failures"
                for s in self.scenarios if s.timing and s.timing.window <= s.longest_attempt]


def make_plan(args: argparse.Namespace) -> Plan:
    from testbed.load import default_workers as load_default_workers  # locust-side imports: late
    """The runs to do, in order; LookupError for an unknown model or scenario."""
    chosen = preset(args.full)
    models = _choose("model", args.models, contenders.known()) if args.models else contenders.names()
    for model in models:
        contenders.check(model)
    names = _choose("scenario", args.scenarios, chosen.names())
    scenarios = []
    for name in names:
        scenario = chosen.get(name)
        assert scenario.timing is not None
        if args.steps:
            scenario = scenario.with_steps(tuple(sorted(set(args.steps))))
        timing = scenario.timing
        if args.warmup is not None:  # every warm-up, the first one's too
            timing = Timing(warmup=args.warmup, window=timing.window)
        if args.run_time is not None:
            timing = Timing(timing.warmup, args.run_time, timing.first_warmup)
        scenarios.append(scenario.with_timing(timing))
    plan = Plan(chosen, scenarios, models, args.workers or load_default_workers(), args.pin,
                warmup=args.warmup, window=args.run_time)
    # Scenario by scenario, so the models of one scenario are measured close in time.
    plan.runs = [Planned(model, scenario) for scenario in scenarios for model in models]
    return plan


# -- progress ------------------------------------------------------------------------------


def clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """A progress bar on stderr: model, scenario, step and time left (lines if not a TTY)."""

    def __init__(self, plan: Plan, stream: IO[str] | None = None, enabled: bool = True) -> None:
        self.plan = plan
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.index = -1
        self.run_started = 0.0
        self.overheads: list[float] = []
        self.message = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    @property
    def overhead(self) -> float:
        return sum(self.overheads) / len(self.overheads) if self.overheads else OVERHEAD_GUESS

    def _planned(self, index: int) -> float:
        return self.plan.runs[index].step_seconds() + self.overhead

    def left(self) -> float:
        if self.index < 0:
            return self.plan.estimate(self.overhead)
        elapsed = time.monotonic() - self.run_started
        current = max(self._planned(self.index) - elapsed, 0.0)
        return current + sum(self._planned(i) for i in range(self.index + 1, len(self.plan.runs)))

    def _step(self) -> int:
        """Which step is under way: from run_load's last message if it names a user count,
        else from the time spent in this run."""
        run = self.plan.runs[self.index]
        steps = run.scenario.steps
        found = re.search(r"\bstep (\d+)/(\d+)", self.message)
        if found and int(found[2]) == len(steps):
            return min(max(int(found[1]) - 1, 0), len(steps) - 1)
        into = time.monotonic() - self.run_started - self.overhead * 0.6
        phase = run.timing.schedule(len(steps)).phase_at(into)
        return len(steps) - 1 if phase is None else phase.index

    def line(self) -> str:
        run = self.plan.runs[self.index]
        step = self._step()
        total = len(self.plan.runs)
        done = self.index + min((time.monotonic() - self.run_started) / self._planned(self.index),
                                0.99)
        width = 20
        filled = int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        steps = run.scenario.steps
        where = (f"step {step + 1}/{len(steps)} ({steps[step]} user{'s' if steps[step] > 1 else ''})"
                 if "step" in self.message or not self.message else self.message)
        return (f"[{bar}] {self.index + 1}/{total} {run.model} · {run.scenario.name} · {where} · "
                f"~{clock(self.left())} left")

    def _draw(self) -> None:
        if not self.tty:
            return
        with self._lock:
            if self.index < 0:
                return
            columns = shutil.get_terminal_size((100, 20)).columns
            text = self.line()[:columns - 1]
            self.stream.write("\r" + text + " " * (columns - 1 - len(text)))
            self.stream.flush()

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw()

    def say(self, text: str) -> None:
        """A permanent line (above the bar on a terminal)."""
        if not self.enabled:
            return
        with self._lock:
            if self.tty:
                columns = shutil.get_terminal_size((100, 20)).columns
                self.stream.write("\r" + " " * (columns - 1) + "\r")
            self.stream.write(text + "\n")
            self.stream.flush()
        self._draw()

    def start(self) -> None:
        self.say(f"comparing {len(self.plan.models)} model(s) x {len(self.plan.scenarios)} "
                 f"scenario(s) = {len(self.plan.runs)} runs, about "
                 f"{clock(self.plan.estimate())} ({self.plan.preset.name} preset)")
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def begin(self, index: int) -> None:
        with self._lock:
            self.index, self.run_started, self.message = index, time.monotonic(), ""
        if not self.tty:
            run = self.plan.runs[index]
            self.say(f"[{index + 1}/{len(self.plan.runs)}] {run.model} · {run.scenario.name} · "
                     f"users {','.join(map(str, run.scenario.steps))} · "
                     f"~{clock(self.left())} left")
        self._draw()

    def note(self, message: str) -> None:
        """run_load's progress callback."""
        self.message = message

    def end(self, index: int, seconds: float, crashed: str | None) -> None:
        run = self.plan.runs[index]
        self.overheads.append(max(seconds - run.step_seconds(), 0.0))
        if crashed:
            self.say(f"{run.model} · {run.scenario.name}: CRASHED: {crashed}")
        elif not self.tty:
            self.say(f"[{index + 1}/{len(self.plan.runs)}] {run.model} · {run.scenario.name}: "
                     f"done in {seconds:.1f} s")

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.tty:
            columns = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + " " * (columns - 1) + "\r")
            self.stream.flush()


# -- running -------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version()}


def make_out_dir(base: Path, now: datetime) -> Path:
    """A new ``compare-<timestamp>`` directory under ``base`` (OSError if it can't be made)."""
    stamp = now.strftime("%Y%m%d-%H%M%S")
    base.mkdir(parents=True, exist_ok=True)
    for suffix in ("", *(f"-{n}" for n in range(2, 100))):
        path = base / f"compare-{stamp}{suffix}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"too many comparisons started at {stamp} in {base}")


def load_spec(plan: Plan, run: Planned, out_dir: Path) -> Any:
    """The LoadSpec of one (model, scenario): its own server, every step in one locust run.

    ``testbed load`` keeps its files in ``out_dir/<scenario>-<model>/``.
    """
    from testbed.load import LoadSpec

    scenario = run.scenario
    return LoadSpec(
        server_options=scenario.server_options(*contenders.server_options(run.model)),
        target=None, allow_remote=False,
        steps=list(scenario.steps), step_time=run.timing.window, warmup=run.timing.warmup,
        first_warmup=run.timing.first,
        spawn_rate=None, mode=scenario.mode, payload_size=scenario.payload_size, udp=False,
        expect=scenario.service, think_time=scenario.think_time,
        connect_timeout=scenario.connect_timeout, io_timeout=scenario.io_timeout,
        workers=plan.workers, pin=plan.pin, out_dir=out_dir,
        run_id=f"{scenario.name}-{run.model}",
        locust_html=False)  # the comparison writes its own report (locust's: 1 MB a run)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def run_one(plan: Plan, run: Planned, out_dir: Path, note: Callable[[str], None]) -> dict:
    """One record for results.json; a crash or an error becomes a 'crashed' record."""
    from testbed.load import run_load

    started = time.monotonic()
    record: dict[str, Any] = {"model": run.model, "scenario": run.scenario.name,
                              "started": datetime.now().astimezone().isoformat(timespec="seconds"),
                              "out_dir": str(out_dir / f"{run.scenario.name}-{run.model}")}
    try:
        summary = run_load(load_spec(plan, run, out_dir), progress=note)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of one run is that cell's result
        record.update(status="crashed", error=_one_line(exc), summary=None)
    else:
        crashed = not summary.get("complete", True) or bool(summary.get("error"))
        record.update(status="crashed" if crashed else "ok",
                      error=summary.get("error") or ("incomplete run" if crashed else None),
                      summary=summary)
    record["duration_s"] = round(time.monotonic() - started, 3)
    return record


def results_document(plan: Plan, runs: list[dict], argv: list[str], started: datetime,
                     seconds: float, interrupted: bool) -> dict[str, Any]:
    from testbed.load.summary import package_version

    return {
        "format": FORMAT,
        "metadata": {
            "date": started.strftime("%Y-%m-%d %H:%M"),
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
            "duration_s": round(seconds, 1),
            "preset": plan.preset.name, "warmup_s": plan.warmup, "window_s": plan.window,
            "workers": plan.workers, "pin": plan.pin,
            "command_line": shlex.join(["testbed", "compare", *argv]),
            "interrupted": interrupted,
            "machine": machine(),
            "versions": {name: package_version(name)
                         for name in ("testbed", "locust", "psutil", "matplotlib")},
            "models": plan.models,
            "scenarios": [scenario.name for scenario in plan.scenarios],
        },
        "scenarios": [scenario.as_dict() for scenario in plan.scenarios],
        "runs": runs,
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write through a temporary file, so a results.json is never half written."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    partial.replace(path)


def list_plan(plan: Plan) -> None:
    print(f"models: {', '.join(plan.models)}")
    print(f"scenarios ({plan.preset.name} preset):")
    for scenario in plan.scenarios:
        assert scenario.timing is not None
        print(f"  {scenario.name:<8} {scenario.title}; users "
              f"{', '.join(map(str, scenario.steps))}; {scenario.timing.describe()}")
    print(f"about {clock(plan.estimate())} for {len(plan.runs)} runs")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        plan = make_plan(args)
    except LookupError as exc:
        print(f"testbed compare: error: {exc.args[0]}", file=sys.stderr)
        return 2
    if plan.window is not None and plan.window <= 0:
        print("testbed compare: error: --run-time must be more than 0", file=sys.stderr)
        return 2
    if args.list:
        list_plan(plan)
        return 0
    started = datetime.now().astimezone()
    try:
        out_dir = make_out_dir(args.out, started)
    except OSError as exc:
        print(f"testbed compare: error: cannot write results in {args.out}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1

    for warning in plan.warnings():
        print(f"testbed compare: warning: {warning}", file=sys.stderr)
    progress = Progress(plan, enabled=not args.quiet)
    records: list[dict] = []
    interrupted = False
    clock_start = time.monotonic()
    progress.start()
    try:
        for index, run in enumerate(plan.runs):
            progress.begin(index)
            # Absolute: testbed load runs locust from inside the run's directory.
            record = run_one(plan, run, (out_dir / "runs").resolve(), progress.note)
            records.append(record)
            progress.end(index, record["duration_s"],
                         record["error"] if record["status"] != "ok" else None)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    seconds = time.monotonic() - clock_start

    results_path = out_dir / "results.json"
    try:
        write_json(results_path, results_document(plan, records, argv, started, seconds,
                                                  interrupted))
        written = report.write_report(results_path)
    except OSError as exc:
        print(f"testbed compare: error: cannot write results in {out_dir}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    report.print_text(report.terminal_summary(written.results))
    crashed = [f"{r['model']}/{r['scenario']}" for r in records if r["status"] != "ok"]
    if crashed:
        print(f"crashed (reported as such): {', '.join(crashed)}")
    print(f"took {clock(seconds)}; results: {results_path}\n"
          f"report: {written.markdown}\n        {written.html}\n        {written.csv}\n"
          f"plots:  {out_dir}/*.png ({len(written.plots)} files)")
    if interrupted:
        print("testbed compare: interrupted; the runs done so far are in the report",
              file=sys.stderr)
        return 130
    return 0
