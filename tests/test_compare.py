"""`testbed compare` as a user meets it: bad input first, then a real, tiny comparison.

The end-to-end test runs real servers and real locust processes (two models,
two scenarios, steps cut to 1 and 4 users, 1 s windows) and checks that every
file is written and that report.md shows exactly the figures of results.json.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testbed.args import duration
from testbed.compare import contenders
from testbed.compare.command import build_parser as compare_parser
from testbed.compare.plan import ComparisonPlan, PlannedRun, check_keeps_time, make_plan
from testbed.compare.progress import Progress
from testbed.compare.scenarios import (
    FULL,
    HTTP_FULL,
    HTTP_QUICK,
    QUICK,
    QUICK_BUDGET,
    scenario_names,
)
from testbed.stats import ratio_interval
from tests.conftest import MODELS, WITHOUT_UVLOOP, no_traceback, one_line
from tests.test_report import check_markdown_matches_json, md_table, scenario_section


def compare(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", "compare", *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("args", "words"), [
    (["--models", "select,nope"], ["unknown model 'nope'", *MODELS]),
    (["--scenarios", "fast,bogus"], ["unknown scenario 'bogus'", *scenario_names()]),
    (["--run-time", "soon"], ["--run-time", "soon"]),
    (["--steps", "0,5"], ["--steps"]),
    (["--workers", "0"], ["--workers"]),
    # fast steps of 0.3 + 0.6 s: locust sets the user count once a second
    (["--scenarios", "fast", "--run-time", "0.6", "--warmup", "0.3"],
     ["fast scenario", "0.9 s", "1 s or more"]),
])
def test_bad_input_is_one_line_and_status_2(tmp_path, args, words):
    result = compare(*args, "--out", str(tmp_path))
    assert result.returncode == 2
    line = one_line(result.stderr)
    for word in words:
        assert word in line
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing written


@pytest.mark.skipif(not importlib.util.find_spec("uvloop"), reason="uvloop is not installed")
def test_asyncio_on_uvloop_is_a_contender_where_uvloop_is_installed():
    plan = make_plan(compare_parser().parse_args(["--scenarios", "fast"]))
    assert "asyncio+uvloop" in plan.models
    result = compare("--models", "select,asyncio+uvloop", "--list")
    assert result.returncode == 0, result.stderr
    assert "models: select, asyncio+uvloop" in result.stdout
    assert QUICK.get("fast").server_options(*contenders.server_options("asyncio+uvloop"))[
        :4] == ["--model", "asyncio", "--loop", "uvloop"]


def test_asyncio_on_uvloop_is_not_offered_without_uvloop(tmp_path):
    def without_uvloop(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *WITHOUT_UVLOOP, "compare", *args, "--out",
                               str(tmp_path)], capture_output=True, text=True, timeout=60)

    listed = without_uvloop("--list")
    assert listed.returncode == 0, listed.stderr
    assert "asyncio+uvloop" not in listed.stdout and "models: sequential" in listed.stdout
    asked = without_uvloop("--models", "select,asyncio+uvloop")
    assert asked.returncode == 2
    assert "asyncio+uvloop needs uvloop, which is not installed" in one_line(asked.stderr)
    assert list(tmp_path.iterdir()) == []


def test_results_that_cannot_be_written_are_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = compare("--models", "select", "--scenarios", "fast", "--out", str(blocker / "out"))
    assert result.returncode == 1
    assert one_line(result.stderr).startswith(
        f"testbed compare: error: cannot write results in {blocker}")


def test_list_shows_models_scenarios_and_an_estimate():
    result = compare("--list")
    assert result.returncode == 0, result.stderr
    for name in [*MODELS, *scenario_names()]:
        assert name in result.stdout
    assert "about " in result.stdout


def test_plan_runs_every_model_through_every_scenario_one_at_a_time():
    plan = make_plan(compare_parser().parse_args(["--repeat", "1"]))
    everyone = contenders.names()
    assert everyone[:len(MODELS)] == MODELS
    runs = [run for run in plan.runs if not run.sample]  # the bench samples: their own test
    assert [(run.scenario.name, run.model) for run in runs] == [
        (scenario, model) for scenario in QUICK.default_names() for model in everyone]
    assert [run.timing for run in runs[::len(everyone)]] == [
        QUICK.get(name).timing for name in QUICK.default_names()]
    timed = make_plan(compare_parser().parse_args(["--run-time", "3s", "--models", "select"]))
    assert all((run.timing.first, run.timing.window) == (1.0, 3.0) for run in timed.runs)
    even = make_plan(compare_parser().parse_args(["--warmup", "0.5", "--models", "select"]))
    assert all(run.timing.first == run.timing.warmup == 0.5 for run in even.runs)
    full = make_plan(compare_parser().parse_args(["--full", "--run-time", "3s", "--steps",
                                                  "4,1", "--models", "select", "--repeat", "1"]))
    assert all(run.timing.window == 3 for run in full.runs)
    assert [run.timing.warmup for run in full.runs if not run.sample] == [
        FULL.get(name).timing.warmup for name in scenario_names()]
    assert all(run.scenario.steps == (1, 4) for run in full.runs)


def test_repeats_rotate_the_models_order():
    """--repeat 3: each scenario's repeats follow one another, each starting one model
    later, so that a drifting machine hits every model alike."""
    plan = make_plan(compare_parser().parse_args(["--repeat", "3", "--models",
                                                  "select,threading,asyncio", "--scenarios",
                                                  "slow-io,cpu"]))
    assert plan.repeats == 3 and not plan.repeats_from_budget
    order = [(run.scenario.name, run.repeat, run.model) for run in plan.runs]
    assert order[:9] == [("slow-io", 0, "select"), ("slow-io", 0, "threading"),
                         ("slow-io", 0, "asyncio"), ("slow-io", 1, "threading"),
                         ("slow-io", 1, "asyncio"), ("slow-io", 1, "select"),
                         ("slow-io", 2, "asyncio"), ("slow-io", 2, "select"),
                         ("slow-io", 2, "threading")]
    assert [name for name, _, _ in order[9:]] == ["cpu"] * 9


def test_progress_tells_the_step_from_the_time_spent():
    """Without a message from the run, the step shown comes from the schedule: quick fast
    is 1 s warm-up + 0.8 s, then 0.2 + 0.8 s per later step."""
    plan = make_plan(compare_parser().parse_args(["--models", "select", "--scenarios", "fast",
                                                  "--repeat", "1"]))
    progress = Progress(plan, stream=io.StringIO())
    progress.begin(0)
    progress.overheads = [0.0]
    for spent, shown in ((0.5, "step 1/3 (1 user)"), (2.1, "step 2/3 (10 users)"),
                         (3.0, "step 3/3 (50 users)"), (60.0, "step 3/3 (50 users)")):
        progress.run_started = time.monotonic() - spent
        assert shown in progress.line(), (spent, progress.line())


@pytest.mark.parametrize("preset", [QUICK, FULL], ids=["quick", "full"])
def test_every_attempt_is_bounded(preset):
    """A window is closed once its attempts have ended, so every attempt must end: each
    scenario bounds it with its timeouts (the drain of the last window is planned for)."""
    for name in preset.names():
        scenario = preset.get(name)
        assert 0 < scenario.longest_attempt <= 5.0, name
    plan = make_plan(compare_parser().parse_args(["--models", "select", "--repeat", "1"]))
    for run in plan.runs:
        if run.sample:  # a bench sample alone: no locust window to drain
            continue
        assert run.step_seconds() >= (run.timing.seconds(len(run.scenario.steps))
                                      + run.scenario.longest_attempt)


@pytest.mark.parametrize("preset", [QUICK, FULL, HTTP_QUICK, HTTP_FULL],
                         ids=["quick", "full", "http-quick", "http-full"])
def test_users_of_a_delay_scenario_begin_spread_over_one_delay(preset, tmp_path):
    """Where the server waits a delay per request, the users' first requests are spread
    over that delay (``--start-jitter``), within every warm-up, so that users started
    together do not run in step; elsewhere (no delay, or open-loop arrivals) they start
    at once."""
    from testbed.compare.runs import load_spec

    plan = make_plan(compare_parser().parse_args(["--models", "select", "--repeat", "1"]))
    for name in preset.names():
        scenario = preset.get(name)
        # slow-io and slow wait 0.1 s a request; denial's 0.5 s delay meets open-loop
        # arrivals, which have no phase to spread
        assert scenario.start_jitter == {"slow-io": 0.1, "slow": 0.1}.get(name, 0.0), name
    checked = 0
    for run in plan.runs:
        if run.sample or run.scenario.scale is not None:
            continue
        spec = load_spec(plan, run, tmp_path)
        assert spec.start_jitter == min(run.scenario.start_jitter,
                                        spec.schedule.shortest_warmup), run.scenario.name
        checked += spec.start_jitter > 0
    assert checked >= 1  # slow-io


@pytest.mark.parametrize("preset", [QUICK, FULL], ids=["quick", "full"])
def test_one_repeat_of_either_preset_lets_the_rank_test_decide(preset):
    """Where the bench's CPU per request decides, one repeat (``--repeat 1``) gives each
    model enough windows for the interval of two models' ratio: with fewer, the verdict
    can only fall back to a tolerance, and calls models 15% apart level."""
    for name in preset.names():
        capacity = preset.get(name).capacity
        if capacity is None:
            continue
        windows = capacity.samples * capacity.windows
        a, b = [10.0 + i for i in range(windows)], [20.0 + i for i in range(windows)]
        interval = ratio_interval(a, b)
        assert interval is not None and interval[0] > 1, (name, windows, interval)


@pytest.mark.parametrize("preset", [QUICK, FULL, HTTP_QUICK, HTTP_FULL],
                         ids=["quick", "full", "http-quick", "http-full"])
def test_every_step_of_every_preset_can_begin_on_time(preset):
    """locust sets the user count once a second: closed-loop steps of 1 s or more begin on
    time (the quick fast scenario's steps of 0.6 s saw their users up to a second late, so
    its 50-user window ran 10 users). Arrivals keep their own time."""
    for name in preset.names():
        check_keeps_time(preset.get(name))  # LookupError for a step too short


def test_quick_preset_repeats_as_its_budget_allows():
    """The quick preset's estimate, with every contender, stays within its 6-minute budget,
    and the budget chooses the repeats: more of them when fewer models are compared."""
    everyone = make_plan(compare_parser().parse_args([]))
    assert everyone.repeats_from_budget and everyone.repeats >= 1
    assert everyone.estimate() <= QUICK_BUDGET or everyone.repeats == 1
    two = make_plan(compare_parser().parse_args(["--models", "select,threading"]))
    assert two.repeats > everyone.repeats or two.repeats == 3
    assert two.estimate() <= QUICK_BUDGET
    short = make_plan(compare_parser().parse_args(["--models", "select,threading",
                                                   "--budget", "10s"]))
    assert short.repeats == 1  # never fewer than one
    assert all(QUICK.get(name).timing.first == 1.0 for name in QUICK.default_names())
    assert duration("1.5s") == 1.5 and duration("1m") == 60 and duration("2") == 2


def test_scenarios_are_the_documented_ones():
    fast, slow, cpu, denial = (QUICK.get(name) for name in ("fast", "slow-io", "cpu", "denial"))
    assert (fast.mode, fast.payload_size, fast.steps) == ("persistent", 64, (1, 10, 50))
    assert fast.metric == "cpu_us_per_request" and fast.capacity is not None
    assert "--delay 0.1" in slow.server_summary() and slow.steps == (1, 10, 50)
    assert "--work-ms 5" in cpu.server_summary() and cpu.steps == (1, 10)
    assert denial.mode == "arrivals" and denial.metric == "served_share"
    assert denial.unit == "conn/s" and denial.steps == (10, 40, 100)
    assert "--backlog 1" in denial.server_summary() and "--delay 0.5" in denial.server_summary()
    assert denial.connect_timeout <= 2 and denial.io_timeout <= 2  # every attempt bounded
    assert fast.server_options("select")[:2] == ["--model", "select"]


def run_tiny(tmp_path: Path, models: list[str], scenarios: list[str], steps: str,
             timeout: float, repeat: int = 1) -> tuple[subprocess.CompletedProcess, Path, dict]:
    """A real comparison with tiny steps; returns the result, its directory and results.json.

    Run from tmp_path with the default, relative ``--out results``, as tox runs it.
    """
    result = subprocess.run([sys.executable, "-m", "testbed", "compare",
                             "--models", ",".join(models), "--scenarios", ",".join(scenarios),
                             "--steps", steps, "--run-time", "0.7", "--warmup", "0.3",
                             "--workers", "1", "--repeat", str(repeat)], cwd=tmp_path,
                            capture_output=True, text=True,
                            timeout=timeout)
    tmp_path = tmp_path / "results"
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    [out] = list(tmp_path.iterdir())
    assert out.name.startswith("compare-")
    return result, out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def check_tiny(result: subprocess.CompletedProcess, out: Path, doc: dict, models: list[str],
               scenarios: list[str], steps: list[int]) -> None:
    """Every file is there and report.md shows exactly the figures of results.json."""
    names = {path.name for path in out.iterdir()}
    assert {"results.json", "results.csv", "report.md", "report.html"} <= names
    assert {f"{s}-{k}.png" for s in scenarios for k in ("throughput", "p99", "served")} <= names
    assert doc["metadata"]["models"] == models
    assert doc["metadata"]["machine"]["cores"] >= 1 and doc["metadata"]["versions"]["locust"]
    assert [(r["scenario"], r["model"], r["status"]) for r in doc["runs"]] == [
        (scenario, model, "ok") for scenario in scenarios for model in models]
    for record in doc["runs"]:
        measured = record["summary"]["steps"]
        assert [s["users"] for s in measured] == steps
        assert all(s["served"] > 0 for s in measured)

    text = (out / "report.md").read_text(encoding="utf-8")
    assert check_markdown_matches_json(text, doc) >= 10 * len(models) * len(scenarios)
    for scenario in scenarios:
        table = md_table(scenario_section(text, scenario), f"### At {max(steps)} users")
        assert [row["model"] for row in table] == models
    rows = list(csv.DictReader((out / "results.csv").open(encoding="utf-8")))
    assert len(rows) == len(models) * len(scenarios) * len(steps)
    assert all(row["generator_bound"] in ("true", "false") and row["cpu_s"] for row in rows)
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    # the terminal: a table per scenario and its verdict
    for scenario in scenarios:
        assert f"{scenario} at {max(steps)} users" in result.stdout
    assert result.stdout.count("=> ") == len(scenarios)


@pytest.mark.slow
def test_small_comparison_writes_every_file_and_report_matches_json(tmp_path):
    """The default suite's variant: two models, one scenario, one step (about 15 s)."""
    models, scenarios = ["select", "threading"], ["slow-io"]
    result, out, doc = run_tiny(tmp_path, models, scenarios, "3", timeout=28)
    check_tiny(result, out, doc, models, scenarios, [3])


