"""The scale scenario's run of one model: :func:`testbed.bench.scale.run_scale`, its records
kept in results.json (``"scale"``) and in the run's ``scale.json``.

There is no locust run here: thousands of open connections are held by testbed bench's
lean client, a fresh server at each step, as ``testbed bench --scale`` does. The records
are run_scale's own, unchanged, so the comparison and ``testbed bench --scale`` report
the same figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from testbed.compare import contenders
from testbed.compare.plan import ComparisonPlan, PlannedRun


def run_scale_one(plan: ComparisonPlan, run: PlannedRun, run_dir: Path,
                  note: Callable[[str], None]) -> dict[str, Any]:
    """One record for results.json: the run's ``scale`` records (one per step) and status
    ``ok`` once run_scale has run (a model that fails a step is a finding, recorded in its
    step), or ``crashed`` with the error when it could not run at all."""
    from testbed.bench.scale import run_scale  # the bench client: only when scale runs

    scale, scenario, timing = run.scenario.scale, run.scenario, run.timing
    assert scale is not None
    started = time.monotonic()
    record: dict[str, Any] = {
        "model": run.model, "scenario": scenario.name, "repeat": run.repeat,
        "started": datetime.now().astimezone().isoformat(timespec="seconds"),
        "out_dir": str(run_dir), "summary": None, "scale": []}
    try:
        if plan.lab:
            raise RuntimeError("the scale scenario runs on this host only, not across a lab")
        options = scenario.server_options(*contenders.server_options(run.model))
        records = run_scale(options, scenario.steps, active=scale.active,
                            duration=timing.window, warmup=timing.warmup,
                            io_timeout=scenario.io_timeout,
                            connect_timeout=scenario.connect_timeout,
                            open_timeout=scale.open_timeout, process_limit=scale.process_limit,
                            pin=plan.pin, payload_size=scenario.payload_size, progress=note)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - a model that cannot run is that row's result
        text = str(exc).strip().splitlines()
        record.update(status="crashed",
                      error=f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__)
    else:
        record.update(status="ok", error=None, scale=records)
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "scale.json").write_text(json.dumps(records, indent=1) + "\n",
                                            encoding="utf-8")
    record["duration_s"] = round(time.monotonic() - started, 3)
    return record
