"""results.json, read back into plain objects every renderer shares.

The file ``testbed compare`` writes (format ``testbed-compare/1``)::

    {"format": "testbed-compare/1",
     "metadata": {"date", "started", "finished", "duration_s", "preset", "warmup_s",
                  "window_s", "repeats", "workers", "pin", "command_line", "interrupted",
                  "machine": {"hostname", "cpu_model", "cores", "platform", "python"},
                  "host_steal": <share of the CPU time the hypervisor took, or null>,
                  "versions": {"testbed", "locust", "psutil", "matplotlib"},
                  "models": [...], "scenarios": [...]},
     "scenarios": [{"name", "title", "description", "metric", "unit", "steps",
                    "server_options", "load", "capacity", ...}],
     "runs": [{"model", "scenario", "repeat", "status": "ok" | "crashed", "error",
               "duration_s", "host_steal": <the hypervisor's share over the run, or null>,
               "summary": <the dict testbed.load.run_load returned, or null>,
               "capacity": <the JSON of testbed bench (its median sample), for scenarios
                            that have one, with "samples": [...] (every bench run's figures)
                            and "pipelines": [...] (the figures at each pipeline depth),
                            both testbed.bench.pipeline.depth_record records>,
               "scale": <the scale scenario's run_scale records, one per step>}]}

A run's steps are the ``summary["steps"]`` records of ``testbed load``. Reading is
forgiving about missing figures (they show as "–"), strict about the shape.

With repeats, every (model, scenario) has several runs. :attr:`Results.repeat_runs`
keeps each of them; :attr:`Results.runs` merges them into one run per (model,
scenario) whose figures are the medians over the repeats that did not crash, each
with its spread (min, max), so every renderer shows medians and the verdicts can
tell apart what the spreads separate.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from testbed.reporting.scale_data import ScaleRun, scale_runs
from testbed.stats import poisson, wilson

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


#: The figures a step record has at its top level, and in its "server" part.
_RECORD_FIGURES = ("window_s", "rps", "p50_ms", "p95_ms", "p99_ms", "max_ms", "offered_rate",
                   "achieved_rate", "host_steal")
_SERVER_FIGURES = ("cpu_s", "cpu_us_per_request", "peak_rss_mib", "peak_threads",
                   "peak_processes", "peak_fds")


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
    offered_rate: float | None = None  # arrivals: connections per second offered ...
    achieved_rate: float | None = None  # ... and made
    clients_users: float | None = None  # closed-loop users in the window ...
    clients_served: float | None = None  # ... that got at least one reply
    jain: float | None = None  # Jain's fairness index of the replies per user
    #: the share of the machine's CPU time the host took over the window (testbed.steal)
    host_steal: float | None = None
    spread: dict[str, tuple[float, float]] = field(default_factory=dict)  # key: (min, max)
    repeats: int = 1

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Step:
        server = record.get("server") or {}
        clients = record.get("clients") or {}
        failures = {str(kind): int(count) for kind, count in (record.get("failures") or {}).items()
                    if _number(count) is not None}
        share = _number(record.get("served_share"))
        requests, served = _number(record.get("requests")), _number(record.get("served"))
        if share is None and requests:
            share = (served or 0.0) / requests
        return cls(
            users=int(record["users"]), requests=requests, served=served, served_share=share,
            failures=failures, generator_bound=bool(record.get("generator_bound")),
            **{name: _number(record.get(name)) for name in _RECORD_FIGURES},
            **{name: _number(server.get(name)) for name in _SERVER_FIGURES},
            clients_users=_number(clients.get("users")),
            clients_served=_number(clients.get("served_any")),
            jain=_number(clients.get("jain")),
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

    def range_of(self, key: str) -> tuple[float, float] | None:
        """The (min, max) of a figure over the repeats; None with one repeat or no figure."""
        if key == "served_pct" and "served_share" in self.spread:
            low, high = self.spread["served_share"]
            return low * 100.0, high * 100.0
        return self.spread.get(key)

    def interval(self, key: str) -> tuple[float, float] | None:
        """The 95% interval of a figure that counts events in the window, from its count:
        ``served_share`` (Wilson's interval on served of attempts: the arrivals are
        independent) and ``rps`` (Poisson on the replies); None for the other figures."""
        if key == "served_share" and self.requests and self.served is not None:
            return wilson(self.served, self.requests)
        if key == "rps" and self.rps is not None and self.served:
            low, high = poisson(self.served)
            return low * self.rps / self.served, high * self.rps / self.served
        return None

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


#: The bench limits that say the client was (also) the limit: its req/s are a floor.
CLIENT_BOUND_LIMITS = ("client", "both")


def depth_cpu(record: dict[str, Any]) -> float | None:
    """A depth record's server CPU per request: ``server_cpu_us_per_request``, or
    ``cpu_us_per_request`` in a results.json written before the records had one shape."""
    found = record.get("server_cpu_us_per_request", record.get("cpu_us_per_request"))
    return _number(found)


@dataclass(frozen=True)
class Depth:
    """The bench at one pipeline depth: requests in flight per connection."""

    pipeline: int
    cpu_us_per_request: float | None = None
    rps: float | None = None
    ok: bool = True
    limit: str | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Depth:
        return cls(pipeline=int(record["pipeline"]),
                   cpu_us_per_request=depth_cpu(record),
                   rps=_number(record.get("rps")), ok=bool(record.get("ok", True)),
                   limit=record.get("limit"))


def _depths(record: dict[str, Any]) -> tuple[Depth, ...]:
    """The figures at each pipeline depth. Depth 1 is the capacity's own figure (the median
    sample's), not the run that came first: the two would disagree in the same report."""
    depths = tuple(Depth.from_record(depth) for depth in record.get("pipelines") or ())
    server = record.get("server") or {}
    return tuple(replace(depth, cpu_us_per_request=_number(server.get("cpu_us_per_request")),
                         rps=_number(record.get("rps")), limit=record.get("limit"))
                 if depth.pipeline == 1 and depth.ok else depth for depth in depths)


