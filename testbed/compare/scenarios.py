"""The comparison's scenarios: the same server options, load and user steps for every model.

A scenario says what the server does per request (service, ``--delay``,
``--work-ms``, ``--backlog``), how the clients behave (persistent or
connect-per-request, payload size, timeouts) and which user counts are
measured, one window each. Two presets exist: ``quick`` (the default of
``testbed compare``, budgeted to run every model in a few minutes on two
cores) and ``full`` (longer windows, more user counts).

Each scenario also names the figure that decides its winner (``metric``):
throughput where requests wait or compute, the share of attempts served for
the denial one, and for ``fast`` the server's CPU per request measured by the
lean closed loop of ``testbed bench`` (:class:`Capacity`): one locust worker
costs more CPU per request than a fast server, so locust's throughput there
measures locust. Locust still gives that scenario's latencies at each user count.
The report's sentences are built on it.

The scale scenario (:class:`ScaleRun`) has no locust run: ``testbed bench`` opens 100,
1,000, 5,000 and 10,000 connections, a fresh server at each step, 10 of them active and
the rest idle, and records what each model held and where and how it failed. It is part
of ``--full``; in the quick preset it runs only when named (``--scenarios scale``).

The denial scenario offers new connections at stated rates (``mode="arrivals"``:
its steps are connections per second, not users), so each attempt is
independent of how the earlier ones fared and of when the other clients retry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from loadtests.common import Schedule
from testbed.bench.scale import DEFAULT_STEPS as SCALE_STEPS
from testbed.bench.scale import SCALE_BACKLOG

Metric = Literal["rps", "served_share", "cpu_us_per_request", "connections_held"]


@dataclass(frozen=True)
class Timing:
    """How long each step lasts: an unrecorded warm-up, then the measured window (seconds).

    The first step warms a freshly started server up for ``first_warmup`` (None: the same
    as the others): a Python server is slowed for its first connections while its memory
    allocator settles, which a warm server past its first step no longer needs.
    """

    warmup: float
    window: float
    first_warmup: float | None = None

    def schedule(self, steps: int) -> Schedule:
        """The load's schedule for ``steps`` steps (the user counts do not matter here)."""
        return Schedule((1,) * max(steps, 1), self.window, self.warmup, self.first_warmup)

    @property
    def first(self) -> float:
        return self.schedule(1).warmup_of(0)

    def seconds(self, steps: int) -> float:
        """How long ``steps`` steps last, warm-ups included."""
        return self.schedule(steps).duration

    def describe(self) -> str:
        if self.first == self.warmup:
            return f"each step {self.warmup:g} s warm-up (not recorded) + {self.window:g} s measured window"
        return (f"{self.first:g} s warm-up of the fresh server before the first step, "
                f"{self.warmup:g} s before each later one (not recorded); each step a "
                f"{self.window:g} s measured window")