def test_the_models_order_rotates_from_one_repeat_to_the_next():
    """Drift during a comparison hits every model alike: each repeat starts one model later."""
    from testbed.compare.plan import runs_in_order

    plan = make_plan(compare_parser().parse_args(["--models", "select,threading,forking",
                                                  "--scenarios", "slow-io,cpu", "--repeat", "3"]))
    order = [(run.scenario.name, run.repeat, run.model)
             for run in runs_in_order(plan.scenarios, plan.models, 3)]
    assert order[:9] == [("slow-io", 0, "select"), ("slow-io", 0, "threading"),
                         ("slow-io", 0, "forking"), ("slow-io", 1, "threading"),
                         ("slow-io", 1, "forking"), ("slow-io", 1, "select"),
                         ("slow-io", 2, "forking"), ("slow-io", 2, "select"),
                         ("slow-io", 2, "threading")]
    assert [run.scenario.name for run in plan.runs] == ["slow-io"] * 9 + ["cpu"] * 9


def test_a_client_left_queued_fails_in_every_window_of_persistent_load():
    """A persistent client that a pool leaves queued fails once per I/O timeout; a window
    longer than the timeout sees each such client start a failing attempt, so a model that
    leaves clients waiting shows it in every run, not in some."""
    for chosen in (QUICK, FULL):
        for scenario in chosen.scenarios:
            if scenario.mode == "persistent" and scenario.scale is None:
                assert scenario.timing is not None
                assert scenario.timing.window > scenario.io_timeout, (chosen.name, scenario.name)


