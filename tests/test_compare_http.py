"""`testbed compare --service http`: the HTTP scenarios over the models and the production
servers (uvicorn, gunicorn), wrk measuring capacity; the line comparison is left as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servers.apps.launch import CONTENDERS
from testbed.compare.command import build_parser as compare_parser
from testbed.compare.plan import make_plan
from testbed.compare.scenarios import HTTP_QUICK, QUICK, scenario_names
from tests.conftest import MODELS, no_traceback, one_line, require_module, require_tool


def compare(*args: str, timeout: float = 60, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "testbed", "compare", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def test_the_http_comparison_has_its_own_scenarios_and_the_production_servers():
    require_module("uvicorn")
    require_module("gunicorn")
    assert scenario_names("http") == ["plaintext", "connect", "pipeline", "slow", "idle"]
    assert scenario_names() == QUICK.names()  # the line comparison's own, unchanged
    pipeline = HTTP_QUICK.get("pipeline")
    assert pipeline.wrk is not None and pipeline.wrk.options()[-2:] == ["--pipeline", "16"]
    assert HTTP_QUICK.get("slow").delay == 0.1 and HTTP_QUICK.get("idle").idle == 200
    result = compare("--service", "http", "--list")
    assert result.returncode == 0, result.stderr
    models = result.stdout.splitlines()[0]
    assert all(name in models for name in [*MODELS, *CONTENDERS])


def test_the_production_servers_are_http_contenders_only(tmp_path):
    result = compare("--models", "select,gunicorn-sync", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "unknown model 'gunicorn-sync'" in one_line(result.stderr)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow  # about 15 s: locust and wrk over a model and a production server
def test_a_tiny_http_comparison_measures_a_model_and_a_production_server(tmp_path):
    require_tool("wrk")
    require_module("gunicorn")
    models = ["select", "gunicorn-gthread"]
    result = compare("--service", "http", "--models", ",".join(models), "--scenarios",
                     "plaintext", "--steps", "2", "--run-time", "0.5", "--workers", "1",
                     "--repeat", "1", cwd=tmp_path, timeout=28)
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    [out] = list((tmp_path / "results").iterdir())
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [(r["model"], r["status"]) for r in doc["runs"]] == [(m, "ok") for m in models]
    for record in doc["runs"]:
        assert record["summary"]["steps"][0]["served"] > 0
        capacity = record["capacity"]
        assert capacity["generator"] == "wrk" and capacity["ok"], capacity
        assert capacity["error_count"] == 0 and capacity["non_2xx_3xx"] == 0
        assert capacity["server"]["cpu_us_per_request"] > 0
        # the preset's wrk windows on each of its fresh servers: samples enough for the
        # verdict's rank test, from servers started minutes apart, not from one
        wrk = HTTP_QUICK.get("plaintext").wrk
        assert len(capacity["samples"]) == wrk.windows * wrk.samples >= 4 and wrk.samples > 1
        assert all(sample["server_cpu_us_per_request"] > 0 for sample in capacity["samples"])
        folder = Path(record["out_dir"])
        servers = {json.loads((folder / f"{name}.json").read_text(encoding="utf-8"))["server"]["pid"]
                   for name in ("wrk", *(f"wrk-{k + 1}" for k in range(1, wrk.samples)))}
        assert len(servers) == wrk.samples  # each on a server of its own
    assert "under testbed wrk" in result.stdout and "plaintext at 2 users" in result.stdout
    assert (out / "plaintext-cpu.png").exists()


@pytest.mark.parametrize("name", ["uvicorn-uvloop"])
def test_a_missing_production_server_is_one_line(tmp_path, name):
    result = subprocess.run(
        [sys.executable, "-c", "import runpy, sys; sys.modules['uvicorn'] = None; "
         "runpy.run_module('testbed', run_name='__main__', alter_sys=True)",
         "compare", "--service", "http", "--models", name, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"{name} needs uvicorn, which is not installed" in one_line(result.stderr)


@pytest.mark.slow  # 10 s: locust and wrk over HTTP with 200 idle connections
def test_a_server_whose_queue_the_idle_connections_fill_is_measured_not_crashed(tmp_path):
    """sequential holds one of the idle scenario's keep-alive connections and leaves the rest
    in its queue: locust's users and wrk then get no reply, which is the figure to report
    (the verdict ranks it last: tests/test_report.py), not a run that could not start; the
    server's own figures are sampled as for any model."""
    require_tool("wrk")
    # a window longer than an attempt (0.5 s to connect, 0.5 s for the reply) sees some end
    result = compare("--service", "http", "--models", "sequential", "--scenarios", "idle",
                     "--steps", "2", "--run-time", "1.5", "--warmup", "0.2", "--workers", "1",
                     "--repeat", "1", cwd=tmp_path, timeout=28)
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    [out] = list((tmp_path / "results").iterdir())
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    [record] = doc["runs"]
    assert record["capacity"]["rps"] == 0 and record["capacity"]["idle"]["opened"] == 200
    assert "windows" not in record["capacity"]  # the first window without a reply ended them
    # ... and a fresh server would only make wrk wait as long again: no second sample
    assert not (Path(record["out_dir"]) / "wrk-2.json").exists()
    assert "no reply under testbed wrk (0 req/s)" in result.stdout
    assert record["status"] == "ok", record["error"]
    [step] = record["summary"]["steps"]
    assert step["served"] == 0 and sum(step["failures"].values()) > 0
    # one connection accepted, the other 199 idle ones and the users wait in its listen queue
    assert step["server"]["peak_threads"] == 1 and step["server"]["peak_fds"] < 20