@dataclass(frozen=True)
class Capacity:
    """``testbed bench`` runs beside the locust one: throughput and server CPU per request
    where the load generator is not the limit (``connections`` closed-loop connections).

    One request in flight per connection, ``samples`` times on a fresh server each (the
    first in the model's run, the others in rounds over every model after the runs), each
    time ``windows`` windows in a row on new connections (``testbed bench --windows``,
    samples that cost no server start nor warm-up of their own): the figure is the median
    of every window and their spread (min-max) says how far one strays over the
    scenario's minutes, which is what tells two models apart or calls them level.
    Then, in the model's run, once at each of the
    ``pipelines`` depths (requests in flight per connection), with its own shorter timing:
    the server CPU per request against the depth shows each design's cost per wake-up.
    """

    connections: int = 10
    warmup: float = 1.0
    window: float = 2.0
    samples: int = 3
    windows: int = 1
    pipelines: tuple[int, ...] = (4, 16)
    pipeline_warmup: float = 0.3
    pipeline_window: float = 0.7
    #: windows of each model in a settling round's side-by-side run (testbed.compare.settle)
    versus_windows: int = 8

    def options(self, pipeline: int = 1) -> list[str]:
        """The bench options of a sample (``pipeline`` 1) or of a pipelined run."""
        # --no-memory: the memory per connection is the scale scenario's figure, and its
        # readings would cost every sample 0.8 s of waiting for the tree to settle
        if pipeline == 1:
            return ["--connections", str(self.connections), "--warmup", f"{self.warmup:g}",
                    "--duration", f"{self.window:g}", "--no-memory",
                    *(["--windows", str(self.windows)] if self.windows > 1 else [])]
        return ["--connections", str(self.connections), "--warmup", f"{self.pipeline_warmup:g}",
                "--duration", f"{self.pipeline_window:g}", "--pipeline", str(pipeline),
                "--no-memory"]

    def versus_options(self) -> list[str]:
        """The bench options of a settling round's side-by-side run (``--versus``)."""
        return ["--connections", str(self.connections), "--warmup", f"{self.warmup:g}",
                "--duration", f"{self.window:g}", "--no-memory",
                "--windows", str(self.versus_windows)]

    def seconds_of(self, pipeline: int = 1) -> float:
        """One bench run's warm-up and windows."""
        if pipeline == 1:
            return self.warmup + self.windows * self.window
        return self.pipeline_warmup + self.pipeline_window

    def describe(self) -> str:
        runs = f"{self.samples} runs" if self.samples > 1 else "one run"
        windows = self.samples * self.windows
        samples = (f"the median of {windows} windows ({runs} of {self.windows} in a row)"
                   if self.windows > 1 else
                   f"the median of {self.samples} runs" if self.samples > 1 else "one run")
        text = (f"capacity and CPU per request from testbed bench, {self.connections} "
                f"connections, {self.warmup:g} s warm-up, {self.window:g} s windows, {samples}")
        if self.pipelines:
            depths = ", ".join(map(str, self.pipelines))
            text += (f"; then {depths} requests in flight per connection "
                     f"({self.pipeline_warmup:g} s warm-up, {self.pipeline_window:g} s window)")
        return text


@dataclass(frozen=True)
class WrkRun:
    """A ``testbed wrk`` run beside the locust one, for the HTTP scenarios: capacity and server
    CPU per request with a C generator (keep-alive, ``close``: a connection per request,
    ``pipeline``: requests written at once per connection, ``idle``: keep-alive connections
    held idle beside wrk's)."""

    connections: int = 10
    warmup: float = 1.0
    window: float = 2.0
    #: measured runs of ``window`` in a row on the same server (``testbed wrk --windows``):
    #: 4 or more in all give the verdict's rank test samples enough to decide from one repeat
    windows: int = 1
    #: wrk runs, each on a fresh server: the first in the model's run, the others in rounds
    #: over every model after the runs, as a bench's samples (:class:`Capacity`)
    samples: int = 1
    pipeline: int = 1
    close: bool = False
    idle: int = 0
    #: windows of each model in a settling round's side-by-side run (testbed.compare.settle)
    versus_windows: int = 8

    def options(self, windows: int | None = None) -> list[str]:
        """The wrk options of a sample, or with ``windows`` (a side-by-side run's)."""
        windows = windows or self.windows
        options = ["--connections", str(self.connections), "--warmup", f"{self.warmup:g}",
                   "--duration", f"{self.window:g}"]
        if windows > 1:
            options += ["--windows", str(windows)]
        if self.pipeline > 1:
            options += ["--pipeline", str(self.pipeline)]
        if self.close:
            options.append("--close")
        if self.idle:
            options += ["--idle", str(self.idle)]
        return options

    @property
    def seconds(self) -> float:
        return self.warmup + self.window * self.windows