@dataclass(frozen=True)
class Capacity:
    """What ``testbed bench`` (or, for HTTP, ``testbed wrk``: ``generator``) measured beside a
    locust run: throughput and the server's CPU per request under a generator lean enough to
    keep a fast server busy.

    With several bench samples the figures are the median sample's and ``spread`` holds
    the (min, max) over the samples (and over the repeats, once merged); ``pipelines``
    the figures at each pipeline depth."""

    rps: float | None = None
    cpu_us_per_request: float | None = None
    server_cores: float | None = None
    client_cores: float | None = None
    limit: str | None = None  # "server", "client", "both", "neither"
    connections: float | None = None
    served_connections: float | None = None
    errors: float | None = None
    ok: bool = True
    error: str | None = None
    spread: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: (min, max) of the repeats' own figures (each a median of its samples): what the
    #: verdicts compare, as a spread over more samples only grows wider
    repeat_spread: dict[str, tuple[float, float]] = field(default_factory=dict)
    repeats: int = 1
    samples: int = 1  # bench samples per repeat (runs, or their windows)
    #: the server CPU per request of every bench run that went well, over every repeat:
    #: what the verdicts' rank test compares
    cpu_samples: tuple[float, ...] = ()
    pipelines: tuple[Depth, ...] = ()
    generator: str = "bench"  # the testbed command that measured it: bench or wrk
    #: bench runs taken in settling rounds (testbed.compare.settle), over every repeat
    settling_runs: int = 0
    #: the windows a settling round took side by side with another model, by the model
    #: faced: pairs of server CPU per request (this one's, that one's), over every repeat
    paired: dict[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    #: the median over the bench's windows of the share of the machine's CPU time the
    #: host took in each (None where not counted)
    host_steal: float | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any] | None) -> Capacity | None:
        if not record:
            return None
        server = record.get("server") or {}
        client = record.get("client") or {}
        samples = [sample for sample in record.get("samples") or () if sample.get("ok")]
        spread = {}
        for key, read in (("cpu_us_per_request", depth_cpu),
                          ("rps", lambda sample: _number(sample.get("rps")))):
            values = [v for sample in samples if (v := read(sample)) is not None]
            if len(values) > 1:
                spread[key] = (min(values), max(values))
        cpu_samples = tuple(v for sample in samples if (v := depth_cpu(sample)) is not None)
        stolen = [v for sample in samples if (v := _number(sample.get("host_steal"))) is not None]
        if not cpu_samples and (cpu := _number(server.get("cpu_us_per_request"))) is not None:
            cpu_samples = (cpu,)  # one run (wrk, or a bench without samples)
        return cls(
            rps=_number(record.get("rps")),
            cpu_us_per_request=_number(server.get("cpu_us_per_request")),
            server_cores=_number(server.get("cores_busy")),
            client_cores=_number(client.get("cores_busy")),
            limit=record.get("limit"), connections=_number(record.get("connections")),
            served_connections=_number(record.get("served_connections")),
            errors=_number(record.get("error_count")),
            ok=bool(record.get("ok", True)) and record.get("rps") is not None,
            error=record.get("error"), generator=record.get("generator") or "bench",
            spread=spread, samples=max(len(record.get("samples") or ()), 1),
            cpu_samples=cpu_samples, settling_runs=int(record.get("settling_runs") or 0),
            paired=_pairs(record.get("paired")),
            host_steal=statistics.median(stolen) if stolen else None,
            pipelines=_depths(record))

    @property
    def client_bound(self) -> bool:
        """The client was (also) the limit: the req/s are a floor of the server's."""
        return self.limit in CLIENT_BOUND_LIMITS

    @property
    def saturated(self) -> bool:
        """The server left some of the bench's connections unserved: it was past what it
        can take, and its figures are those of clients left waiting."""
        return (self.served_connections is not None and self.connections is not None
                and self.served_connections < self.connections)

    def at_depth(self, pipeline: int) -> Depth | None:
        return next((depth for depth in self.pipelines if depth.pipeline == pipeline), None)

    def value(self, key: str) -> float | None:
        value = getattr(self, key, None)
        return None if value is None or isinstance(value, str) else float(value)

    def range_of(self, key: str) -> tuple[float, float] | None:
        return self.spread.get(key)