def test_the_bench_samples_after_the_first_are_rounds_over_every_model():
    """fast's bench takes its first run in each model's run and the others in rounds over
    every model afterwards (rotated), so that each model's samples span the scenario; each
    run measures its windows in a row (testbed bench --windows)."""
    plan = make_plan(compare_parser().parse_args(["--models", "select,threading,forking",
                                                  "--scenarios", "fast", "--repeat", "2"]))
    capacity = plan.scenarios[0].capacity
    assert capacity is not None and (capacity.samples, capacity.windows) == (3, 4)
    assert capacity.options()[-2:] == ["--windows", "4"]
    assert [(run.model, run.repeat, run.sample) for run in plan.runs] == [
        ("select", 0, 0), ("threading", 0, 0), ("forking", 0, 0),
        ("threading", 0, 1), ("forking", 0, 1), ("select", 0, 1),
        ("forking", 0, 2), ("select", 0, 2), ("threading", 0, 2),
        ("threading", 1, 0), ("forking", 1, 0), ("select", 1, 0),
        ("forking", 1, 1), ("select", 1, 1), ("threading", 1, 1),
        ("select", 1, 2), ("threading", 1, 2), ("forking", 1, 2)]


def test_the_windows_of_every_run_fold_into_one_median_with_every_window():
    """Two bench runs of two windows each: the capacity is the median window of the four
    (the lower middle one), and its samples are the four windows in the order measured."""
    from testbed.compare.runs import fold_samples

    def window(cpu: float) -> dict:
        return {"ok": True, "rps": 1e6 / cpu, "command": f"window {cpu}",
                "server": {"cpu_us_per_request": cpu, "cores_busy": 1.0}}

    def bench_run(*cpus: float) -> dict:
        return {**window(cpus[0]), "windows": [window(cpu) for cpu in cpus]}

    first = {**bench_run(20.0, 11.0), "samples": [], "pipelines": [{"pipeline": 16}]}
    records = [{"model": "select", "scenario": "fast", "repeat": 0, "status": "ok",
                "capacity": first},
               {"model": "select", "scenario": "fast", "repeat": 0, "sample": 1,
                "bench": bench_run(14.0, 16.0), "status": "ok"}]
    [folded] = fold_samples(records)
    capacity = folded["capacity"]
    assert capacity["command"] == "window 14.0" and "windows" not in capacity
    assert [s["server_cpu_us_per_request"] for s in capacity["samples"]] == [20.0, 11.0,
                                                                             14.0, 16.0]
    assert capacity["pipelines"] == [{"pipeline": 16}]