def test_an_http_settling_round_measures_two_servers_side_by_side_under_wrk(tmp_path):
    """In the HTTP comparison, where wrk's server CPU per request decides, a settling
    round's run starts both servers, runs testbed wrk --versus on them, stops both, and
    keeps each side's windows and their pairs, as the bench's round does."""
    from dataclasses import replace

    from testbed.compare.plan import PlannedRun
    from tests.test_compare import side_by_side

    require_tool("wrk")
    plan = make_plan(compare_parser().parse_args(["--service", "http", "--models",
                                                  "select,threading", "--scenarios",
                                                  "plaintext", "--repeat", "1"]))
    scenario = plan.runs[0].scenario
    scenario = replace(scenario, wrk=replace(scenario.wrk, warmup=0, versus_windows=3))
    paired = PlannedRun("select", scenario, sample=2, settling=1, versus="threading")
    record = side_by_side(plan, paired, tmp_path)
    assert record["bench"]["generator"] == "wrk" and len(record["pairs"]) == 3
    assert [pair[0] for pair in record["pairs"]] == [
        window["server"]["cpu_us_per_request"] for window in record["bench"]["windows"]]


def test_wrk_decided_scenarios_take_settling_rounds_too():
    """The HTTP comparison's scenarios that wrk's CPU per request decides take settling
    rounds as the bench's do (a wrk run side by side for each undecided pair), within its
    own budget, which leaves room for them after its one repeat."""
    from testbed.compare.settle import settling_runs
    from tests.test_report import run as crafted_run
    from tests.test_report import sampled, step

    plan = make_plan(compare_parser().parse_args(["--service", "http", "--models",
                                                  "select,asyncio,forking", "--scenarios",
                                                  "plaintext"]))
    cpus = {"select": [15.0, 15.1, 15.2, 15.3],
            "asyncio": [14.0, 16.0, 19.5, 30.0],  # undecided against select
            "forking": [40.0, 41.0, 42.0, 43.0]}
    records = [crafted_run(model, "plaintext", [step(1, 1000, 1), step(50, 4000, 20)],
                           capacity=sampled(values)) for model, values in cpus.items()]
    extra = settling_runs(plan, len(plan.runs) - 1, records, plan.estimate(), 1.0)
    assert [(planned.model, planned.versus, planned.settling) for planned in extra] == [
        ("select", "asyncio", 1)]
    assert extra[0].sample == extra[0].scenario.capacity_samples == 2
    assert 15 < extra[0].planned_seconds(1.0) < 40  # two servers, 2 x 8 windows of 1 s
    require_module("uvicorn")
    require_module("gunicorn")
    everything = make_plan(compare_parser().parse_args(["--service", "http"]))
    assert everything.repeats == 1 and everything.budget is not None
    assert everything.budget - everything.estimate() > 90  # room for rounds after the runs


def test_last_samples_not_worth_taking_are_dropped_before_the_settling_round():
    """The HTTP comparison ends with idle's second wrk samples, and a server the idle
    connections block (sequential) gets none. They are dropped as soon as its first run
    shows it, so that the last run taken is the plan's last and the settling round still
    follows it: dropped only when reached, they ended a comparison with 14 pairs left
    undecided and no round taken (2026-12-03 10:43)."""
    from testbed.compare.runs import drop_unneeded_samples
    from testbed.compare.settle import settling_runs
    from tests.test_report import bench, sampled, step
    from tests.test_report import run as crafted_run

    plan = make_plan(compare_parser().parse_args(["--service", "http", "--models",
                                                  "sequential,select,asyncio", "--scenarios",
                                                  "idle", "--repeat", "1"]))
    assert [(planned.model, planned.sample) for planned in plan.runs] == [
        ("sequential", 0), ("select", 0), ("asyncio", 0),
        ("select", 1), ("asyncio", 1), ("sequential", 1)]
    steps = [step(1, 1000, 1), step(50, 4000, 20)]
    records = [crafted_run("sequential", "idle", steps, capacity=bench(50.0, 0.0, served=0)),
               crafted_run("select", "idle", steps, capacity=sampled([15.0, 15.1, 15.2, 15.3])),
               crafted_run("asyncio", "idle", steps,
                           capacity=sampled([14.0, 16.0, 19.5, 30.0]))]  # undecided
    for index in range(3):
        drop_unneeded_samples(plan, index, records[:index + 1])
    assert [(planned.model, planned.sample) for planned in plan.runs][3:] == [
        ("select", 1), ("asyncio", 1)]
    assert settling_runs(plan, 3, records, 0.0, 1.0) == []  # not the last yet
    extra = settling_runs(plan, 4, records, 0.0, 1.0)
    assert [(planned.model, planned.versus) for planned in extra] == [("select", "asyncio")]
