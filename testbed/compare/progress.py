"""The comparison's progress bar on stderr: model, scenario, step and time left."""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from typing import IO

from testbed.compare.plan import OVERHEAD_GUESS, ComparisonPlan, PlannedRun


def clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """A progress bar on stderr: model, scenario, step and time left (lines if not a TTY)."""

    def __init__(self, plan: ComparisonPlan, stream: IO[str] | None = None, enabled: bool = True) -> None:
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
        return self.plan.runs[index].planned_seconds(self.overhead)

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
        unit = run.scenario.unit if steps[step] > 1 or run.scenario.unit != "users" else "user"
        where = (f"step {step + 1}/{len(steps)} ({steps[step]} {unit})"
                 if "step" in self.message or not self.message else self.message)
        if run.sample:
            where = f"testbed {run.scenario.capacity_tool}"
        return (f"[{bar}] {self.index + 1}/{total} {self._name(run)} · {where} · "
                f"~{clock(self.left())} left")

    def _name(self, run: PlannedRun) -> str:
        """``model · scenario``, with ``· repeat 2/3`` when there are repeats."""
        repeat = (f" · repeat {run.repeat + 1}/{self.plan.repeats}" if self.plan.repeats > 1
                  else "")
        if run.retake:
            repeat += " · retake"
        elif run.settling:
            repeat += f" · settling round {run.settling}"
        elif run.sample:
            repeat += (f" · {run.scenario.capacity_tool} sample {run.sample + 1}/"
                       f"{run.scenario.capacity_samples}")
        model = f"{run.model} and {run.versus}" if run.versus else run.model
        return f"{model} · {run.scenario.name}{repeat}"

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
        repeats = f" x {self.plan.repeats} repeats" if self.plan.repeats > 1 else ""
        self.say(f"comparing {len(self.plan.models)} model(s) x {len(self.plan.scenarios)} "
                 f"scenario(s){repeats} = {len(self.plan.runs)} runs, about "
                 f"{clock(self.plan.estimate())} ({self.plan.preset.name} preset)")
        if self.tty:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    def begin(self, index: int) -> None:
        with self._lock:
            self.index, self.run_started, self.message = index, time.monotonic(), ""
        if not self.tty:
            run = self.plan.runs[index]
            what = (f"testbed {run.scenario.capacity_tool}" if run.sample else
                    f"{run.scenario.unit} {','.join(map(str, run.scenario.steps))}")
            self.say(f"[{index + 1}/{len(self.plan.runs)}] {self._name(run)} · {what} · "
                     f"~{clock(self.left())} left")
        self._draw()

    def note(self, message: str) -> None:
        """run_load's progress callback."""
        self.message = message

    def end(self, index: int, seconds: float, crashed: str | None) -> None:
        run = self.plan.runs[index]
        if not run.sample:
            self.overheads.append(max(seconds - run.step_seconds(), 0.0))
        if crashed:
            self.say(f"{self._name(run)}: CRASHED: {crashed}")
        elif not self.tty:
            self.say(f"[{index + 1}/{len(self.plan.runs)}] {self._name(run)}: "
                     f"done in {seconds:.1f} s")

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self.tty:
            columns = shutil.get_terminal_size((100, 20)).columns
            self.stream.write("\r" + " " * (columns - 1) + "\r")
            self.stream.flush()