@dataclass(frozen=True)
class ScaleRun:
    """The scale scenario's run of one model, instead of locust:
    :func:`testbed.bench.scale.run_scale` at each step of open connections, a fresh server
    per step, ``active`` of them carrying testbed bench's closed loop and the rest idle
    (each checked alive at the end). A model with a process per connection is not driven
    beyond ``process_limit`` connections; ``open_timeout`` bounds the opening of a step."""

    active: int = 10
    process_limit: int = 2000
    open_timeout: float = 60.0

    #: Seconds a step costs beyond its warm-up and window (server start and stop, the two
    #: settled readings of the tree, the idle check), and per connection it opens.
    STEP_OVERHEAD = 1.5
    PER_CONNECTION = 1 / 4000

    def seconds(self, steps: tuple[int, ...], timing: Timing) -> float:
        """A guess of one model's run: every step attempted (a model that fails stops early)."""
        return sum(timing.warmup + timing.window + self.STEP_OVERHEAD
                   + connections * self.PER_CONNECTION for connections in steps)

    def describe(self, steps: tuple[int, ...]) -> str:
        return (f"{', '.join(f'{n:,}' for n in steps)} open connections, one step at a time on "
                f"a fresh server, {self.active} of them active (testbed bench's closed loop, "
                "one request in flight each) and the rest idle, every idle one checked alive "
                f"at the end; a process-per-connection model is not driven beyond "
                f"{self.process_limit:,} connections; the steps after a failure are not "
                "attempted")


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
    mode: Literal["persistent", "connect", "arrivals"] = "persistent"
    payload_size: int = 64
    think_time: float = 0.0
    connect_timeout: float = 1.0
    io_timeout: float = 1.0
    extra_server_options: tuple[str, ...] = field(default=())
    timing: Timing | None = None  # None: the preset's
    capacity: Capacity | None = None  # a testbed bench run too (metric cpu_us_per_request)
    wrk: WrkRun | None = None  # http: a testbed wrk run instead (metric cpu_us_per_request)
    idle: int = 0  # http: keep-alive connections held idle beside locust's users
    scale: ScaleRun | None = None  # the scale scenario: testbed bench steps, no locust

    @property
    def unit(self) -> str:
        """What a step counts: users, or offered connections per second."""
        if self.scale is not None:
            return "connections"
        return "conn/s" if self.mode == "arrivals" else "users"

    @property
    def start_jitter(self) -> float:
        """How long the users' first requests are spread over (``testbed load
        --start-jitter``): one delay where the server waits one per request, so that users
        started together, whose cycles are all as long, do not run in step (their window
        then counted 350 or 400 replies at 50 users, as its edges fell about their common
        phase, where their pace gives 395)."""
        return self.delay if self.mode != "arrivals" else 0.0

    @property
    def longest_attempt(self) -> float:
        """How long one attempt can take before it counts as failed (seconds)."""
        return self.connect_timeout + self.io_timeout

    def server_options(self, model: str, extra: tuple[str, ...] = ()) -> list[str]:
        """The ``testbed serve`` options that start this scenario's server in ``model``
        (with a variant's ``extra`` options)."""
        options = ["--model", model, *extra, "--service", self.service]
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
        if self.scale is not None:
            return (f"{self.scale.describe(self.steps)}; {self.payload_size}-byte requests, "
                    f"connect/I-O timeouts {self.connect_timeout:g}/{self.io_timeout:g} s")
        steps = ", ".join(map(str, self.steps))
        pace = f", think time {self.think_time:g} s" if self.think_time else ""
        if self.start_jitter:
            pace += f", the users' first requests spread over {self.start_jitter:g} s"
        what = ("new connections at offered rates (Poisson arrivals)" if self.mode == "arrivals"
                else f"{self.mode} connections")
        capacity = ""
        if self.idle:
            capacity += f"; {self.idle} idle keep-alive connections held beside the users"
        if self.wrk:
            capacity += f"; capacity and CPU per request from testbed wrk {' '.join(self.wrk.options())}"
            if self.wrk.samples > 1:
                capacity += (f", {self.wrk.samples} runs on fresh servers, the median of their "
                             f"{self.wrk.samples * self.wrk.windows} windows")
        if self.capacity:
            capacity = f"; {self.capacity.describe()}"
        if self.service == "http":
            return (f"GET / over {what} (locust's FastHttpUser){pace}, connect/I-O timeouts "
                    f"{self.connect_timeout:g}/{self.io_timeout:g} s, {self.unit} {steps}{capacity}")
        return (f"{what}, {self.payload_size}-byte requests{pace}, "
                f"connect/I-O timeouts {self.connect_timeout:g}/{self.io_timeout:g} s, "
                f"{self.unit} {steps}{capacity}")

    @property
    def capacity_tool(self) -> Literal["bench", "wrk"] | None:
        """The tool that measures the capacity (``testbed bench`` or ``testbed wrk``), if any."""
        if self.wrk is not None:
            return "wrk"
        return "bench" if self.capacity is not None else None

    @property
    def settles(self) -> bool:
        """Whether settling rounds apply (testbed.compare.settle): the capacity tool's server
        CPU per request decides."""
        return self.capacity_tool is not None and self.metric == "cpu_us_per_request"

    def versus_options(self) -> list[str]:
        """The options of a settling round's side-by-side run (``testbed bench --versus`` or
        ``testbed wrk --versus``) beside its two servers'."""
        if self.wrk is not None:
            return self.wrk.options(self.wrk.versus_windows)
        assert self.capacity is not None
        return [*self.capacity.versus_options(), "--payload-size", str(self.payload_size)]

    @property
    def capacity_samples(self) -> int:
        """Capacity runs (testbed bench or wrk) per model and repeat, each on a fresh server."""
        if self.capacity is not None:
            return self.capacity.samples
        return self.wrk.samples if self.wrk is not None else 1

    def with_steps(self, steps: tuple[int, ...]) -> Scenario:
        return replace(self, steps=tuple(steps))

    def with_timing(self, timing: Timing) -> Scenario:
        return replace(self, timing=timing)

    def as_dict(self) -> dict[str, Any]:
        """Everything about the scenario, for results.json."""
        data = asdict(self)
        data["steps"] = list(self.steps)
        data["extra_server_options"] = list(self.extra_server_options)
        data.pop("timing")
        data["unit"] = self.unit
        data["warmup_s"] = self.timing.warmup if self.timing else None
        data["first_warmup_s"] = self.timing.first if self.timing else None
        data["window_s"] = self.timing.window if self.timing else None
        data["server_options"] = self.server_summary()
        data["load"] = self.load_summary()
        if self.timing:
            data["load"] += f"; {self.timing.describe()}"
        return data


