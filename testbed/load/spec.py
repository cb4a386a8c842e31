"""What one load test is: :class:`LoadSpec`, and :class:`LoadError` for one that can't run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.common import Schedule
from testbed.target import UsageError

#: A load test that cannot run: a bad spec (status 2) or an unreachable target (status 1);
#: the error every testbed command that drives a server raises.
LoadError = UsageError


def default_workers() -> int:
    """The CPUs this process may use, minus one for the server; at least one."""
    return max(len(os.sched_getaffinity(0)) - 1, 1)


@dataclass
class LoadSpec:
    """Everything one load test needs; ``server_options`` are ``testbed serve``'s options."""

    server_options: list[str] = field(default_factory=list)
    target: str | None = None
    # With target: the server's process, started by the caller, whose tree is sampled like
    # a server testbed load starts; the caller saw it ready, so no probe is made first (a
    # server whose listen queue is already full would fail it: that is what is measured).
    target_pid: int | None = None
    allow_remote: bool = False
    steps: list[int] = field(default_factory=lambda: [10])
    step_time: float = 30.0  # measured seconds per step, after its warm-up
    warmup: float = 2.0
    first_warmup: float | None = None  # the first step's warm-up, on a fresh server; None: warmup
    spawn_rate: float | None = None  # users started per second; None: each step's users at once
    mode: str = "persistent"  # or "connect"; or "arrivals", where the steps are offered rates
    payload_size: int = 64
    udp: bool = False
    expect: str | None = None  # the reply to check for; None: the server's service (echo for a target)
    think_time: float = 0.0
    # the closed-loop users' first requests spread over this many seconds, so that users
    # started together do not run in step (loadtests.users.stagger)
    start_jitter: float = 0.0
    connect_timeout: float = 5.0
    io_timeout: float = 5.0
    workers: int = field(default_factory=default_workers)
    pin: bool = False
    out_dir: Path = Path("results")
    run_id: str | None = None
    web: bool = False  # locust's web UI on 127.0.0.1:web_port while the schedule runs
    web_port: int = 8089
    calibration_file: Path | None = None  # None: $TESTBED_CALIBRATION or the user's cache dir
    sample_interval: float = 0.25
    locust_html: bool = True  # locust's own HTML report (about 0.05 s and 1 MB a run)
    lab: str | None = None  # a lab that is up (testbed lab): server h1, master h2, workers h3..

    @property
    def schedule(self) -> Schedule:
        """The steps in time (ValueError for steps or times :func:`check_spec` refuses)."""
        return Schedule(tuple(self.steps), self.step_time, self.warmup, self.first_warmup)

    @property
    def first_step_warmup(self) -> float:
        """The first step's warm-up: ``first_warmup``, or ``warmup`` when that is not set."""
        return self.warmup if self.first_warmup is None else self.first_warmup
