"""The comparison's scenarios: the same server options, load and user steps for every model.

A scenario says what the server does per request (service, ``--delay``,
``--work-ms``, ``--backlog``), how the clients behave (persistent or
connect-per-request, payload size, timeouts) and which user counts are
measured, one window each. Two presets exist: ``quick`` (the default of
``testbed compare``, budgeted to run every model in a few minutes on two
cores) and ``full`` (longer windows, more user counts).

Each scenario also names the figure that decides its winner (``metric``):
throughput for the speed scenarios, the share of attempts served for the
denial one. The report's sentences are built on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

Metric = Literal["rps", "served_share"]


@dataclass(frozen=True)
class Timing:
    """How long each step lasts: an unrecorded warm-up, then the measured window (seconds)."""

    warmup: float
    window: float


@dataclass(frozen=True)
class Scenario:
    """One situation every model is put through, with its user steps."""

    name: str
    title: str  # a few words for headings
    description: str  # what it shows, one or two sentences
    steps: tuple[int, ...]
    metric: Metric = "rps"
    service: str = "echo"
    delay: float = 0.0
    work_ms: float = 0.0
    backlog: int | None = None  # None: the server's default
    mode: Literal["persistent", "connect"] = "persistent"
    payload_size: int = 64
    think_time: float = 0.0
    connect_timeout: float = 1.0
    io_timeout: float = 1.0
    extra_server_options: tuple[str, ...] = field(default=())

    def server_options(self, model: str) -> list[str]:
        """The ``testbed serve`` options that start this scenario's server in ``model``."""
        options = ["--model", model, "--service", self.service]
        if self.delay:
            options += ["--delay", f"{self.delay:g}"]
        if self.work_ms:
            options += ["--work-ms", f"{self.work_ms:g}"]
        if self.backlog is not None:
            options += ["--backlog", str(self.backlog)]
        return [*options, *self.extra_server_options, "--quiet"]

    def server_summary(self) -> str:
        """The server options without the model, as a reader would type them."""
        return " ".join(self.server_options("M")[2:-1])

    def load_summary(self) -> str:
        """The load in words: mode, payload, timeouts, users."""
        users = ", ".join(map(str, self.steps))
        think = f", think time {self.think_time:g} s" if self.think_time else ""
        return (f"{self.mode} connections, {self.payload_size}-byte requests{think}, "
                f"connect/I-O timeouts {self.connect_timeout:g}/{self.io_timeout:g} s, "
                f"users {users}")

    def with_steps(self, steps: tuple[int, ...]) -> Scenario:
        return replace(self, steps=tuple(steps))

    def as_dict(self) -> dict[str, Any]:
        """Everything about the scenario, for results.json."""
        data = asdict(self)
        data["steps"] = list(self.steps)
        data["extra_server_options"] = list(self.extra_server_options)
        data["server_options"] = self.server_summary()
        data["load"] = self.load_summary()
        return data


@dataclass(frozen=True)
class Preset:
    """A named set of scenarios and the timing of each of their steps."""

    name: str
    timing: Timing
    scenarios: tuple[Scenario, ...]

    def names(self) -> list[str]:
        return [scenario.name for scenario in self.scenarios]

    def get(self, name: str) -> Scenario:
        for scenario in self.scenarios:
            if scenario.name == name:
                return scenario
        raise LookupError(f"unknown scenario {name!r} (choose from {', '.join(self.names())})")


def _scenarios(fast: tuple[int, ...], slow: tuple[int, ...], cpu: tuple[int, ...],
               denial: tuple[int, ...], io_timeout: float) -> tuple[Scenario, ...]:
    """The four scenarios of the issue; the presets differ in user counts and timeouts."""
    return (
        Scenario(
            name="fast", title="echo, persistent connections, 64-byte requests",
            description="No delay, no work: each model's own overhead per request.",
            steps=fast, io_timeout=io_timeout, connect_timeout=io_timeout),
        Scenario(
            name="slow-io", title="every request waits 0.1 s (--delay 0.1)",
            description="Requests that wait on something slow: a model that serves one client "
                        "at a time collapses, the concurrent ones overlap their waits.",
            steps=slow, delay=0.1, io_timeout=io_timeout, connect_timeout=io_timeout),
        Scenario(
            name="cpu", title="every request burns 5 ms of CPU (--work-ms 5)",
            description="CPU-bound requests: threads share one interpreter lock, forked "
                        "processes use every core, an event loop blocks while it computes.",
            steps=cpu, work_ms=5.0, io_timeout=io_timeout, connect_timeout=io_timeout),
        Scenario(
            name="denial", title="a new connection per request, --backlog 1 --delay 0.5",
            description="Clients connect for every request to a server with a one-slot listen "
                        "queue and slow replies: which share of attempts each model serves, "
                        "and how the rest fail (connect timeouts, refusals, resets).",
            steps=denial, metric="served_share", mode="connect", delay=0.5, backlog=1,
            connect_timeout=1.0, io_timeout=max(1.0, io_timeout)),
    )


#: The default: budgeted so 8 models finish in about 5 minutes on 2 cores.
QUICK = Preset("quick", Timing(warmup=0.5, window=1.5), _scenarios(
    fast=(1, 10, 50), slow=(1, 10, 50), cpu=(1, 10), denial=(5, 20, 50), io_timeout=1.0))

#: ``--full``: longer windows and more user counts, for numbers worth quoting.
FULL = Preset("full", Timing(warmup=2.0, window=8.0), _scenarios(
    fast=(1, 10, 50, 100, 200), slow=(1, 10, 50, 100, 200), cpu=(1, 2, 5, 10, 20),
    denial=(5, 20, 50, 100, 200), io_timeout=3.0))

PRESETS: dict[str, Preset] = {preset.name: preset for preset in (QUICK, FULL)}


def preset(full: bool = False) -> Preset:
    return FULL if full else QUICK


def scenario_names() -> list[str]:
    """Every scenario name (the same in both presets)."""
    return QUICK.names()
