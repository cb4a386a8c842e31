"""Running the comparison's runs one by one, and writing what they measured to results.json."""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from testbed.compare import contenders
from testbed.compare.plan import ComparisonPlan, PlannedRun
from testbed.reporting.data import FORMAT


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


def load_spec(plan: ComparisonPlan, run: PlannedRun, out_dir: Path) -> Any:
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


def run_one(plan: ComparisonPlan, run: PlannedRun, out_dir: Path, note: Callable[[str], None]) -> dict:
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


def results_document(plan: ComparisonPlan, runs: list[dict], argv: list[str], started: datetime,
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
