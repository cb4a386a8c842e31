"""results.json, read back into plain objects every renderer shares.

The file ``testbed compare`` writes (format ``testbed-compare/1``)::

    {"format": "testbed-compare/1",
     "metadata": {"date", "started", "finished", "duration_s", "preset", "warmup_s",
                  "window_s", "workers", "pin", "command_line", "interrupted",
                  "machine": {"hostname", "cpu_model", "cores", "platform", "python"},
                  "versions": {"testbed", "locust", "psutil", "matplotlib"},
                  "models": [...], "scenarios": [...]},
     "scenarios": [{"name", "title", "description", "metric", "steps", "server_options",
                    "load", ...}],
     "runs": [{"model", "scenario", "status": "ok" | "crashed", "error", "duration_s",
               "summary": <the dict testbed.load.run_load returned, or null>}]}

A run's steps are the ``summary["steps"]`` records of ``testbed load``. Reading is
forgiving about missing figures (they show as "–"), strict about the shape.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "testbed-compare/1"

#: The failure classes in the order of clients.harness.FAILURE_CLASSES (copied, so a
#: report can be rebuilt without the clients package); unknown ones follow.
FAILURE_ORDER = ("refused", "reset", "connect_timeout", "io_timeout", "closed_early",
                 "mismatch", "unreachable", "other")


class ResultsError(ValueError):
    """results.json is missing, unreadable or not a comparison's results."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


@dataclass(frozen=True)
class Step:
    """One measured window of one run: the figures of one (model, scenario, users)."""

    users: int
    window_s: float | None = None
    requests: float | None = None
    served: float | None = None
    served_share: float | None = None  # 0..1
    failures: dict[str, int] = field(default_factory=dict)
    rps: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    cpu_s: float | None = None
    cpu_us_per_request: float | None = None
    peak_rss_mib: float | None = None
    peak_threads: float | None = None
    peak_processes: float | None = None
    peak_fds: float | None = None
    generator_bound: bool = False

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Step:
        server = record.get("server") or {}
        failures = {str(kind): int(count) for kind, count in (record.get("failures") or {}).items()
                    if _number(count) is not None}
        share = _number(record.get("served_share"))
        requests, served = _number(record.get("requests")), _number(record.get("served"))
        if share is None and requests:
            share = (served or 0.0) / requests
        return cls(
            users=int(record["users"]),
            window_s=_number(record.get("window_s")),
            requests=requests, served=served, served_share=share, failures=failures,
            rps=_number(record.get("rps")),
            p50_ms=_number(record.get("p50_ms")), p95_ms=_number(record.get("p95_ms")),
            p99_ms=_number(record.get("p99_ms")), max_ms=_number(record.get("max_ms")),
            cpu_s=_number(server.get("cpu_s")),
            cpu_us_per_request=_number(server.get("cpu_us_per_request")),
            peak_rss_mib=_number(server.get("peak_rss_mib")),
            peak_threads=_number(server.get("peak_threads")),
            peak_processes=_number(server.get("peak_processes")),
            peak_fds=_number(server.get("peak_fds")),
            generator_bound=bool(record.get("generator_bound")),
        )

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def cores_busy(self) -> float | None:
        """Average number of cores the server kept busy during the window."""
        if self.cpu_s is None or not self.window_s:
            return None
        return self.cpu_s / self.window_s

    def value(self, key: str) -> float | None:
        """A figure by name; ``failures:CLASS`` for one failure class, ``served_pct`` in %."""
        if key.startswith("failures:"):
            return float(self.failures.get(key.partition(":")[2], 0))
        if key == "served_pct":
            return None if self.served_share is None else self.served_share * 100.0
        if key == "failed":
            return float(self.failed)
        value = getattr(self, key)
        return None if value is None else float(value)


@dataclass(frozen=True)
class Run:
    """One model through one scenario: a fresh server, one locust run over every step."""

    model: str
    scenario: str
    status: str  # "ok" or "crashed"
    error: str | None
    steps: tuple[Step, ...]
    duration_s: float | None = None

    @property
    def crashed(self) -> bool:
        return self.status != "ok"

    def at(self, users: int) -> Step | None:
        for step in self.steps:
            if step.users == users:
                return step
        return None