@dataclass(frozen=True)
class Preset:
    """A named set of scenarios; ``timing`` serves those without their own. The scenarios
    named in ``on_request`` run only when ``--scenarios`` names them."""

    name: str
    timing: Timing
    scenarios: tuple[Scenario, ...]
    repeats: int | None = None  # None: as many as the budget allows
    on_request: tuple[str, ...] = ()
    #: with ``repeats`` None: the seconds it may take (``--budget``), its repeats as many
    #: as fit (at least one), then settling rounds and retakes while room is left
    budget: float = 6 * 60.0

    def names(self) -> list[str]:
        return [scenario.name for scenario in self.scenarios]

    def default_names(self) -> list[str]:
        """The scenarios a run without ``--scenarios`` makes."""
        return [name for name in self.names() if name not in self.on_request]

    def get(self, name: str) -> Scenario:
        """The scenario, with the preset's timing filled in when it has none of its own."""
        for scenario in self.scenarios:
            if scenario.name == name:
                return scenario if scenario.timing else scenario.with_timing(self.timing)
        raise LookupError(f"unknown scenario {name!r} (choose from {', '.join(self.names())})")


#: The first warm-up of every run, on its freshly started server: ``testbed load``'s default.
FIRST_WARMUP = 2.0


@dataclass(frozen=True)
class Budget:
    """A preset's choices for one scenario: user counts, step timing, per-attempt timeouts."""

    steps: tuple[int, ...]
    warmup: float  # before each step after the first
    window: float
    io_timeout: float
    connect_timeout: float = 0.5
    first_warmup: float = FIRST_WARMUP

    def fields(self) -> dict[str, Any]:
        """The Scenario fields this budget sets: steps, timing and timeouts."""
        return {"steps": self.steps, "timing": Timing(self.warmup, self.window, self.first_warmup),
                "io_timeout": self.io_timeout, "connect_timeout": self.connect_timeout}