def test_the_samples_fold_into_their_run_as_the_median_with_every_sample():
    from testbed.compare.runs import fold_samples

    def bench(cpu: float) -> dict:
        return {"ok": True, "rps": 1e6 / cpu, "limit": "server", "command": f"bench {cpu}",
                "server": {"cpu_us_per_request": cpu, "cores_busy": 1.0}}

    first = {**bench(20.0), "samples": [{"cpu_us_per_request": 20.0}],
             "pipelines": [{"pipeline": 1}, {"pipeline": 4}]}
    records = [{"model": "select", "scenario": "fast", "repeat": 0, "status": "ok",
                "capacity": first},
               {"model": "select", "scenario": "fast", "repeat": 0, "sample": 1,
                "bench": bench(12.0), "status": "ok"},
               {"model": "select", "scenario": "fast", "repeat": 0, "sample": 2,
                "bench": bench(15.0), "status": "ok"}]
    [folded] = fold_samples(records)
    capacity = folded["capacity"]
    assert capacity["command"] == "bench 15.0"  # the median of 20, 12 and 15
    assert [sample["server_cpu_us_per_request"] for sample in capacity["samples"]] == [
        20.0, 12.0, 15.0]
    assert capacity["pipelines"] == first["pipelines"]


def test_repeats_give_every_cell_a_spread_and_the_report_rebuilds_from_json(tmp_path):
    """--repeat 2 on two models: results.json keeps both repeats of every cell, the second
    repeat starting with the other model, every figure of the summary table carries its
    spread, and testbed report rebuilds the very same report from results.json alone."""
    models = ["select", "threading"]
    result, out, doc = run_tiny(tmp_path, models, ["slow-io"], "3", timeout=28, repeat=2)
    assert doc["metadata"]["repeats"] == 2
    assert [(r["model"], r["repeat"]) for r in doc["runs"]] == [
        ("select", 0), ("threading", 0), ("threading", 1), ("select", 1)]
    text = (out / "report.md").read_text(encoding="utf-8")
    rows = md_table(scenario_section(text, "slow-io"), "### At 3 users")
    assert [row["model"] for row in rows] == models
    for row in rows:
        for header, shown in row.items():
            if header != "model" and shown != "–":
                assert re.fullmatch(r"\S+ \(\S+–\S+\)", shown.replace("**", "")), (header, shown)
    # the hypervisor's share of the CPU time, over the comparison and over each run: on
    # Linux it is counted (0 on bare metal), a share of the time that passed
    if sys.platform == "linux":
        shares = [doc["metadata"]["host_steal"], *(r["host_steal"] for r in doc["runs"])]
        assert all(isinstance(v, float) and 0 <= v < 1 for v in shares), shares
        assert "Host steal" in text
    (out / "report.md").unlink()
    rebuilt = subprocess.run([sys.executable, "-m", "testbed", "report", "--quiet",
                              str(out / "results.json")], capture_output=True, text=True,
                             timeout=60)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (out / "report.md").read_text(encoding="utf-8") == text


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_tiny_comparison_two_models_two_scenarios(tmp_path):
    models, scenarios = ["select", "threading"], ["fast", "slow-io"]
    result, out, doc = run_tiny(tmp_path, models, scenarios, "1,4", timeout=170)
    check_tiny(result, out, doc, models, scenarios, [1, 4])