@dataclass(frozen=True)
class ScenarioInfo:
    name: str
    title: str
    description: str
    metric: str  # "rps" or "served_share"
    steps: tuple[int, ...]
    server_options: str
    load: str
    raw: dict[str, Any]

    @property
    def top(self) -> int:
        """The highest user count: the step the summary tables show."""
        return max(self.steps)


@dataclass(frozen=True)
class Results:
    metadata: dict[str, Any]
    scenarios: tuple[ScenarioInfo, ...]
    models: tuple[str, ...]
    runs: tuple[Run, ...]

    def runs_for(self, scenario: str) -> list[Run]:
        """The runs of one scenario, in the order the models ran."""
        order = {model: i for i, model in enumerate(self.models)}
        found = [run for run in self.runs if run.scenario == scenario]
        return sorted(found, key=lambda run: order.get(run.model, len(order)))

    def run(self, model: str, scenario: str) -> Run | None:
        for run in self.runs:
            if run.model == model and run.scenario == scenario:
                return run
        return None

    def failure_classes(self, scenario: str, users: int | None = None) -> list[str]:
        """The failure classes seen in a scenario (at one step, if given), in harness order."""
        seen: set[str] = set()
        for run in self.runs_for(scenario):
            for step in run.steps:
                if users is None or step.users == users:
                    seen.update(kind for kind, count in step.failures.items() if count)
        known = [kind for kind in FAILURE_ORDER if kind in seen]
        return known + sorted(seen - set(FAILURE_ORDER))

    @property
    def cores(self) -> int | None:
        cores = (self.metadata.get("machine") or {}).get("cores")
        return cores if isinstance(cores, int) else None


def _scenario(data: dict[str, Any], steps_seen: dict[str, set[int]]) -> ScenarioInfo:
    name = str(data["name"])
    steps = tuple(int(users) for users in data.get("steps") or sorted(steps_seen.get(name, ())))
    if not steps:
        steps = (0,)
    return ScenarioInfo(
        name=name, title=str(data.get("title", "")), description=str(data.get("description", "")),
        metric=str(data.get("metric", "rps")), steps=steps,
        server_options=str(data.get("server_options", "")), load=str(data.get("load", "")),
        raw=data)


def _run(data: dict[str, Any]) -> Run:
    summary = data.get("summary") or {}
    steps = tuple(Step.from_record(step) for step in summary.get("steps") or ())
    status = str(data.get("status") or ("ok" if summary.get("complete", True) else "crashed"))
    if summary and summary.get("complete") is False:
        status = "crashed"
    error = data.get("error") or summary.get("error")
    if status == "ok" and error:
        status = "crashed"
    return Run(model=str(data["model"]), scenario=str(data["scenario"]), status=status,
               error=None if error is None else str(error), steps=steps,
               duration_s=_number(data.get("duration_s")))


def parse(document: Any) -> Results:
    """Results from the decoded JSON of results.json; ResultsError if it is not one."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ResultsError(f"not a comparison's results (expected format {FORMAT!r})")
    try:
        runs = tuple(_run(run) for run in document.get("runs") or ())
        steps_seen: dict[str, set[int]] = {}
        for run in runs:
            steps_seen.setdefault(run.scenario, set()).update(step.users for step in run.steps)
        scenarios = tuple(_scenario(s, steps_seen) for s in document.get("scenarios") or ())
        metadata = document.get("metadata") or {}
        models = tuple(metadata.get("models") or dict.fromkeys(run.model for run in runs))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ResultsError(f"malformed results: {type(exc).__name__}: {exc}") from None
    return Results(metadata=metadata, scenarios=scenarios, models=models, runs=runs)


def load(path: str | Path) -> Results:
    """Read and parse results.json; ResultsError with one clear line if it can't be."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise ResultsError(f"{path} is a directory, not a results.json") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path} is not valid JSON: {exc}") from None
    try:
        return parse(document)
    except ResultsError as exc:
        raise ResultsError(f"{path}: {exc}") from None
