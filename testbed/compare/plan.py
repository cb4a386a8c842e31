"""Which runs a comparison makes, in which order: :func:`make_plan` from the options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from testbed.compare import contenders
from testbed.compare.scenarios import Capacity, Preset, Scenario, Timing, preset

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
    repeat: int = 0  # which repeat (0-based)
    # 0: the run itself (its server, locust, the bench's (or wrk's) first sample and its
    # pipelined runs); k >= 1: the sample k + 1 alone, taken after every model's run
    sample: int = 0
    # k >= 1: a sample taken in the k-th settling round (testbed.compare.settle), once the
    # scenario's rounds left the model undecided
    settling: int = 0
    # 1: the run again, on a fresh server, its first one disturbed by the host
    # (testbed.compare.retake)
    retake: int = 0
    # a settling round's sample: the model and this one benched side by side, on two fresh
    # servers, their windows alternating (testbed bench --versus)
    versus: str = ""

    def planned_seconds(self, overhead: float) -> float:
        """:meth:`step_seconds` and the ``overhead`` of starting and stopping locust and the
        server, which a bench sample (a run of testbed bench alone) does not have."""
        return self.step_seconds() + (0.0 if self.sample else overhead)

    @property
    def timing(self) -> Timing:
        assert self.scenario.timing is not None
        return self.scenario.timing

    def step_seconds(self) -> float:
        """The planned length of the run: its steps, the drain of its last window (at most
        the longest attempt, counted in full), and its first capacity sample (and pipelined
        bench runs), if any."""
        if self.scenario.scale is not None:  # testbed bench at each step, no locust
            return self.scenario.scale.seconds(self.scenario.steps, self.timing)
        if self.versus:  # two servers, one bench or wrk run alternating between them
            return versus_run_seconds(self.scenario)
        if self.sample:  # one bench or wrk run
            return capacity_run_seconds(self.scenario)
        seconds = self.timing.seconds(len(self.scenario.steps)) + self.scenario.longest_attempt
        if self.scenario.capacity_tool is not None:
            seconds += capacity_run_seconds(self.scenario)
        if (capacity := self.scenario.capacity) is not None:
            seconds += sum(capacity.seconds_of(depth) + BENCH_OVERHEAD
                           for depth in capacity.pipelines)
        return seconds


#: A bench run's fixed cost beyond its warm-up and window (its own start, its server's
#: start and stop, without memory readings): 0.6 s measured on 2 cores.
BENCH_OVERHEAD = 0.6
#: ... and each window after a bench run's first (opening its connections, waiting for
#: the tree to settle): 0.13 s measured on 2 cores (select; more where the server forks).
WINDOW_OVERHEAD = 0.15


def bench_overhead(capacity: Capacity) -> float:
    """A sample's bench run's fixed cost, its windows' included."""
    return BENCH_OVERHEAD + (capacity.windows - 1) * WINDOW_OVERHEAD


#: ... and a wrk run's (testbed wrk, its server and wrk itself): 1.3 s.
WRK_OVERHEAD = 1.3
#: ... and each wrk window after a run's first (wrk's start, the server's tree read around
#: it): 0.1 s measured on 2 cores.
WRK_WINDOW_OVERHEAD = 0.1


#: ... and a server's start (testbed serve until its ready line), for the two servers of
#: a side-by-side run, which starts them itself: 0.4 s measured on 2 cores.
SERVER_START = 0.5


def versus_run_seconds(scenario: Scenario) -> float:
    """A side-by-side run's planned length: two servers, a warm-up each, and the
    scenario's ``versus_windows`` windows each (testbed bench or wrk --versus)."""
    if scenario.wrk is not None:
        wrk = scenario.wrk
        return (2 * (SERVER_START + wrk.warmup) + WRK_OVERHEAD
                + 2 * wrk.versus_windows * (wrk.window + WRK_WINDOW_OVERHEAD))
    capacity = scenario.capacity
    assert capacity is not None
    windows = 2 * capacity.versus_windows
    return (2 * (SERVER_START + capacity.warmup) + BENCH_OVERHEAD
            + windows * (capacity.window + WINDOW_OVERHEAD))


def capacity_run_seconds(scenario: Scenario) -> float:
    """One capacity sample's planned length, its fixed cost included: a testbed wrk run, or
    a testbed bench run at one request in flight."""
    if scenario.wrk is not None:
        return scenario.wrk.seconds + WRK_OVERHEAD
    assert scenario.capacity is not None
    return scenario.capacity.seconds_of(1) + bench_overhead(scenario.capacity)


