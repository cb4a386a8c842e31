"""The comparison's scale scenario: open connections, mostly idle, through testbed compare.

The end-to-end test runs real servers with real connections (select and sequential,
steps cut to 50 and 200 connections, short windows: about 10 s) and checks that
results.json carries run_scale's records, that the report shows them, with both plots
and a verdict, and that testbed report rebuilds the very same report from results.json
alone. The wording of the verdict is checked on crafted results (no server), where each
test chooses who held, who failed and how.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testbed.compare.command import build_parser as compare_parser
from testbed.compare.command import list_plan
from testbed.compare.plan import make_plan
from testbed.compare.scenarios import FULL, QUICK
from testbed.reporting import main as report_main
from testbed.reporting.data import parse
from testbed.reporting.scale_tables import kib
from testbed.reporting.sentences import verdicts
from tests.conftest import no_traceback, one_line
from tests.test_report import md_table, scenario_section


def plan_of(*args: str):
    return make_plan(compare_parser().parse_args(["--models", "select,threading", *args]))


def test_quick_preset_runs_scale_only_when_named_and_once_per_model(capsys):
    default = plan_of()
    assert "scale" not in [scenario.name for scenario in default.scenarios]
    assert "scale" in QUICK.names() and "scale" not in QUICK.default_names()
    named = plan_of("--scenarios", "scale", "--repeat", "3")
    assert [(run.scenario.name, run.model, run.repeat) for run in named.runs] == [
        ("scale", "select", 0), ("scale", "threading", 0)]  # no repeats of it
    scale = named.scenarios[0]
    assert scale.steps == (100, 1000, 5000, 10_000) and scale.unit == "connections"
    assert scale.scale is not None and scale.scale.active == 10
    assert scale.scale.process_limit == 2000 and "--backlog 4096" in scale.server_summary()
    assert "scale" in [scenario.name for scenario in plan_of("--full").scenarios]
    assert "scale" in FULL.default_names()
    list_plan(default)
    assert "scale    not run unless named: --scenarios scale" in capsys.readouterr().out
    assert "only when named here, or with --full" in " ".join(compare_parser().format_help()
                                                              .split())


@pytest.mark.slow  # 8 s; crafted records test the report, test_bench tests run_scale
def test_compare_scale_small_steps_report_rebuilds_from_json(tmp_path: Path, capsys):
    """select holds 50 and 200 connections, sequential fails at 50 and says how."""
    models = ["select", "sequential"]
    result = subprocess.run([sys.executable, "-m", "testbed", "compare", "--models",
                             ",".join(models), "--scenarios", "scale", "--steps", "50,200",
                             "--warmup", "0.2", "--run-time", "0.5"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    no_traceback(result.stderr)
    [out] = list((tmp_path / "results").iterdir())
    doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [(r["model"], r["scenario"], r["status"]) for r in doc["runs"]] == [
        ("select", "scale", "ok"), ("sequential", "scale", "ok")]
    select, sequential = (r["scale"] for r in doc["runs"])
    assert [(r["connections"], r["ok"], r["idle_alive"]) for r in select] == [
        (50, True, 40), (200, True, 190)]
    assert select[1]["memory_figure"] in ("uss", "rss") and select[1]["fds"] >= 200
    assert 0 < select[1]["added_per_connection_bytes"] < 32 * 1024
    assert select[1]["p99_ms"] >= select[1]["p50_ms"] > 0
    first, second = sequential
    assert not first["ok"] and first["failure"]["how"] == "no reply in time"
    assert first["served_active"] == 1 and first["errors"].get("io_timeout")
    assert not second["attempted"]
    assert json.loads((out / "runs" / "scale-select" / "scale.json").read_text()) == select

    text = (out / "report.md").read_text(encoding="utf-8")
    section = scenario_section(text, "scale")
    held = md_table(section, "### The largest step each model held")
    assert [row["model"] for row in held] == models
    figure = select[1]["memory_figure"].upper()
    assert held[0]["held"] == "200" and held[0]["fails at: how"] == "–"
    assert held[0]["KiB per idle conn"] == kib(select[1]["added_per_connection_bytes"])
    assert held[0][f"server MiB ({figure})"] == f"{select[1]['server_bytes'] / 2**20:,.1f}"
    assert held[0]["fds"] == f"{select[1]['fds']:,}"
    assert held[1]["held"] == "–" and held[1]["fails at: how"] == "50: no reply in time"
    every = md_table(section, "### Every step")
    assert [(row["model"], row["connections"], row["result"]) for row in every] == [
        ("select", "50", "ok"), ("select", "200", "ok"),
        ("sequential", "50", "failed: no reply in time"),
        ("sequential", "200", "not attempted (the model failed at 50 connections)")]
    assert "1 of 10 active served" in section
    for name in ("scale-memory.png", "scale-p99.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG")
        assert f"]({name})" in section
    [verdict] = [line for line in text.splitlines() if line.startswith("- **scale**")]
    assert "select held all 200 with the active clients' p99 under 20 ms" in verdict
    assert "sequential failed at 50 connections (no reply in time; 1 of 10 active served)" \
        in verdict
    assert result.stdout.count("=> scale, 200 connections (10 active): ") == 1
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "The largest step each model held" in page and "http://" not in page

    for name in ("report.md", "report.html", "scale-memory.png"):
        (out / name).unlink()
    assert report_main(["--quiet", str(out / "results.json")]) == 0  # testbed report
    assert (out / "report.md").read_text(encoding="utf-8") == text
    assert (out / "report.html").read_text(encoding="utf-8") == page
    assert (out / "scale-memory.png").exists()
    capsys.readouterr()
    assert report_main([str(out), "--agree", str(out)]) == 0
    assert "| scale | held 200: select; failed at 50: sequential | held 200: select; " \
           "failed at 50: sequential | yes |" in capsys.readouterr().out


# -- the verdict, on crafted records -------------------------------------------------------


def record(connections: int, *, ok: bool = True, p99: float = 4.0, per_conn: float = 1500,
           threads: int = 1, processes: int = 1, how: str | None = None,
           not_attempted: str | None = None, served: int = 10) -> dict[str, Any]:
    """A step as run_scale records it (the keys the report reads)."""
    attempted = not_attempted is None
    found: dict[str, Any] = {
        "connections": connections, "active": 10, "attempted": attempted,
        "not_attempted": not_attempted, "ok": ok and attempted, "failure": None,
        "opened": connections, "open_s": 0.5, "idle_alive": connections - 10,
        "idle_connections": connections - 10, "served_active": served,
        "memory_figure": "uss", "server_bytes": 10 * 2**20 + per_conn * connections,
        "added_per_connection_bytes": per_conn, "threads": threads, "processes": processes,
        "fds": connections + 5, "p50_ms": p99 / 10, "p99_ms": p99, "requests": 5000,
        "server_cpu_us_per_request": 15.0, "errors": {}, "server_log": []}
    if not attempted:
        found.update({key: None for key in ("opened", "open_s", "idle_alive", "server_bytes",
                                            "added_per_connection_bytes", "threads",
                                            "processes", "fds", "p50_ms", "p99_ms")})
    elif how is not None:
        found["ok"] = False
        found["failure"] = {"step": connections, "how": how, "detail": "", "classes": {}}
    return found


def scale_document(runs: dict[str, list[dict[str, Any]] | str]) -> dict[str, Any]:
    """A results.json of the scale scenario; a run given as a string crashed with it."""
    scenario = QUICK.get("scale")
    return {
        "format": "testbed-compare/1",
        "metadata": {"date": "2026-12-01 12:00", "preset": "quick", "models": list(runs),
                     "machine": {"hostname": "bench", "cores": 2}},
        "scenarios": [scenario.as_dict()],
        "runs": [{"model": model, "scenario": "scale", "repeat": 0, "summary": None,
                  "status": "crashed" if isinstance(found, str) else "ok",
                  "error": found if isinstance(found, str) else None,
                  "scale": [] if isinstance(found, str) else found}
                 for model, found in runs.items()]}


STEPS = (100, 1000, 5000, 10_000)
BEYOND = ("not attempted beyond 2,000 connections: the forking model would need 5,000 "
          "processes, one per connection (--process-limit 2000)")
AFTER = "not attempted: the model failed at {:,} connections"


def crafted() -> dict[str, list[dict[str, Any]] | str]:
    return {
        "select": [record(n, per_conn=1500) for n in STEPS],
        "asyncio": [record(n, per_conn=5400, p99=8.0) for n in STEPS],
        "threading": [record(n, per_conn=21_300, threads=n + 1, p99=3.0) for n in STEPS],
        "forking": [record(100, per_conn=1.1e6, processes=101), record(1000, processes=1001),
                    record(5000, not_attempted=BEYOND),
                    record(10_000, not_attempted=BEYOND.replace("5,000", "10,000"))],
        "threadpool": [record(100, how="connections closed by the server", served=8),
                       *(record(n, not_attempted=AFTER.format(100)) for n in STEPS[1:])],
        "sequential": [record(100, how="no reply in time", served=1),
                       *(record(n, not_attempted=AFTER.format(100)) for n in STEPS[1:])],
    }


def scale_sentence(runs: dict[str, list[dict[str, Any]] | str]) -> str:
    return dict(verdicts(parse(scale_document(runs))))["scale"]


def test_scale_verdict_says_who_held_what_it_cost_and_who_failed_where_and_how():
    sentence = scale_sentence(crafted())
    assert sentence.startswith("scale, 10,000 connections (10 active): select, asyncio and "
                               "threading held all 10,000 with the active clients' p99 under "
                               "20 ms (3.00 ms to 8.00 ms), an idle connection adding 1.46 KiB "
                               "of USS (select) to 20.8 KiB (threading, a thread per "
                               "connection)"), sentence
    assert ("forking held 1,000 and was not attempted beyond 2,000: it would need 5,000 "
            "processes") in sentence
    assert "threadpool failed at 100 connections (connections closed by the server; 8 of 10 " \
           "active served)" in sentence
    assert "sequential failed at 100 connections (no reply in time; 1 of 10 active served)" \
        in sentence


def test_scale_verdict_follows_the_data_not_the_names():
    runs = crafted()
    runs["select"][-1] = record(10_000, how="connect timeouts")  # select failed at 10,000
    runs["asyncio"][-1] = record(10_000, p99=45.0, per_conn=5400)  # held, but slowly
    runs["threading"] = "RuntimeError: can't start new thread"
    sentence = scale_sentence(runs)
    assert "threading" not in sentence.partition(". ")[0].split(":", 1)[1].split(";")[0]
    assert "asyncio held all 10,000, but its p99 was 45.0 ms" in sentence
    assert "select failed at 10,000 connections after holding 5,000 (connect timeouts)" \
        in sentence
    assert sentence.endswith("threading crashed during the run and is not counted.")
    nobody = {model: [record(100, how="EMFILE", served=10)] for model in ("select", "asyncio")}
    assert "no model held 10,000 connections; select and asyncio failed at 100 connections " \
           "(EMFILE)" in scale_sentence(nobody)


def test_scale_records_with_missing_keys_still_make_a_report(tmp_path: Path):
    """A results.json written before a figure existed: the missing figures show as –."""
    from testbed.reporting import write_report

    doc = scale_document(crafted())
    for run in doc["runs"]:
        for step in run["scale"]:
            step.pop("served_active"), step.pop("fds")
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    written = write_report(path)
    assert {p.name for p in written.plots} == {"scale-memory.png", "scale-p99.png"}
    held = md_table(written.markdown.read_text(encoding="utf-8"),
                    "### The largest step each model held")
    assert [row["fds"] for row in held] == ["–"] * 6
    assert [row["held"] for row in held] == ["10,000", "10,000", "10,000", "1,000", "–", "–"]
    assert held[3]["fails at: how"] == "not attempted beyond 2,000: would need 5,000 processes"
    assert copy.deepcopy(doc) == doc  # rendering did not change the data


@pytest.mark.parametrize("broken", [{"scale": [{"ok": True}]}, {"scale": ["step"]}])
def test_a_malformed_scale_record_is_one_line(tmp_path: Path, broken: dict[str, Any], capsys):
    doc = scale_document({"select": [record(100)]})
    doc["runs"][0].update(broken)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert report_main([str(path)]) == 2
    assert one_line(capsys.readouterr().err).startswith("testbed report: error: ")