def test_a_run_that_cannot_run_becomes_a_crashed_record(tmp_path):
    """run_load refusing a run is that cell's result, not the end of the comparison."""
    from dataclasses import replace

    from testbed.compare.runs import run_one

    plan = make_plan(compare_parser().parse_args(["--models", "select", "--scenarios", "fast"]))
    broken = replace(plan.runs[0], scenario=replace(plan.runs[0].scenario,
                                                    extra_server_options=("--bogus",)))
    record = run_one(plan, broken, tmp_path, lambda message: None)
    assert record["status"] == "crashed" and record["summary"] is None
    assert "--bogus" in record["error"] and "\n" not in record["error"]
    assert (record["model"], record["scenario"]) == ("select", "fast")


def side_by_side(plan: ComparisonPlan, paired: PlannedRun, tmp_path: Path) -> dict:
    """Run a settling round's side-by-side run (select against threading) and check what
    every such run must do: both servers measured, both reaped, its file kept."""
    import psutil

    from testbed.compare.runs import run_one

    record = run_one(plan, paired, tmp_path, lambda message: None)
    assert record["status"] == "ok", record["error"]
    pids = {record[key]["server"]["pid"] for key in ("bench", "versus_bench")}
    assert len(pids) == 2 and not any(psutil.pid_exists(pid) for pid in pids)  # both reaped
    assert (tmp_path / f"{paired.scenario.name}-select" / "versus-threading-1.json").is_file()
    return record


