"""The parts of the load generator that need neither locust nor gevent.

Shared by the locustfile, the load shape and the per-step statistics, and
importable anywhere (the tests import it without monkey-patching their process).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


def make_payload(size: int) -> bytes:
    """``size`` bytes of lower-case letters ending with a newline (upper-case replies differ)."""
    if size < 1:
        raise ValueError(f"--payload-size must be at least 1 (the newline), not {size}")
    body = b"abcdefghijklmnopqrstuvwxyz" * (size // 26 + 1)
    return body[:size - 1] + b"\n"


#: Resolution of the latency histograms: a bucket per 1% of latency (log-spaced), so
#: percentiles merge across workers; the workers write it into steps.json.
BUCKETS_PER_E = 100.0
#: Seconds the last step's users keep running after its window closed, so every
#: worker closes and reports that window before the master stops them.
TAIL = 0.25
#: locust asks the load shape for its user count once a second, and the shape can change
#: it once per ask: a step shorter than this (warm-up + window, any step but the last)
#: would see the next count late, possibly after the next window opened.
SHAPE_TICK = 1.0
#: The spawn rate that means "all of a step's users at once".
AT_ONCE = 10_000.0


def parse_steps(text: str) -> list[int]:
    """``"1,10,50"`` -> ``[1, 10, 50]``; ValueError unless every count is a positive integer."""
    try:
        steps = [int(part) for part in str(text).replace(" ", "").split(",") if part]
    except ValueError:
        raise ValueError(f"user counts are whole numbers separated by commas, not {text!r}") from None
    if not steps or any(n <= 0 for n in steps):
        raise ValueError(f"user counts must be 1 or more, not {text!r}")
    return steps


def arrival_times(rate: float, start: float, end: float, rng: random.Random,
                  carry: float = 0.0) -> tuple[list[float], float]:
    """Arrival times in ``[start, end)`` at ``rate`` per second, and the fraction carried over.

    The times are those of a Poisson process given its count: ``rate * (end - start)``
    arrivals (plus the ``carry`` of earlier blocks), each at an independent uniform moment
    of the block, sorted. Blocks of at most a second, cut at the schedule's boundaries,
    make the count of every window the offered one, so that a short window measures the
    server and not the noise of a random count (a free Poisson count would vary by
    ``1/sqrt(rate * window)``: 10% in a 2 s window at 50 per second).
    """
    expected = rate * max(end - start, 0.0) + carry
    count = int(expected)
    times = sorted(rng.uniform(start, end) for _ in range(count))
    return times, expected - count


@dataclass(frozen=True)
class Phase:
    """Where a moment of the run falls: step ``index``, measured or warming up."""

    index: int
    users: int
    measured: bool


@dataclass(frozen=True)
class Schedule:
    """``steps`` user counts; each step is a warm-up, unrecorded, then ``window`` s measured.

    The first step's warm-up is ``first_warmup`` (default: ``warmup``), every later one's
    ``warmup``: a freshly started server is slowed for its first connections (its memory
    allocator settles; CPython issue 85451), so the first warm-up may need to be longer
    than what a warm server needs between two steps.
    """

    steps: tuple[int, ...]
    window: float
    warmup: float = 0.0
    first_warmup: float | None = None

    def __post_init__(self) -> None:
        if not self.steps or any(n <= 0 for n in self.steps):
            raise ValueError("a schedule needs at least one step of one user or more")
        if self.window <= 0 or self.warmup < 0 or (self.first_warmup or 0.0) < 0:
            raise ValueError("a step's window must be positive and its warm-up zero or more")

    @classmethod
    def from_options(cls, options: object) -> Schedule:
        """The schedule given by the locustfile's options (``--steps``, ``--step-time``,
        ``--warmup``, ``--first-warmup``; a negative first warm-up means ``--warmup``)."""
        first = float(getattr(options, "first_warmup", -1.0))
        return cls(tuple(parse_steps(getattr(options, "steps", "1"))),
                   float(getattr(options, "step_time", 30.0)),
                   float(getattr(options, "warmup", 0.0)),
                   None if first < 0 else first)

    def warmup_of(self, index: int) -> float:
        """Step ``index``'s warm-up, in seconds."""
        if index == 0 and self.first_warmup is not None:
            return self.first_warmup
        return self.warmup

    @property
    def shortest_warmup(self) -> float:
        """The shortest warm-up of any step: what a user started in a step may spend before
        its first request, if the step's window is to open on every user begun."""
        return min(self.warmup_of(index) for index in range(len(self.steps)))

    def step_start(self, index: int) -> float:
        """When step ``index`` (its warm-up) starts, in seconds from the start."""
        if index == 0:
            return 0.0
        return self.warmup_of(0) + self.window + (index - 1) * (self.warmup + self.window)

    @property
    def duration(self) -> float:
        """Seconds from the start to the end of the last window."""
        return self.step_start(len(self.steps))

    def window_bounds(self, index: int) -> tuple[float, float]:
        """Start and end of step ``index``'s measured window, in seconds from the start."""
        start = self.step_start(index) + self.warmup_of(index)
        return start, start + self.window

    def phase_at(self, elapsed: float) -> Phase | None:
        """The phase ``elapsed`` seconds after the start; None once the last window has closed."""
        elapsed = max(elapsed, 0.0)
        if elapsed >= self.duration:
            return None
        first = self.warmup_of(0) + self.window
        index = 0 if elapsed < first else 1 + int((elapsed - first) // (self.warmup + self.window))
        index = min(index, len(self.steps) - 1)  # float rounding at the very end
        return Phase(index, self.steps[index], elapsed >= self.window_bounds(index)[0])

    def check_keeps_time(self) -> None:
        """ValueError, in one line, unless closed-loop users can begin every step on time:
        each step but the last (which ends with the run) must last :data:`SHAPE_TICK` or
        more, warm-up and window together."""
        shortest = min((self.step_start(index + 1) - self.step_start(index)
                        for index in range(len(self.steps) - 1)), default=SHAPE_TICK)
        if shortest < SHAPE_TICK - 1e-9:
            raise ValueError(f"each step but the last must last {SHAPE_TICK:g} s or more "
                             f"(warm-up + run time), not {shortest:g} s: locust sets the user "
                             "count once a second, so a shorter step's users would come late")

    def next_boundary(self, elapsed: float) -> float:
        """The next moment after ``elapsed`` when a warm-up or a window begins or ends
        (after the schedule, ``elapsed`` plus one second)."""
        marks = [t for index in range(len(self.steps))
                 for t in (self.step_start(index), *self.window_bounds(index)) if t > elapsed]
        return min(marks) if marks else elapsed + 1.0

    def next_change(self, elapsed: float) -> float:
        """The next moment after ``elapsed`` when the user count changes or the run ends."""
        starts = [self.step_start(index) for index in range(1, len(self.steps))]
        return min([t for t in starts if t > elapsed] + [self.duration + TAIL])

    def users_at(self, elapsed: float) -> int | None:
        """Users the shape asks for at ``elapsed``; the last step's count during the tail; then None."""
        phase = self.phase_at(elapsed)
        if phase is not None:
            return phase.users
        if elapsed < self.duration + TAIL:
            return self.steps[-1]
        return None
