"""Which runs a comparison makes, in which order: :func:`make_plan` from the options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from testbed.compare import contenders
from testbed.compare.scenarios import Preset, Scenario, Timing, preset

#: First guess of a run's fixed cost (server and locust start and stop), seconds;
#: replaced by the measured mean as soon as one run has finished.
OVERHEAD_GUESS = 1.0


def _choose(kind: str, chosen: list[str] | None, valid: list[str]) -> list[str]:
    if chosen is None:
        return list(valid)
    unknown = [name for name in chosen if name not in valid]
    if unknown:
        raise LookupError(f"unknown {kind}{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(map(repr, unknown))} (choose from {', '.join(valid)})")
    return chosen


@dataclass(frozen=True)
class PlannedRun:
    model: str
    scenario: Scenario  # with its timing filled in

    @property
    def timing(self) -> Timing:
        assert self.scenario.timing is not None
        return self.scenario.timing

    def step_seconds(self) -> float:
        return self.timing.seconds(len(self.scenario.steps))


@dataclass
class ComparisonPlan:
    preset: Preset
    scenarios: list[Scenario]
    models: list[str]
    workers: int
    pin: bool
    warmup: float | None = None  # set by --warmup for every scenario, else per scenario
    window: float | None = None  # set by --run-time
    runs: list[PlannedRun] = field(default_factory=list)

    def estimate(self, overhead: float = OVERHEAD_GUESS) -> float:
        return sum(run.step_seconds() + overhead for run in self.runs)

    def warnings(self) -> list[str]:
        """Windows too short to see a waiting client fail (an attempt ends after them)."""
        return [f"in {s.name}, the {s.timing.window:g} s window is not longer than one attempt "
                f"may last ({s.longest_attempt:g} s): clients left waiting may not show as failures"
                for s in self.scenarios if s.timing and s.timing.window <= s.longest_attempt]


def make_plan(args: argparse.Namespace) -> ComparisonPlan:
    """The runs to do, in order; LookupError for an unknown model or scenario."""
    from testbed.load import default_workers as load_default_workers  # locust-side imports: late

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
    plan = ComparisonPlan(chosen, scenarios, models, args.workers or load_default_workers(), args.pin,
                warmup=args.warmup, window=args.run_time)
    # Scenario by scenario, so the models of one scenario are measured close in time.
    plan.runs = [PlannedRun(model, scenario) for scenario in scenarios for model in models]
    return plan