def test_a_settling_round_benches_two_models_side_by_side(tmp_path):
    """A settling round's run starts both models' servers, benches them in one run whose
    windows alternate, stops both, and folds each side's windows into its own model's
    figures, with the pairs in each model's record."""
    from dataclasses import replace

    from testbed.compare.plan import PlannedRun
    from testbed.compare.runs import fold_samples

    plan = make_plan(compare_parser().parse_args(["--models", "select,threading",
                                                  "--scenarios", "fast", "--repeat", "1"]))
    scenario = plan.runs[0].scenario
    scenario = replace(scenario, capacity=replace(scenario.capacity, warmup=0.1, window=0.2,
                                                  versus_windows=6))
    paired = PlannedRun("select", scenario, sample=3, settling=1, versus="threading")
    record = side_by_side(plan, paired, tmp_path)
    assert len(record["pairs"]) == 6
    assert [pair[1] for pair in record["pairs"]] == [
        window["server"]["cpu_us_per_request"] for window in record["versus_bench"]["windows"]]
    first = [{"model": model, "scenario": "fast", "repeat": 0, "status": "ok",
              "capacity": record[key]} for model, key in (("select", "bench"),
                                                          ("threading", "versus_bench"))]
    folded = {found["model"]: found["capacity"] for found in fold_samples([*first, record])}
    assert [len(folded[model]["samples"]) for model in ("select", "threading")] == [12, 12]
    assert folded["select"]["paired"] == {"threading": record["pairs"]}
    assert folded["threading"]["paired"] == {"select": [[b, a] for a, b in record["pairs"]]}
    assert folded["select"]["settling_runs"] == folded["threading"]["settling_runs"] == 1


