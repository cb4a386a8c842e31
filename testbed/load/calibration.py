"""The generator's calibrated ceiling: where it is kept, and the run that measures it."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from testbed.load.spec import LoadSpec

#: A step whose rps is at least this share of the calibrated ceiling is generator-bound.
CEILING_SHARE = 0.8
#: The calibration's fixed load: the fastest model, small persistent exchanges, many users.
CALIBRATION_USERS = 50
CALIBRATION_SERVER = ["--model", "select", "--service", "echo", "--quiet"]


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