def _scenarios(fast: Budget, slow: Budget, cpu: Budget, denial: Budget,
               capacity: Capacity) -> tuple[Scenario, ...]:
    """The four scenarios; the presets differ in steps, timing and timeouts.

    A window counts every attempt that started in it, followed to its end, so a window
    may be shorter than the longest attempt: a client left waiting still shows up as a
    failure, in the window it started in.
    """
    return (
        Scenario(
            name="fast", title="echo, persistent connections, 64-byte requests",
            description="No delay, no work: each model's own overhead per request, as server "
                        "CPU per request under a lean closed loop that keeps it busy; locust "
                        "gives the latency at each user count.",
            metric="cpu_us_per_request", capacity=capacity, **fast.fields()),
        Scenario(
            name="slow-io", title="every request waits 0.1 s (--delay 0.1)",
            description="Requests that wait on something slow: a model that serves one client "
                        "at a time collapses, the concurrent ones overlap their waits.",
            delay=0.1, **slow.fields()),
        Scenario(
            name="cpu", title="every request burns 5 ms of CPU (--work-ms 5)",
            description="CPU-bound requests: threads share one interpreter lock, forked "
                        "processes use every core, an event loop blocks while it computes.",
            work_ms=5.0, **cpu.fields()),
        Scenario(
            name="denial", title="new connections at offered rates, --backlog 1 --delay 0.5",
            description="New connections arrive at a stated rate (Poisson arrivals, each "
                        "independent of the others) at a server with a one-slot listen queue "
                        "and slow replies: which share of attempts each model serves as the "
                        "offered rate grows, and how the rest fail (connect timeouts, "
                        "refusals, resets).",
            metric="served_share", mode="arrivals", delay=0.5, backlog=1, **denial.fields()),
    )


#: The default, budgeted for every model (9 with asyncio+uvloop) on 2 cores: each fresh
#: server warmed up for 1 s, short windows and short timeouts, and as many repeats as
#: :data:`QUICK_BUDGET` allows (each run also costs about 0.7 s of locust start and stop).
QUICK = Preset("quick", Timing(warmup=0.2, window=1.0, first_warmup=1.0), _scenarios(
    # each step lasts 1 s, so that locust (it sets the user count once a second) begins
    # every one on time
    fast=Budget((1, 10, 50), warmup=0.2, window=0.8, io_timeout=0.3, connect_timeout=0.3,
                first_warmup=1.0),
    # 0.5 s before each later step: forking forks 40 children between 10 and 50 users
    slow=Budget((1, 10, 50), warmup=0.5, window=0.8, io_timeout=0.5, first_warmup=1.0),
    # threading's replies wait for the interpreter lock behind nine others': its slowest
    # took 0.36-0.74 s in six runs, so an I/O timeout of 0.8 s failed one in one run of six;
    # the window stays longer than the timeout, so that every client a pool leaves queued
    # starts an attempt in it, and fails it
    cpu=Budget((1, 10), warmup=0.2, window=1.4, io_timeout=1.2, first_warmup=1.0),
    denial=Budget((10, 40, 100), warmup=0.3, window=1.5, io_timeout=1.2, first_warmup=1.0),
    # twelve short windows rather than a few long ones: one window strays from the next by
    # about 10% (the machine's speed for this work moves from one second to the next, in a
    # fresh server as in one already warm), so more samples narrow the interval of two
    # models' ratio more than longer windows would. Four in a row on each of three fresh
    # servers (the second and third in rounds after every model's run), not six on two: the
    # machine has slow spells of several seconds (one made six windows in a row of a
    # uvloop server cost 2-8 times the others), and one such spell then holds a third of a
    # model's samples, not half, so the median does not move with it
    capacity=Capacity(connections=10, warmup=0.2, window=0.5, samples=3, windows=4,
                      pipelines=(16,)),
))