def test_settling_rounds_follow_the_runs_while_models_are_undecided():
    """Once every planned run is done and the fast scenario's runs leave a model undecided
    against the winner, the comparison benches the two once more side by side, up to two
    rounds, and only as many as its budget allows."""
    from testbed.compare.settle import MAX_ROUNDS, settling_runs
    from tests.test_report import run as crafted_run
    from tests.test_report import sampled, step

    plan = make_plan(compare_parser().parse_args(["--models", "select,asyncio,forking",
                                                  "--scenarios", "fast,slow-io",
                                                  "--repeat", "1"]))
    cpus = {"select": [15.0, 15.1, 15.2, 15.3, 15.4, 15.5],
            "asyncio": [13.0, 15.0, 18.5, 19.5, 22.0, 30.0],  # undecided against select
            "forking": [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]}
    records = [crafted_run(model, "fast", [step(1, 1000, 1), step(50, 4000, 20)],
                           capacity=sampled(values)) for model, values in cpus.items()]
    last_fast = max(index for index, planned in enumerate(plan.runs)
                    if planned.scenario.name == "fast")
    assert last_fast < len(plan.runs) - 1
    assert settling_runs(plan, last_fast, records, 0.0, 1.0) == []  # slow-io still to run
    end = len(plan.runs) - 1
    extra = settling_runs(plan, end, records, 0.0, 1.0)
    assert [(planned.model, planned.versus, planned.scenario.name, planned.settling)
            for planned in extra] == [("select", "asyncio", "fast", 1)]
    samples = extra[0].scenario.capacity.samples
    assert {planned.sample for planned in extra} == {samples}
    plan.runs += extra
    again = settling_runs(plan, len(plan.runs) - 1, records, 0.0, 1.0)
    assert [planned.settling for planned in again] == [2]
    plan.runs += again
    assert settling_runs(plan, len(plan.runs) - 1, records, 0.0, 1.0) == []
    assert MAX_ROUNDS == 2
    plan.runs = plan.runs[:end + 1]
    one_run = extra[0].planned_seconds(1.0)
    plan.budget = 100.0  # 30 s of it kept for what is not a run
    assert len(settling_runs(plan, end, records, 70.0 - one_run, 1.0)) == 1
    assert settling_runs(plan, end, records, 70.0 - 0.9 * one_run, 1.0) == []  # none fits


def test_the_first_settling_round_comes_before_the_retakes_the_second_after():
    """After the planned runs: a settling round of the models left undecided, then the
    retakes of the disturbed runs, then a second round; where the budget holds only one
    more thing, it is the first round (two bench runs that decide a verdict)."""
    from testbed.compare.afterwards import runs_after
    from tests.test_report import run as crafted_run
    from tests.test_report import sampled, step

    plan = make_plan(compare_parser().parse_args(["--models", "select,asyncio,forking",
                                                  "--scenarios", "fast,cpu", "--repeat", "1"]))
    cpus = {"select": [15.0, 15.1, 15.2, 15.3, 15.4, 15.5],
            "asyncio": [13.0, 15.0, 18.5, 19.5, 22.0, 30.0],  # undecided against select
            "forking": [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]}
    records = [crafted_run(model, "fast", [step(1, 1000, 1), step(50, 4000, 20)],
                           capacity=sampled(values)) for model, values in cpus.items()]
    top = max(next(scenario for scenario in plan.scenarios if scenario.name == "cpu").steps)
    records += [_stolen(crafted_run(model, "cpu", [step(1, 180, 6), step(top, rps, 60)]), top,
                        share)
                for model, rps, share in [("select", 180, 0.02), ("asyncio", 90, 0.40),
                                          ("forking", 360, 0.01)]]
    end = len(plan.runs) - 1
    assert runs_after(plan, end - 1, records, 0.0, 1.0) == []  # runs still to come
    taken = []
    while extra := runs_after(plan, len(plan.runs) - 1, records, 0.0, 1.0):
        taken.append(extra)
        plan.runs += extra
    assert [[(p.model, p.scenario.name, p.settling, p.retake) for p in extra]
            for extra in taken] == [[("select", "fast", 1, 0)],
                                    [("asyncio", "cpu", 0, 1)],
                                    [("select", "fast", 2, 0)]]
    assert {p.versus for extra in taken for p in extra if p.settling} == {"asyncio"}

    plan.runs = plan.runs[:end + 1]
    plan.budget = 100.0  # 30 s of it kept for what is not a run
    round_cost = sum(p.planned_seconds(1.0) for p in taken[0])
    retake_cost = taken[1][0].planned_seconds(1.0)
    room = max(round_cost, retake_cost) + 0.1  # either alone fits; not both
    assert room < round_cost + retake_cost
    first = runs_after(plan, end, records, 70.0 - room, 1.0)
    assert [p.settling for p in first] == [1]  # the round, not the retake