@dataclass
class ComparisonPlan:
    preset: Preset
    scenarios: list[Scenario]
    models: list[str]
    workers: int
    pin: bool
    warmup: float | None = None  # set by --warmup for every scenario, else per scenario
    window: float | None = None  # set by --run-time
    repeats: int = 1
    repeats_from_budget: bool = False  # the preset's budget chose the repeats, not --repeat
    budget: float | None = None  # seconds the comparison may take (None: no bound)
    runs: list[PlannedRun] = field(default_factory=list)
    lab: dict[str, Any] | None = None  # --lab: the placement and conditions (testbed.lab)

    def estimate(self, overhead: float = OVERHEAD_GUESS) -> float:
        return sum(run.planned_seconds(overhead) for run in self.runs)

    def fitting(self, extra: list[PlannedRun], elapsed: float, overhead: float,
                least: int = 1) -> list[PlannedRun]:
        """The first of ``extra`` (the most needed first) that fit in the budget after
        ``elapsed`` seconds, less :data:`MARGIN`; none unless ``least`` fit; all of them
        without a budget."""
        if self.budget is None:
            return extra
        fits, cost = [], elapsed
        for planned in extra:
            cost += planned.planned_seconds(overhead)
            if cost > self.budget - MARGIN:
                break
            fits.append(planned)
        return fits if len(fits) >= least else []


#: Seconds of the budget kept for what is not a run: the report and its plots after the
#: runs, and tox and Python starting before them (9-15 s in all in most quick runs, 27 s
#: in one of 2026-12-02 04:50, which then took 6 min 5 s with tox).
MARGIN = 30.0


def rotated(models: list[str], repeat: int) -> list[str]:
    """The models in the order of repeat ``repeat``: each repeat starts one model later, so
    that a machine that drifts during the comparison hits every model alike."""
    if not models:
        return []
    shift = repeat % len(models)
    return models[shift:] + models[:shift]


def runs_in_order(scenarios: list[Scenario], models: list[str], repeats: int) -> list[PlannedRun]:
    """Scenario by scenario, so the models of one scenario are measured close in time; in
    each scenario, the repeats one after another, the models rotated from one to the next.
    The scale scenario runs once per model: a repeat would cost its minutes again, and
    what it finds (the step held, the memory per connection) moves little between runs.

    A scenario whose bench takes several samples takes the first in each model's run and
    the others in rounds over every model after them (rotated too): each model's samples
    then span the scenario's minutes, so the machine's drift over them shows in every
    model's spread instead of separating models measured a minute apart."""
    runs = []
    for scenario in scenarios:
        samples = scenario.capacity_samples
        for repeat in range(1 if scenario.scale else repeats):  # scale: once per model
            runs += [PlannedRun(model, scenario, repeat) for model in rotated(models, repeat)]
            runs += [PlannedRun(model, scenario, repeat, sample)
                     for sample in range(1, samples)
                     for model in rotated(models, repeat + sample)]
    return runs


def make_plan(args: argparse.Namespace) -> ComparisonPlan:
    """The runs to do, in order; LookupError for an unknown model or scenario."""
    from testbed.load import default_workers as load_default_workers  # locust-side imports: late

    service = getattr(args, "service", "echo")
    chosen = preset(args.full, service)
    models = (_choose("model", args.models, contenders.known(service)) if args.models
              else contenders.names(service))
    for model in models:
        contenders.require_installed(model)
    names = (_choose("scenario", args.scenarios, chosen.names()) if args.scenarios
             else chosen.default_names())  # the quick preset's scale only when named
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
        scenario = scenario.with_timing(timing)
        check_keeps_time(scenario)
        scenarios.append(scenario)
    plan = ComparisonPlan(chosen, scenarios, models, args.workers or load_default_workers(),
                          args.pin, warmup=args.warmup, window=args.run_time)
    repeats = getattr(args, "repeat", None) or chosen.repeats
    if repeats is None:  # as many as the preset's budget allows, at least one
        def cost(chosen_scenarios: list[Scenario]) -> float:
            return ComparisonPlan(chosen, chosen_scenarios, models, plan.workers, plan.pin,
                                  runs=runs_in_order(chosen_scenarios, models, 1)).estimate()

        once = cost([scenario for scenario in scenarios if scenario.scale])  # never repeated
        each = cost([scenario for scenario in scenarios if not scenario.scale])
        budget = getattr(args, "budget", None) or chosen.budget
        repeats = max(1, min(MAX_BUDGET_REPEATS, int((budget - once) // max(each, 1e-9))))
        plan.repeats_from_budget = True
        plan.budget = budget
    plan.repeats = repeats
    if getattr(args, "lab", None):
        from testbed.lab.placement import placement
        from testbed.lab.state import LabError

        try:
            plan.lab = placement(args.lab, plan.workers).describe()
        except LabError as exc:
            raise LookupError(f"--lab: {exc}") from None
    plan.runs = runs_in_order(scenarios, models, repeats)
    return plan


def check_keeps_time(scenario: Scenario) -> None:
    """LookupError if the scenario's users could not begin each step on time
    (:meth:`loadtests.common.Schedule.check_keeps_time`; --run-time and --warmup can make
    steps too short), before any run starts; arrivals and the scale scenario keep their own
    time."""
    if scenario.scale is not None or scenario.mode == "arrivals" or scenario.timing is None:
        return
    try:
        scenario.timing.schedule(len(scenario.steps)).check_keeps_time()
    except ValueError as exc:
        raise LookupError(f"the {scenario.name} scenario: {exc}") from None


#: The most repeats a budget chooses by itself (a small comparison could fit dozens).
MAX_BUDGET_REPEATS = 3