#: Seconds the quick preset may take; its repeats are as many as fit (at least one).
QUICK_BUDGET = QUICK.budget

#: ``--full``: longer windows and more steps, for numbers worth quoting.
FULL = Preset("full", Timing(warmup=2.0, window=8.0), _scenarios(
    fast=Budget((1, 10, 50, 100, 200), warmup=2.0, window=6.0, io_timeout=2.0,
                connect_timeout=2.0),
    slow=Budget((1, 10, 50, 100, 200), warmup=2.0, window=8.0, io_timeout=2.0,
                connect_timeout=2.0),
    cpu=Budget((1, 2, 5, 10, 20), warmup=2.0, window=8.0, io_timeout=3.0, connect_timeout=2.0),
    denial=Budget((5, 10, 20, 50, 100, 200), warmup=2.0, window=10.0, io_timeout=2.0,
                  connect_timeout=1.0),
    # each run's 5 s measured as four windows of 1.25 s, not one of 5 s: with one window a
    # run, a single repeat (--full --repeat 1) gave each model 3 samples, too few for the
    # rank test of two models' ratio, and the verdict fell back to a 20% tolerance
    # (select and reuseport level on 2026-12-02, 15.5 against 18.0 µs, spreads apart)
    capacity=Capacity(connections=10, warmup=2.0, window=1.25, windows=4, pipeline_warmup=1.0,
                      pipeline_window=3.0),
), repeats=3)

def _http_scenarios(keepalive: Budget, slow: Budget, wrk: WrkRun) -> tuple[Scenario, ...]:
    """The HTTP scenarios, over every model and contender (uvicorn, gunicorn): GET / with
    keep-alive, a new connection per request, 16 pipelined, a slow handler, idle
    connections. Where nothing waits, wrk's server CPU per request decides (locust costs
    more per request than a fast server); where requests wait, locust's throughput."""
    def common(budget: Budget) -> dict:
        return {"service": "http", **budget.fields()}

    return (
        Scenario(
            name="plaintext", title="GET / with keep-alive (Hello, World!)",
            description="Each server's own cost per HTTP request over persistent connections: "
                        "server CPU per request under wrk; locust gives the latency at each "
                        "user count.",
            metric="cpu_us_per_request", wrk=wrk, **common(keepalive)),
        Scenario(
            name="connect", title="GET /, a new connection per request (Connection: close)",
            description="Accepting and closing a connection for every request: what a server "
                        "pays per connection on top of the request.",
            metric="cpu_us_per_request", mode="connect", wrk=replace(wrk, close=True),
            **common(keepalive)),
        Scenario(
            name="pipeline", title="GET /, 16 requests pipelined per connection",
            description="Requests written 16 at a time on each connection (wrk's pipeline "
                        "script): a server that parses and answers them in one pass pays "
                        "less per request. Locust does not pipeline: its runs keep one request "
                        "in flight.",
            metric="cpu_us_per_request", wrk=replace(wrk, pipeline=16), **common(keepalive)),
        Scenario(
            name="slow", title="every request waits 0.1 s (--delay 0.1)",
            description="A slow handler: a server that handles one request at a time per "
                        "worker collapses, the concurrent ones overlap their waits.",
            delay=0.1, **common(slow)),
        Scenario(
            name="idle", title="200 idle keep-alive connections beside the users",
            description="Connections that stay open and say nothing (browsers keep them): a "
                        "server with a thread or a process per connection runs out of them, "
                        "an event loop does not notice. wrk's server CPU per request, with "
                        "the 200 held beside its own connections, decides.",
            metric="cpu_us_per_request", idle=200, wrk=replace(wrk, idle=200),
            **common(keepalive)),
    )