@dataclass(frozen=True)
class Run:
    """One model through one scenario: a fresh server, one locust run over every step, and
    for some scenarios a bench run; or, merged over repeats, the medians of such runs."""

    model: str
    scenario: str
    status: str  # "ok" or "crashed"
    error: str | None
    steps: tuple[Step, ...]
    duration_s: float | None = None
    repeat: int = 0
    capacity: Capacity | None = None
    repeats: int = 1  # merged: how many runs it stands for ...
    crashed_repeats: int = 0  # ... and how many of those crashed
    #: the share of the machine's CPU time the hypervisor took during the run (merged: the
    #: most in any of its repeats); None where it is not counted
    host_steal: float | None = None
    #: runs of the same cell the host disturbed, set aside for a calmer retake
    #: (testbed.compare.retake): the host's share of the CPU time in each one's top step
    set_aside: tuple[float | None, ...] = ()

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
    metric: str  # "rps", "served_share" or "cpu_us_per_request"
    steps: tuple[int, ...]
    server_options: str
    load: str
    raw: dict[str, Any]
    unit: str = "users"  # or "conn/s": what a step counts

    @property
    def top(self) -> int:
        """The highest step (users or offered rate): the step the summary tables show."""
        return max(self.steps)

    @property
    def arrivals(self) -> bool:
        return self.unit == "conn/s"

    @property
    def is_scale(self) -> bool:
        """The scale scenario: run_scale's records (``Results.scale``), no locust steps."""
        return bool(self.raw.get("scale"))

    def at(self, value: int | float) -> str:
        """``50 users``, ``1 user``, ``100 conn/s``."""
        unit = "user" if self.unit == "users" and value == 1 else self.unit
        return f"{value:g} {unit}"