def _stolen(record: dict, top: int, share: float) -> dict:
    """``record`` with the host's share of the CPU time in its top step set to ``share``."""
    for found in record["summary"]["steps"]:
        found["host_steal"] = share if found["users"] == top else 0.01
    return record


def test_runs_the_host_disturbed_are_retaken_the_calmer_kept(tmp_path):
    """Once every planned run is done, a run whose top step was measured while the host
    took 10% or more of the CPU time is run once more (the most disturbed first, only as
    many as the budget allows); the report then reads the calmer of the two, and names
    the one set aside with the steal of both."""
    from testbed.compare.retake import RETAKE_STEAL, fold_retakes, retakes
    from testbed.reporting import write_report
    from testbed.reporting.data import parse
    from tests.test_report import run as crafted_run
    from tests.test_report import step, write

    plan = make_plan(compare_parser().parse_args(["--models", "forking,threading,threadpool",
                                                  "--scenarios", "cpu", "--repeat", "1"]))
    top = max(plan.scenarios[0].steps)
    records = [_stolen(crafted_run(model, "cpu", [step(1, 180, 6), step(top, rps, 60)]), top,
                       share)
               for model, rps, share in [("forking", 360, 0.02), ("threading", 170, 0.20),
                                         ("threadpool", 84, 0.51)]]
    assert RETAKE_STEAL == 0.10
    end = len(plan.runs) - 1
    assert retakes(plan, end - 1, records, 0.0, 1.0) == []  # runs still to come
    extra = retakes(plan, end, records, 0.0, 1.0)
    assert [(planned.model, planned.retake) for planned in extra] == [
        ("threadpool", 1), ("threading", 1)]  # the most disturbed first; forking was calm
    plan.runs += extra
    assert retakes(plan, len(plan.runs) - 1, records, 0.0, 1.0) == []  # once, not again
    plan.runs = plan.runs[:end + 1]
    plan.budget = 100.0  # 30 s of it kept for what is not a run
    one_run = extra[0].planned_seconds(1.0)
    assert [p.model for p in retakes(plan, end, records, 70.0 - 1.5 * one_run, 1.0)] == [
        "threadpool"]

    again = [_stolen(crafted_run("threadpool", "cpu", [step(1, 180, 6), step(top, 180, 60)]),
                     top, 0.02),
             _stolen(crafted_run("threading", "cpu", [step(1, 180, 6), step(top, 150, 60)]),
                     top, 0.30)]
    for record in again:
        record["retake"] = 1
    folded = fold_retakes(plan, records + again)
    assert [r["model"] for r in folded] == ["forking", "threading", "threadpool"]
    kept = {r["model"]: r for r in folded}
    assert kept["threadpool"]["summary"]["steps"][-1]["rps"] == 180  # the calm retake
    assert kept["threadpool"]["set_aside"][0]["top_host_steal"] == 0.51
    assert kept["threading"]["summary"]["steps"][-1]["rps"] == 170  # its retake was worse
    assert kept["threading"]["set_aside"][0]["top_host_steal"] == 0.30
    assert "set_aside" not in kept["forking"]

    from datetime import datetime

    from testbed.compare.runs import results_document
    document = results_document(plan, folded, [], datetime.now().astimezone(), 1.0, False)
    results = parse(document)
    assert results.run("threadpool", "cpu").set_aside == (0.51,)
    text = write_report(write(tmp_path, document)).markdown.read_text(encoding="utf-8")
    assert ("retaken: the host took 10% or more of the machine's CPU time in these runs' top "
            "step" in text), text
    assert "threading (30% → 20%), threadpool (51% → 2%)" in text, text