#: Seconds ``testbed compare --service http`` may take: its one repeat (about 15 minutes
#: with every model and contender on 2 cores), then the settling rounds of the models wrk's
#: windows left undecided (a side-by-side wrk run of about 20 s for each pair) and the
#: retakes, in what is left.
HTTP_QUICK_BUDGET = 18 * 60.0

#: ``testbed compare --service http``: every model and contender on 2 cores in minutes.
HTTP_QUICK = Preset("http-quick", Timing(warmup=0.2, window=1.0, first_warmup=1.0), _http_scenarios(
    keepalive=Budget((1, 10, 50), warmup=0.2, window=0.8, io_timeout=0.5, first_warmup=1.0),
    slow=Budget((1, 10, 50), warmup=0.2, window=0.8, io_timeout=0.5, first_warmup=1.0),
    # four 1 s windows (wrk counts whole seconds): four samples a model, the fewest with
    # which the rank test can tell two models apart from one repeat (one wrk run gave one
    # sample, and every verdict fell back to the 20% tolerance); two in a row on each of two
    # fresh servers, the second after every model's run, not four on one: the windows of
    # one server agree closely, fresh servers minutes apart do not (select in plaintext:
    # 8.1-8.6, 10.4-10.8 and 11.8-13.4 µs in three comparisons), and four windows of one
    # server made the rank test sure of a gap that the next comparison did not see
    wrk=WrkRun(connections=10, warmup=1.0, window=1.0, windows=2, samples=2),
), budget=HTTP_QUICK_BUDGET)

#: ``testbed compare --service http --full``.
HTTP_FULL = Preset("http-full", Timing(warmup=2.0, window=8.0), _http_scenarios(
    keepalive=Budget((1, 10, 50, 100, 200), warmup=2.0, window=6.0, io_timeout=2.0,
                     connect_timeout=2.0),
    slow=Budget((1, 10, 50, 100, 200), warmup=2.0, window=8.0, io_timeout=2.0,
                connect_timeout=2.0),
    wrk=WrkRun(connections=10, warmup=2.0, window=1.0, windows=5),
), repeats=3)

def _scale(timing: Timing) -> Scenario:
    """The scale scenario: steps of open connections, mostly idle; testbed bench measures
    each step (locust's users cost too much each to hold thousands)."""
    return Scenario(
        name="scale", title="open connections, mostly idle, 10 of them active",
        description="Connections that stay open and mostly say nothing (chat, push "
                    "notifications, IoT): what each one costs the server in memory, threads, "
                    "processes and descriptors, whether the few active clients still get "
                    "fast answers, and at which step and how each design breaks.",
        steps=SCALE_STEPS, metric="connections_held", backlog=SCALE_BACKLOG,
        connect_timeout=3.0, io_timeout=1.0, timing=timing, scale=ScaleRun())


#: The scale scenario runs once per model (no repeats): about 2 minutes over every model.
#: In the quick preset it runs only when named (``--scenarios scale``), so that the quick
#: preset's default run stays within its 6-minute budget; ``--full`` runs it with the rest.
QUICK = replace(QUICK, scenarios=(*QUICK.scenarios, _scale(Timing(warmup=0.5, window=2.0))),
                on_request=("scale",))
FULL = replace(FULL, scenarios=(*FULL.scenarios, _scale(Timing(warmup=1.0, window=4.0))))

PRESETS: dict[str, Preset] = {preset.name: preset
                              for preset in (QUICK, FULL, HTTP_QUICK, HTTP_FULL)}

#: The services a comparison is made for: line services (echo), and http.
SERVICES = ("echo", "http")


def preset(full: bool = False, service: str = "echo") -> Preset:
    if service == "http":
        return HTTP_FULL if full else HTTP_QUICK
    return FULL if full else QUICK


def scenario_names(service: str = "echo") -> list[str]:
    """Every scenario name of a service's comparison (the same in both presets)."""
    return preset(False, service).names()