@dataclass(frozen=True)
class Results:
    metadata: dict[str, Any]
    scenarios: tuple[ScenarioInfo, ...]
    models: tuple[str, ...]
    runs: tuple[Run, ...]  # one per (model, scenario): medians over the repeats
    repeat_runs: tuple[Run, ...] = ()  # every run as measured
    scale: tuple[ScaleRun, ...] = ()  # the scale scenario's runs (scale_data)

    @property
    def repeats(self) -> int:
        return max((run.repeats for run in self.runs), default=1)

    def repeats_of(self, model: str, scenario: str) -> list[Run]:
        """The runs of one (model, scenario), one per repeat, in order."""
        return sorted((run for run in self.repeat_runs
                       if run.model == model and run.scenario == scenario),
                      key=lambda run: run.repeat)

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

    @property
    def host_steal(self) -> float | None:
        """The share of the machine's CPU time its hypervisor took over the comparison;
        None where it was not counted (or in a results.json from before it was)."""
        return _number(self.metadata.get("host_steal"))

    @property
    def retake_steal(self) -> float | None:
        """The host's share of the CPU time in a run's top step from which the comparison
        took the run again (testbed.compare.retake); None in a results.json from before."""
        return _number(self.metadata.get("retake_steal"))


def _scenario(data: dict[str, Any], steps_seen: dict[str, set[int]]) -> ScenarioInfo:
    name = str(data["name"])
    steps = tuple(int(users) for users in data.get("steps") or sorted(steps_seen.get(name, ())))
    if not steps:
        steps = (0,)
    return ScenarioInfo(
        name=name, title=str(data.get("title", "")), description=str(data.get("description", "")),
        metric=str(data.get("metric", "rps")), steps=steps,
        server_options=str(data.get("server_options", "")), load=str(data.get("load", "")),
        raw=data, unit=str(data.get("unit") or "users"))


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
               duration_s=_number(data.get("duration_s")), repeat=int(data.get("repeat") or 0),
               capacity=Capacity.from_record(data.get("capacity")),
               host_steal=_number(data.get("host_steal")),
               set_aside=tuple(_number(other.get("top_host_steal"))
                               for other in data.get("set_aside") or () if isinstance(other, dict)))


def _median_of(items: list[Any], names: list[str]) -> tuple[dict[str, Any], dict]:
    """The median of each numeric field over ``items``, and its (min, max) over them."""
    medians: dict[str, Any] = {}
    spread: dict[str, tuple[float, float]] = {}
    for name in names:
        values = [v for item in items if (v := getattr(item, name)) is not None]
        if not values:
            continue
        medians[name] = statistics.median(values)
        if len(items) > 1:
            spread[name] = (min(values), max(values))
    return medians, spread


_STEP_FIGURES = [f.name for f in fields(Step) if f.name not in
                 ("users", "failures", "generator_bound", "spread", "repeats")]
_CAPACITY_FIGURES = ["rps", "cpu_us_per_request", "server_cores", "client_cores", "connections",
                     "served_connections", "errors", "host_steal"]


def merge_steps(steps: list[Step]) -> Step:
    """One step standing for the same step of several repeats: medians and spreads; its
    failures are the median count of each class; generator-bound if any repeat was."""
    if len(steps) == 1:
        return steps[0]
    medians, spread = _median_of(steps, _STEP_FIGURES)
    kinds = {kind for step in steps for kind in step.failures}
    failures = {kind: int(round(statistics.median(step.failures.get(kind, 0) for step in steps)))
                for kind in kinds}
    for kind in kinds:
        counts = [step.failures.get(kind, 0) for step in steps]
        spread[f"failures:{kind}"] = (min(counts), max(counts))
    totals = [step.failed for step in steps]
    spread["failed"] = (min(totals), max(totals))
    return Step(users=steps[0].users, failures=failures,
                generator_bound=any(step.generator_bound for step in steps),
                spread=spread, repeats=len(steps), **medians)


def _pairs(record: Any) -> dict[str, tuple[tuple[float, float], ...]]:
    """A capacity record's ``paired``: {model faced: [[this one's, that one's], ...]},
    the pairs with two positive numbers kept."""
    if not isinstance(record, dict):
        return {}
    found = {}
    for model, pairs in record.items():
        kept = tuple((a, b) for pair in pairs or () if isinstance(pair, list) and len(pair) == 2
                     and (a := _number(pair[0])) is not None and (b := _number(pair[1])) is not None
                     and a > 0 and b > 0)
        if kept:
            found[str(model)] = kept
    return found


