"""The scale scenario's runs, read back from results.json.

A scale run (``"scale"`` in a run of results.json) holds the records of
:func:`testbed.bench.scale.run_scale`, one per step of open connections. They are kept
as the plain dicts run_scale wrote, every key present (a missing one reads as None),
so :mod:`testbed.reporting.scale_plots` draws the same records in a report as
``testbed bench --scale`` does; :class:`ScaleRun` adds what the report reads off them:
the largest step held, the step that failed and how, the step not attempted for want
of processes. With repeats only the first run of a model is kept (the comparison runs
the scale scenario once per model).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from testbed.reporting.data import Results

#: The keys of a run_scale record, and what a missing one reads as (copied, so a report
#: can be rebuilt without the bench's client).
RECORD_DEFAULTS: dict[str, Any] = {
    "connections": 0, "active": 0, "attempted": False, "not_attempted": None, "ok": False,
    "failure": None, "seconds": None, "opened": None, "open_s": None, "idle_alive": None,
    "idle_connections": None, "served_active": None, "memory_figure": None, "server_bytes": None,
    "server_rss_bytes": None, "server_uss_bytes": None, "added_per_connection_bytes": None,
    "threads": None, "processes": None, "fds": None, "p50_ms": None, "p99_ms": None,
    "requests": None, "rps": None, "server_cpu_us_per_request": None, "errors": {},
    "server_log": [],
}
_NUMBERS = ("seconds", "opened", "open_s", "idle_alive", "idle_connections", "served_active",
            "server_bytes",
            "server_rss_bytes", "server_uss_bytes", "added_per_connection_bytes", "threads",
            "processes", "fds", "p50_ms", "p99_ms", "requests", "rps",
            "server_cpu_us_per_request")
#: How run_scale words a step not attempted for want of processes.
PROCESS_LIMIT = "not attempted beyond"


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) or math.isinf(value) else value


def step_record(raw: dict[str, Any]) -> dict[str, Any]:
    """A run_scale record with every key present and every figure a number or None."""
    if not isinstance(raw, dict):
        raise TypeError(f"a scale record must be an object, not {type(raw).__name__}")
    record = {**RECORD_DEFAULTS, **raw}
    record["connections"] = int(raw["connections"])
    for key in _NUMBERS:
        record[key] = _number(record[key])
    record["attempted"], record["ok"] = bool(record["attempted"]), bool(record["ok"])
    if record["failure"] is not None and not isinstance(record["failure"], dict):
        record["failure"] = {"how": str(record["failure"])}
    return record


@dataclass(frozen=True)
class ScaleRun:
    """One model through the scale scenario: its records, in the order of the steps."""

    model: str
    scenario: str
    status: str  # "ok" (run_scale ran; a failed step is a finding) or "crashed"
    error: str | None
    records: tuple[dict[str, Any], ...]
    repeat: int = 0
    duration_s: float | None = None

    @property
    def crashed(self) -> bool:
        return self.status != "ok"

    @property
    def held(self) -> dict[str, Any] | None:
        """The largest step held: every connection opened, every reply verified, every
        idle connection alive at the end."""
        return max((r for r in self.records if r["ok"]), key=lambda r: r["connections"],
                   default=None)

    @property
    def failed(self) -> dict[str, Any] | None:
        """The step that failed (the steps after it were not attempted)."""
        return next((r for r in self.records if r["attempted"] and not r["ok"]), None)

    @property
    def refused(self) -> dict[str, Any] | None:
        """The first step not attempted because the model would need too many processes."""
        return next((r for r in self.records if not r["attempted"]
                     and str(r["not_attempted"] or "").startswith(PROCESS_LIMIT)), None)

    @property
    def shown(self) -> dict[str, Any] | None:
        """The step a summary shows: the largest held, else the one that failed."""
        return self.held or self.failed

    def at(self, connections: int) -> dict[str, Any] | None:
        return next((r for r in self.records if r["connections"] == connections), None)


def how(record: dict[str, Any]) -> str:
    """How a failed step failed, in a few words."""
    return str((record.get("failure") or {}).get("how") or "failed")


def scale_runs(runs: Iterable[dict[str, Any]]) -> tuple[ScaleRun, ...]:
    """The scale runs among results.json's runs, the first repeat of each (model, scenario)."""
    found: dict[tuple[str, str], ScaleRun] = {}
    for data in runs:
        if not isinstance(data, dict) or not isinstance(data.get("scale"), list):
            continue
        run = ScaleRun(model=str(data["model"]), scenario=str(data["scenario"]),
                       status=str(data.get("status") or "ok"),
                       error=None if data.get("error") is None else str(data["error"]),
                       records=tuple(step_record(r) for r in data["scale"]),
                       repeat=int(data.get("repeat") or 0),
                       duration_s=_number(data.get("duration_s")))
        key = (run.model, run.scenario)
        if key not in found or run.repeat < found[key].repeat:
            found[key] = run
    return tuple(found.values())


def scale_runs_for(results: Results, scenario: str) -> list[ScaleRun]:
    """The scale runs of one scenario, in the order the models ran."""
    order = {model: i for i, model in enumerate(results.models)}
    return sorted((run for run in results.scale if run.scenario == scenario),
                  key=lambda run: order.get(run.model, len(order)))