def merge_capacities(found: list[Capacity]) -> Capacity | None:
    """One capacity standing for several repeats: the medians of theirs, spread over
    every repeat's samples, and the median at each pipeline depth."""
    measured = [capacity for capacity in found if capacity.ok]
    if not measured:
        return found[0] if found else None
    if len(measured) == 1 and len(found) == 1:
        return measured[0]
    medians, spread = _median_of(measured, _CAPACITY_FIGURES)
    repeat_spread = dict(spread)
    for key, (low, high) in list(spread.items()):
        ranges = [capacity.spread[key] for capacity in measured if key in capacity.spread]
        spread[key] = (min([low, *(r[0] for r in ranges)]), max([high, *(r[1] for r in ranges)]))
    limits = [capacity.limit for capacity in measured if capacity.limit]
    limit = max(set(limits), key=limits.count) if limits else None  # the most frequent
    depths = sorted({depth.pipeline for capacity in measured for depth in capacity.pipelines})
    pipelines = []
    for pipeline in depths:
        at = [d for capacity in measured if (d := capacity.at_depth(pipeline)) is not None and d.ok]
        figures, _ = _median_of(at, ["cpu_us_per_request", "rps"])
        pipelines.append(Depth(pipeline, ok=bool(at), **figures))
    return Capacity(limit=limit, spread=spread, repeat_spread=repeat_spread,
                    repeats=len(measured),
                    samples=max(capacity.samples for capacity in measured),
                    cpu_samples=tuple(v for capacity in measured for v in capacity.cpu_samples),
                    settling_runs=sum(capacity.settling_runs for capacity in measured),
                    paired={model: tuple(pair for capacity in measured
                                         for pair in capacity.paired.get(model, ()))
                            for model in sorted({faced for capacity in measured
                                                 for faced in capacity.paired})},
                    pipelines=tuple(pipelines), generator=measured[0].generator, **medians)


def merge_runs(runs: list[Run]) -> Run:
    """One run standing for the repeats of one (model, scenario), from those that did not
    crash; crashed only if every repeat did."""
    ok = [run for run in runs if not run.crashed]
    if not ok:
        return replace(runs[0], repeats=len(runs), crashed_repeats=len(runs))
    users = sorted({step.users for run in ok for step in run.steps})
    steps = tuple(merge_steps([step for run in ok if (step := run.at(count)) is not None])
                  for count in users)
    capacities = [run.capacity for run in ok if run.capacity is not None]
    stolen = [run.host_steal for run in runs if run.host_steal is not None]
    return Run(model=ok[0].model, scenario=ok[0].scenario, status="ok", error=None,
               steps=steps, duration_s=sum(run.duration_s or 0.0 for run in runs),
               capacity=merge_capacities(capacities), repeats=len(runs),
               crashed_repeats=len(runs) - len(ok), host_steal=max(stolen, default=None),
               set_aside=tuple(share for run in runs for share in run.set_aside))


def parse(document: Any) -> Results:
    """Results from the decoded JSON of results.json; ResultsError if it is not one."""
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ResultsError(f"not a comparison's results (expected format {FORMAT!r})")
    try:
        repeat_runs = tuple(_run(run) for run in document.get("runs") or ())
        groups: dict[tuple[str, str], list[Run]] = {}
        for run in repeat_runs:
            groups.setdefault((run.model, run.scenario), []).append(run)
        runs = tuple(merge_runs(group) for group in groups.values())
        scale = scale_runs(document.get("runs") or ())
        steps_seen: dict[str, set[int]] = {}
        for run in runs:
            steps_seen.setdefault(run.scenario, set()).update(step.users for step in run.steps)
        scenarios = tuple(_scenario(s, steps_seen) for s in document.get("scenarios") or ())
        metadata = document.get("metadata") or {}
        models = tuple(metadata.get("models") or dict.fromkeys(run.model for run in runs))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ResultsError(f"malformed results: {type(exc).__name__}: {exc}") from None
    return Results(metadata=metadata, scenarios=scenarios, models=models, runs=runs,
                   repeat_runs=repeat_runs, scale=scale)


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
