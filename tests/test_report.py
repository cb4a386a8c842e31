"""The comparison report, rebuilt from crafted results.json files whose winners we choose.

Nothing here runs a server: the data are written by hand (in the shape
``testbed compare`` writes), so each test knows exactly which figures and
which verdict the report must show.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from testbed.compare.scenarios import HTTP_QUICK, QUICK
from testbed.reporting import write_report
from testbed.reporting.data import parse
from testbed.reporting.describe import facts
from testbed.reporting.sentences import verdict, verdicts, winner_and_loser
from testbed.reporting.tables import fmt
from testbed.stats import ratio_interval
from tests.conftest import one_line

FAILURE_CLASSES = ("refused", "reset", "connect_timeout", "io_timeout", "closed_early",
                   "mismatch", "unreachable", "other")


# -- crafted data --------------------------------------------------------------------------


def step(users: int, rps: float, p99: float, *, share: float = 1.0, window: float = 2.0,
         failures: dict[str, int] | None = None, cpu_s: float = 0.4,
         generator_bound: bool = False) -> dict[str, Any]:
    """A step record as testbed.load.run_load returns it."""
    served = rps * window
    counts = dict.fromkeys(FAILURE_CLASSES, 0) | (failures or {})
    requests = served + sum(counts.values())
    if share < 1.0 and not failures:
        counts["io_timeout"] = round(served / share - served)
        requests = served + counts["io_timeout"]
    return {
        "users": users, "window_s": window, "requests": requests, "served": served,
        "served_share": served / requests if requests else 0.0, "failures": counts,
        "rps": rps, "p50_ms": p99 / 2.5, "p95_ms": p99 / 1.3, "p99_ms": p99, "max_ms": p99 * 1.7,
        "server": {"cpu_s": cpu_s, "cpu_us_per_request": cpu_s * 1e6 / served if served else None,
                   "peak_rss_mib": 21.25 + users / 10, "peak_threads": users + 1,
                   "peak_processes": 1, "peak_fds": users + 4},
        "generator_bound": generator_bound,
    }


def summary(steps: list[dict], *, complete: bool = True, error: str | None = None) -> dict:
    return {"run_id": "crafted", "complete": complete, "error": error, "steps": steps,
            "warmup_s": 0.5, "generator_ceiling_rps": 5000.0}


def run(model: str, scenario: str, steps: list[dict], *, repeat: int = 0,
        capacity: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    record = summary(steps, **kwargs)
    crashed = not record["complete"] or bool(record["error"])
    found = {"model": model, "scenario": scenario, "status": "crashed" if crashed else "ok",
             "error": record["error"], "duration_s": 5.0, "summary": record, "repeat": repeat}
    if capacity is not None:
        found["capacity"] = capacity
    return found


def bench(cpu_us: float, rps: float, *, served: int = 10, limit: str = "server",
          errors: int = 0) -> dict[str, Any]:
    """A testbed bench --json record, as the comparison keeps it."""
    return {"ok": True, "rps": rps, "connections": 10, "served_connections": served,
            "error_count": errors, "limit": limit,
            "server": {"cpu_us_per_request": cpu_us, "cores_busy": 0.9},
            "client": {"cores_busy": 0.7}}


def document(runs: list[dict], scenarios: list[str] | None = None) -> dict[str, Any]:
    chosen = [QUICK.get(name) for name in (scenarios or QUICK.names())]
    models = list(dict.fromkeys(r["model"] for r in runs))
    return {
        "format": "testbed-compare/1",
        "metadata": {"date": "2026-11-22 16:36", "duration_s": 93.4, "preset": "quick",
                     "warmup_s": 0.5, "window_s": 2.0, "workers": 1, "pin": False,
                     "command_line": "testbed compare --models " + ",".join(models),
                     "machine": {"hostname": "bench", "cpu_model": "Crafted CPU", "cores": 2,
                                 "platform": "Linux", "python": "3.11.2"},
                     "versions": {"testbed": "0.1.0", "locust": "2.47.0"},
                     "models": models, "scenarios": [s.name for s in chosen]},
        "scenarios": [s.as_dict() for s in chosen],
        "runs": runs,
    }


def slow_io_runs(slow: str = "sequential", quick: str = "threading") -> list[dict]:
    """slow-io where ``quick`` scales with the users and ``slow`` stays flat at 10 req/s."""
    return [
        run(slow, "slow-io", [step(1, 9.8, 104), step(10, 9.9, 1000, share=0.1),
                              step(50, 9.7, 4900, share=0.02)]),
        run(quick, "slow-io", [step(1, 9.6, 106), step(10, 95.0, 110), step(50, 470.0, 130)]),
    ]


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


# -- reading report.md back ----------------------------------------------------------------


def md_table(text: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after the line ``heading``, as dicts keyed by header."""
    lines = text.splitlines()
    start = lines.index(heading)
    rows: list[list[str]] = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
        elif rows:
            break
    header, body = rows[0], rows[2:]
    return [dict(zip(header, row, strict=True)) for row in body]


def scenario_section(text: str, scenario: str) -> str:
    """report.md from the scenario's heading up to the next scenario's."""
    start = re.search(rf"^## {re.escape(scenario)}: .*$", text, re.M)
    assert start, f"no section for {scenario}"
    end = re.search(r"^## ", text[start.end():], re.M)
    return text[start.start(): start.end() + end.start() if end else len(text)]


def number(text: str) -> tuple[float, float]:
    """A shown figure and the tolerance its printed precision implies (of a figure shown
    with its spread, ``14.0 (12.6–16.8)``, the figure)."""
    bare = text.replace("**", "").replace("†", "").partition(" (")[0]
    decimals = len(bare.partition(".")[2])
    return float(bare), 0.5 * 10 ** -decimals + 1e-9


def json_figure(step_record: dict[str, Any], header: str,
                record: dict[str, Any] | None = None) -> float | None:
    """The results.json figure behind a report column, read without the report's code."""
    server = step_record["server"]
    clients = step_record.get("clients") or {}
    capacity = (record or {}).get("capacity") or {}
    extra = {"clients served": clients.get("served_any"), "fairness": clients.get("jain"),
             "achieved conn/s": step_record.get("achieved_rate"),
             "bench µs/req": (capacity.get("server") or {}).get("cpu_us_per_request"),
             "bench req/s": capacity.get("rps"),
             "bench conns served": capacity.get("served_connections"),
             "wrk µs/req": (capacity.get("server") or {}).get("cpu_us_per_request"),
             "wrk req/s": capacity.get("rps")}
    if header in extra:
        return extra[header]
    direct = {"req/s": "rps", "p50 ms": "p50_ms", "p95 ms": "p95_ms", "p99 ms": "p99_ms",
              "max ms": "max_ms", "attempts": "requests"}
    if header in direct:
        return step_record[direct[header]]
    if header == "served %":
        return step_record["served_share"] * 100
    if header in step_record["failures"]:
        return step_record["failures"][header]
    if header == "failures":
        return sum(step_record["failures"].values())
    return {"CPU s": server.get("cpu_s"), "CPU µs/req": server.get("cpu_us_per_request"),
            "RSS MiB": server.get("peak_rss_mib"), "threads": server.get("peak_threads"),
            "procs": server.get("peak_processes"), "fds": server.get("peak_fds")}.get(header)


def check_markdown_matches_json(report_md: str, doc: dict[str, Any]) -> int:
    """Every figure of every summary and step table equals results.json; returns how many."""
    checked = 0
    for scenario in doc["scenarios"]:
        section = scenario_section(report_md, scenario["name"])
        top = max(scenario["steps"])
        unit = scenario.get("unit", "users")
        tables = [(f"### At {top} {unit}", None), ("### Every step", unit)]
        for heading, users_column in tables:
            for row in md_table(section, heading):
                record = next(r for r in doc["runs"] if r["model"] == row["model"]
                              and r["scenario"] == scenario["name"])
                if record["status"] != "ok":
                    continue
                users = int(row[users_column]) if users_column else top
                step_record = next(s for s in record["summary"]["steps"] if s["users"] == users)
                for header, shown in row.items():
                    if header in ("model", "users", "conn/s", "status"):
                        continue
                    expected = json_figure(step_record, header, record)
                    assert expected is not None or shown == "–", (header, shown)
                    if expected is None:
                        continue
                    value, tolerance = number(shown)
                    assert abs(value - expected) <= tolerance, (scenario["name"], row["model"],
                                                                users, header, shown, expected)
                    checked += 1
    return checked


# -- tests ---------------------------------------------------------------------------------


def test_report_files_and_markdown_figures_equal_json(tmp_path):
    runs = slow_io_runs() + [
        run("sequential", "fast", [step(1, 2100, 0.9), step(10, 2050, 450, share=0.11),
                                   step(50, 2010, 990, share=0.02)]),
        run("threading", "fast", [step(1, 1900, 0.8), step(10, 3900, 4.1),
                                  step(50, 4000.4, 18.37, generator_bound=True)]),
    ]
    doc = document(runs, ["fast", "slow-io"])
    written = write_report(write(tmp_path, doc))
    for path in written.files:
        assert path.exists() and path.stat().st_size > 0, path
    assert {p.name for p in written.plots} == {f"{s}-{k}.png" for s in ("fast", "slow-io")
                                               for k in ("throughput", "p99", "served")}
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written.plots)
    text = written.markdown.read_text(encoding="utf-8")
    assert check_markdown_matches_json(text, doc) > 100
    # the generator-bound cell is flagged in the table and named in its note
    top = md_table(scenario_section(text, "fast"), "### At 50 users")
    assert next(r for r in top if r["model"] == "threading")["req/s"].endswith("†**")
    assert "measures locust rather than the server (threading)" in text
    rows = list(csv.DictReader(written.csv.open(encoding="utf-8")))
    assert len(rows) == 2 * 2 * 3  # model x scenario x step
    bound = [r for r in rows if r["generator_bound"] == "true"]
    assert [(r["model"], r["scenario"], r["step"]) for r in bound] == [("threading", "fast",
                                                                         "50")]
    assert {r["repeat"] for r in rows} == {"1"}
    assert all(r["cpu_us_per_request"] for r in rows)


def test_best_value_of_each_column_is_marked(tmp_path):
    written = write_report(write(tmp_path, document(slow_io_runs(), ["slow-io"])))
    rows = {row["model"]: row for row in md_table(written.markdown.read_text(encoding="utf-8"),
                                                  "### At 50 users")}
    assert rows["threading"]["req/s"] == "**470**"
    assert rows["threading"]["p99 ms"] == "**130**"
    assert rows["threading"]["served %"] == "**100.0**"
    assert rows["sequential"]["req/s"] == "9.70"
    assert not rows["sequential"]["procs"].startswith("**")  # equal everywhere: unmarked


def test_sentence_names_winner_and_loser_and_swaps_with_the_data():
    results = parse(document(slow_io_runs("sequential", "threading"), ["slow-io"]))
    sentence = verdict(results, results.scenarios[0])
    assert sentence.startswith("slow-io, 50 users: threading won with 470 req/s")
    assert "sequential came last with 9.70 req/s" in sentence
    assert "stayed flat from 1 to 50 users" in sentence  # the why, read off the data
    assert "p99 4.9 s" in sentence

    swapped = parse(document(slow_io_runs("threading", "sequential"), ["slow-io"]))
    sentence = verdict(swapped, swapped.scenarios[0])
    assert sentence.startswith("slow-io, 50 users: sequential won with 470 req/s")
    assert "threading came last with 9.70 req/s" in sentence


def test_denial_sentence_ranks_by_share_served_and_names_failure_classes():
    def denial(model: str, share: float, fails: dict[str, int]) -> dict:
        return run(model, "denial", [step(10, 9.0, 600), step(40, 9.0, 1200),
                                     step(100, 9.5 if share < 1 else 80.0, 1500, share=share,
                                          failures=fails)])

    doc = document([denial("select", 1.0, {}),
                    denial("sequential", 0.2, {"connect_timeout": 61, "io_timeout": 15})],
                   ["denial"])
    results = parse(doc)
    sentence = verdict(results, results.scenarios[0])
    assert sentence.startswith("denial, 100 conn/s: select won with 100.0% of attempts served")
    assert "sequential came last with 20.0% of attempts served" in sentence
    assert "connect_timeout (61) and io_timeout (15)" in sentence


def test_close_figures_are_not_called_a_win():
    doc = document([run("select", "slow-io", [step(1, 9.8, 101), step(50, 460, 120)]),
                    run("threading", "slow-io", [step(1, 9.7, 101), step(50, 450, 122)])],
                   ["slow-io"])
    results = parse(doc)
    sentence = verdict(results, results.scenarios[0])
    assert "no clear winner" in sentence and "won with" not in sentence


def test_fast_ranks_by_bench_cpu_per_request_not_by_locust_throughput():
    """Locust's req/s in the fast scenario measure locust (generator-bound): the verdict
    comes from testbed bench's server CPU per request, and says which generator gave it."""
    doc = document([
        run("select", "fast", [step(1, 1000, 1), step(50, 4000, 20, generator_bound=True)],
            capacity=bench(4.5, 220000, limit="both")),
        run("asyncio", "fast", [step(1, 990, 1), step(50, 4100, 22, generator_bound=True)],
            capacity=bench(9.0, 110000)),
        run("sequential", "fast", [step(1, 900, 1), step(50, 3000, 25)],
            capacity=bench(27.6, 13900, served=1))], ["fast"])
    results = parse(doc)
    sentence = verdict(results, results.scenarios[0])
    assert sentence.startswith("fast, 50 users: select won with 4.5 µs of server CPU per "
                               "request (220000 req/s under testbed bench)"), sentence
    assert "its req/s are a floor" in sentence  # the bench client was busy too
    assert ("sequential came last with 27.6 µs of server CPU per request (13900 req/s under "
            "testbed bench): under testbed bench it served 1 of 10 connections") in sentence


def test_a_loser_is_set_against_the_figure_the_verdict_quotes_for_the_top():
    """Models level at the top are led by the lowest p99, but the verdict quotes the best
    figure among them; the loser's req/s are set against that same model's, not against
    the leader's (an HTTP run said "level ... with 2.0 µs (479398 req/s)" and then "5512
    req/s against 264960")."""
    doc = document([
        run("select", "fast", [step(1, 1000, 1), step(50, 4000, 30)],
            capacity=sampled([4.0, 4.1, 4.2, 4.3, 4.1])),
        run("prefork", "fast", [step(1, 990, 1), step(50, 4100, 10)],
            capacity=sampled([4.1, 4.2, 4.3, 4.2, 4.0])),
        run("sequential", "fast", [step(1, 900, 1), step(50, 3000, 25)],
            capacity=sampled([40.0, 41.0, 42.0, 40.5, 41.5]))], ["fast"])
    results = parse(doc)
    sentence = verdict(results, results.scenarios[0])
    assert "were level at the top with 4.1 µs" in sentence, sentence
    assert "prefork with the lowest p99" in sentence, sentence
    best = next(r for r in doc["runs"] if r["model"] == "select")["capacity"]["rps"]
    assert f"against {best:.0f}" in sentence, sentence


def test_a_last_model_level_with_the_first_is_not_named_last_too():
    """A model whose windows could not be told from the winner's (their interval holds 1)
    is named in the group at the top; when it has the highest figure too, the verdict says
    that none came clearly last rather than naming it at both ends (an HTTP run said
    "reuseport, select and threadpool were level at the top ...; threadpool came last")."""
    doc = document([
        run("select", "fast", [step(1, 1000, 1), step(50, 4000, 30)],
            capacity=sampled([10.0, 10.1, 10.2, 10.3, 10.1, 10.2])),
        run("reuseport", "fast", [step(1, 990, 1), step(50, 4100, 10)],
            capacity=sampled([10.1, 10.2, 10.3, 10.2, 10.0, 10.4])),
        run("threadpool", "fast", [step(1, 900, 1), step(50, 3000, 25)],
            capacity=sampled([8.0, 9.0, 30.0, 40.0, 12.5, 13.0]))], ["fast"])
    results = parse(doc)
    sentence = verdict(results, results.scenarios[0])
    assert "threadpool were level at the top" in sentence, sentence
    assert "came last" not in sentence, sentence
    assert ("none came clearly last: threadpool, with 12.5 µs of server CPU per request"
            in sentence), sentence


def test_agreement_sets_capacity_figures_against_the_best_model_of_each_run(tmp_path):
    """--agree: a machine 30% faster in one run moves every bench figure by 30%; set
    against the first run's best model in the same run, the ratios that held are counted
    apart, and the one that moved (threading's) is named with its ratios."""
    paths = []
    for index, speed in enumerate((1.0, 0.7, 1.0)):
        threading = 20.0 if index < 2 else 26.0  # 2.0x, 2.0x, then 2.6x select's
        runs = [run(model, "fast", [step(1, 900, 1), step(50, 3000, 25)],
                    capacity=bench(cpu * speed, 1e6 / (cpu * speed)))
                for model, cpu in (("select", 10.0), ("asyncio", 15.0),
                                   ("threading", threading))]
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        paths.append(write(folder, document(runs, ["fast"])))
    result = subprocess.run([sys.executable, "-m", "testbed", "report", str(paths[0]),
                             "--agree", str(paths[1]), str(paths[2])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert ("0 of 3 cells (neither generator-bound nor saturated) moved less than 10%"
            in result.stdout), result.stdout
    assert ("Set against select's in the same run, 1 of 2 fast bench:cpu_us_per_request "
            "figures moved less than 10% between the runs (0 of 3 as they were measured)."
            in result.stdout), result.stdout
    assert "- moved most against select: threading, 2.00x, 2.00x, 2.60x (30%)" in result.stdout


def test_agreement_names_the_generator_of_a_capacity_figure_that_moved(tmp_path):
    """--agree over HTTP comparisons: a wrk figure that moved is named as wrk's, not as
    the bench's (they are different generators; the report's columns say so too)."""
    paths = []
    for index, cpu in enumerate((14.5, 21.0)):
        runs = [run("select", "plaintext", [step(1, 1000, 1), step(50, 3200, 20)],
                    capacity=bench(cpu, 1e6 / cpu) | {"generator": "wrk"}),
                run("gunicorn-sync", "plaintext", [step(1, 900, 1), step(50, 1400, 48)],
                    capacity=bench(438, 1985) | {"generator": "wrk"})]
        doc = document(runs, ["fast"])
        doc["scenarios"] = [HTTP_QUICK.get("plaintext").as_dict()]
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        paths.append(write(folder, doc))
    result = subprocess.run([sys.executable, "-m", "testbed", "report", str(paths[0]),
                             "--agree", str(paths[1])], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "moved most: plaintext select at 50, wrk:cpu_us_per_request 14.5, 21.0" \
        in result.stdout, result.stdout


def test_the_http_report_shows_the_wrk_figures_its_verdict_names(tmp_path):
    """An HTTP scenario is decided by testbed wrk's server CPU per request: the summary table
    shows that figure and wrk's req/s for every model, equal to results.json."""
    def wrk(cpu_us: float, rps: float) -> dict[str, Any]:
        return bench(cpu_us, rps, limit="both") | {"generator": "wrk"}

    runs = [run("select", "plaintext", [step(1, 1000, 1), step(10, 3000, 4), step(50, 3200, 20)],
                capacity=wrk(14.5, 68411)),
            run("gunicorn-sync", "plaintext", [step(1, 900, 1), step(10, 1300, 9),
                                                 step(50, 1400, 48)],
                capacity=wrk(438, 1985))]
    doc = document(runs, ["fast"])
    doc["scenarios"] = [HTTP_QUICK.get("plaintext").as_dict()]
    report = write_report(write(tmp_path, doc)).markdown.read_text(encoding="utf-8")
    rows = md_table(scenario_section(report, "plaintext"), "### At 50 users")
    assert [(r["model"], r["wrk µs/req"], r["wrk req/s"]) for r in rows] == [
        ("select", "**14.5**", "**68411**"), ("gunicorn-sync", "438", "1985")]
    assert "bench µs/req" not in report  # the figures say which generator made them
    assert check_markdown_matches_json(report, doc) > 0
    assert "select won with 14.5 µs of server CPU per request (68411 req/s under testbed " \
           "wrk)" in report and "the wrk client was busy too" in report


def test_a_server_that_served_nothing_under_wrk_comes_last():
    """A server whose queue the idle connections filled answered wrk nothing: it has no CPU
    per request, and ranks below every model that served, not outside the ranking."""
    def wrk(cpu_us: float | None, rps: float) -> dict[str, Any]:
        record = bench(cpu_us, rps, limit="both") | {"generator": "wrk"}
        record["server"]["cpu_us_per_request"] = cpu_us
        return record

    starved = [step(1, 0, 0, share=0.0, failures={"io_timeout": 4}),
               step(10, 0, 0, failures={"io_timeout": 20}),
               step(50, 0, 0, failures={"io_timeout": 100})]
    for item in starved:
        item["p99_ms"] = None
    runs = [run("select", "idle", [step(1, 900, 1), step(10, 2000, 5), step(50, 2300, 60)],
                capacity=wrk(22.2, 44431)),
            run("uvicorn-uvloop", "idle", [step(1, 800, 1), step(10, 2100, 6),
                                           step(50, 2600, 59)], capacity=wrk(74.9, 11721)),
            run("sequential", "idle", starved, capacity=wrk(None, 0.0))]
    doc = document(runs, ["fast"])
    doc["scenarios"] = [HTTP_QUICK.get("idle").as_dict()]
    results = parse(doc)
    sentence = verdict(results, results.scenarios[0])
    assert sentence.startswith("idle, 50 users: select won with 22.2 µs"), sentence
    assert "sequential came last with no reply under testbed wrk (0 req/s)" in sentence
    assert "every attempt failed, as io_timeout (100)" in sentence


def test_a_bench_that_left_connections_unserved_ranks_by_the_connections_served():
    """Where CPU per request decides, a server that left some of the bench's connections
    without a reply ranks below those that served all ten, and among such servers the one
    that served fewer comes last, whatever their CPU per request: 2 workers serving 2 of 10
    at 66 µs are not level with one process serving 1 of 10 at 63 µs."""
    doc = document([
        run("select", "fast", [step(1, 1000, 1), step(50, 4000, 20)],
            capacity=bench(15.0, 66000)),
        run("threading", "fast", [step(1, 1000, 1), step(50, 4000, 21)],
            capacity=bench(70.0, 14000)),
        run("prefork", "fast", [step(1, 900, 1), step(50, 3000, 25)],
            capacity=bench(66.4, 8600, served=2)),
        run("sequential", "fast", [step(1, 900, 1), step(50, 3000, 25)],
            capacity=bench(63.5, 6000, served=1))], ["fast"])
    results = parse(doc)
    sentence = verdict(results, results.scenarios[0])
    assert sentence.startswith("fast, 50 users: select won with 15.0 µs"), sentence
    assert ("sequential came last with 63.5 µs of server CPU per request (6000 req/s under "
            "testbed bench): under testbed bench it served 1 of 10 connections") in sentence
    assert "as did" not in sentence  # threading (70 µs, 10 of 10) ranks above both


def test_no_winner_is_named_from_generator_bound_figures():
    runs = [run(model, "slow-io", [step(1, 9.8, 101), step(50, rps, 120,
                                                            generator_bound=True)])
            for model, rps in (("select", 470), ("sequential", 300))]
    results = parse(document(runs, ["slow-io"]))
    sentence = verdict(results, results.scenarios[0])
    assert "no winner named: the load generator was the limit" in sentence
    assert "won with" not in sentence


def test_method_line_says_the_timing_that_was_given():
    doc = document(slow_io_runs(), ["slow-io"])
    method = dict(facts(parse(doc)))["Method"]
    assert "each step: 0.5 s warm-up (not recorded), then a 2 s measured window" in method
    doc["metadata"]["warmup_s"] = None  # --run-time alone: the scenarios' own warm-ups
    method = dict(facts(parse(doc)))["Method"]
    assert "the scenario's warm-up (not recorded), then a 2 s measured window" in method
    assert "?" not in method


def test_html_is_one_self_contained_file(tmp_path):
    runs = slow_io_runs()
    runs[0] = run("sequential", "slow-io", runs[0]["summary"]["steps"][:1], complete=False,
                  error="server died; see https://example.invalid/log and <script>")
    written = write_report(write(tmp_path, document(runs, ["slow-io"])))
    page = written.html.read_text(encoding="utf-8")
    assert "http://" not in page.lower() and "https://" not in page.lower()
    references = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", page, re.I)
    assert references, "the plots should be embedded"
    assert all(ref.startswith("data:image/png;base64,") for ref in references), references
    assert len(references) == len(written.plots)
    assert not re.search(r"<link\b|@import|url\(", page, re.I)
    assert "<script>" not in page  # recorded text is escaped
    assert "crashed" in page


def test_crashed_cell_is_shown_as_crashed_in_markdown_and_csv(tmp_path):
    runs = slow_io_runs() + [run("forking", "slow-io", [step(1, 9.5, 105)], complete=False,
                                 error="server exited with status -9 in the middle of the run")]
    doc = document(runs, ["slow-io"])
    written = write_report(write(tmp_path, doc))
    text = written.markdown.read_text(encoding="utf-8")
    top = {row["model"]: row for row in md_table(text, "### At 50 users")}
    assert top["forking"]["req/s"] == "crashed"
    assert "forking crashed: server exited with status -9" in text
    steps = [row for row in md_table(text, "### Every step") if row["model"] == "forking"]
    assert [row["status"] for row in steps] == ["crashed"] * 3
    assert steps[0]["req/s"] == "9.50" and steps[2]["req/s"] == "–"
    rows = [r for r in csv.DictReader(written.csv.open(encoding="utf-8"))
            if r["model"] == "forking"]
    assert [(r["step"], r["status"]) for r in rows] == [("1", "crashed"), ("10", "crashed"),
                                                        ("50", "crashed")]
    assert all("status -9" in r["error"] for r in rows)
    assert rows[2]["rps"] == ""
    assert "forking crashed during the run" in verdict(parse(doc), parse(doc).scenarios[0])
    assert check_markdown_matches_json(text, doc) > 0


def test_the_scale_scenario_has_a_csv_row_per_model_and_step_and_its_own_glossary():
    """results.csv has the figures of the scale tables, a row per model and step (a crashed
    model's steps too); a report of scale alone says nothing of locust's figures."""
    from testbed.reporting import csvfile, markdown
    from tests.test_compare_scale import crafted, scale_document

    results = parse(scale_document({**crafted(), "reuseport": "server exited with status -9"}))
    rows = {(r["model"], r["step"]): r for r in csv.DictReader(
        io.StringIO(csvfile.render(results)))}
    assert len(rows) == 7 * 4 and {r["unit"] for r in rows.values()} == {"connections"}
    held = rows[("threading", "10000")]
    assert (held["status"], held["scale_opened"], held["scale_idle_alive"]) == ("ok", "10000",
                                                                               "9990")
    assert (held["scale_memory_figure"], held["scale_server_bytes"]) == ("uss", "223485760")
    assert (held["scale_added_per_connection_bytes"], held["scale_threads"]) == ("21300",
                                                                                "10001")
    assert (held["p50_ms"], held["p99_ms"], held["cpu_us_per_request"]) == ("0.3", "3", "15")
    assert held["error"] == "" and held["rps"] == ""  # a figure the record lacks stays empty
    failed = rows[("sequential", "100")]
    assert (failed["status"], failed["error"], failed["scale_served_active"]) == (
        "failed", "no reply in time", "1")
    beyond = rows[("forking", "5000")]
    assert beyond["status"] == "not attempted" and beyond["scale_fds"] == ""
    assert beyond["error"].startswith("not attempted beyond 2,000 connections")
    assert [rows[("reuseport", str(n))]["status"] for n in (100, 1000, 5000, 10_000)] == [
        "crashed"] * 4
    assert "status -9" in rows[("reuseport", "100")]["error"]

    glossary = markdown.render(results, []).partition("## Reading the figures")[2]
    assert "scale:" in glossary and "locust" not in glossary and "req/s" not in glossary
    full = markdown.render(parse(document(slow_io_runs(), ["slow-io"])), [])
    assert "scale:" not in full.partition("## Reading the figures")[2]
    assert "generator-bound" in full.partition("## Reading the figures")[2]


def test_a_run_that_raised_has_no_summary_and_still_shows(tmp_path):
    runs = slow_io_runs() + [{"model": "forking", "scenario": "slow-io", "status": "crashed",
                              "error": "StartError: printed no ready line in 15s",
                              "duration_s": 15.0, "summary": None}]
    written = write_report(write(tmp_path, document(runs, ["slow-io"])))
    text = written.markdown.read_text(encoding="utf-8")
    assert "forking crashed: StartError: printed no ready line" in text


def test_share_served_never_rounds_up_to_100():
    assert fmt("pct", 99.96) == "99.96"
    assert fmt("pct", 100.0) == "100.0"
    assert fmt("pct", 12.345) == "12.3"


@pytest.mark.slow  # the repeats comparison in test_compare rebuilds its report from results.json too
def test_report_command_rebuilds_from_json_alone(tmp_path):
    doc = document(slow_io_runs(), ["slow-io"])
    source = tmp_path / "a"
    source.mkdir()
    path = write(source, doc)
    result = subprocess.run([sys.executable, "-m", "testbed", "report", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "slow-io at 50 users" in result.stdout
    assert "threading won with 470 req/s" in result.stdout
    produced = sorted(p.name for p in source.iterdir())
    assert produced == sorted(["results.json", "report.md", "report.html", "results.csv",
                               "slow-io-throughput.png", "slow-io-p99.png",
                               "slow-io-served.png"])
    first = (source / "report.md").read_text(encoding="utf-8")
    again = copy.deepcopy(doc)
    (source / "report.md").unlink()
    write_report(write(source, again))
    assert (source / "report.md").read_text(encoding="utf-8") == first


@pytest.mark.parametrize(("content", "words"), [
    (None, ["no such file"]),
    ("{not json", ["not valid JSON"]),
    ('{"format": "something else"}', ["not a comparison's results"]),
    ('{"format": "testbed-compare/1", "runs": [{"scenario": "x"}]}', ["malformed"]),
])
def test_report_command_bad_input_is_one_line(tmp_path, content, words):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "testbed", "report", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("testbed report: error:")
    for word in words:
        assert word in line


def test_a_model_with_no_attempt_inside_the_window_loses_and_says_so(tmp_path):
    stuck = step(50, 0.0, 0.0)
    stuck.update(requests=0, served=0, served_share=None, p50_ms=None, p95_ms=None,
                 p99_ms=None, max_ms=None)
    doc = document([run("select", "slow-io", [step(1, 9.8, 104), step(10, 98, 104),
                                              step(50, 450, 110)]),
                    run("sequential", "slow-io", [step(1, 9.8, 104), step(10, 9.0, 500),
                                                  stuck])], ["slow-io"])
    results = parse(doc)
    sentence = verdict(results, results.scenarios[0])
    assert "select won with 450 req/s" in sentence
    assert ("sequential came last with no attempt in the measured window: "
            "at 50 users none of its clients attempted an exchange in the 2 s window") \
        in sentence
    text = write_report(write(tmp_path, doc)).markdown.read_text(encoding="utf-8")
    row = next(r for r in md_table(text, "### At 50 users") if r["model"] == "sequential")
    assert row["served %"] == "–" and row["p99 ms"] == "–" and row["req/s"] == "0.00"


def test_models_level_with_the_winner_or_the_loser_are_named_with_them():
    runs = [run(model, "slow-io", [step(1, 9.8, 100), step(50, rps, p99)])
            for model, rps, p99 in (("select", 450, 104), ("asyncio", 449, 102),
                                    ("sequential", 9.7, 1000), ("prefork", 9.7, 1100))]
    results = parse(document(runs, ["slow-io"]))
    sentence = verdict(results, results.scenarios[0])
    assert sentence.startswith("slow-io, 50 users: select and asyncio were level at the top "
                               "with 450 req/s, asyncio with the lowest p99 (102 ms)")
    assert "prefork came last (as did sequential) with 9.70 req/s" in sentence


def test_throughput_bought_by_leaving_clients_waiting_does_not_win():
    def fast(prefork_rps: float, threadpool_failures: int) -> str:
        runs = [run("prefork", "slow-io", [step(1, 20000, 0.1), step(
                    50, prefork_rps, 0.1, failures={"io_timeout": 129})]),
                run("forking", "slow-io", [step(1, 15000, 0.1), step(50, 31000, 28.7)]),
                run("asyncio", "slow-io", [step(1, 9000, 0.1), step(50, 16500, 10.9)]),
                run("threadpool", "slow-io", [step(1, 9000, 0.1), step(50, 12000, 3.1, failures={
                    "closed_early": threadpool_failures})])]
        results = parse(document(runs, ["slow-io"]))
        return verdict(results, results.scenarios[0])

    sentence = fast(57000, 1797)
    assert sentence.startswith("slow-io, 50 users: forking won with 31000 req/s (p99 28.7 ms); "
                               "prefork pushed more (57000 req/s) but left clients waiting: "
                               "129 attempts failed as io_timeout (129);")
    assert "threadpool came last with 12000 req/s" in sentence
    assert "closed_early (1797)" in sentence

    sentence = fast(57000, 0)  # now prefork alone failed anyone: last, whatever its req/s
    assert "forking won with 31000 req/s" in sentence
    assert ("prefork came last despite 57000 req/s, as it left clients waiting: it served 99.9% "
            "of attempts and the rest failed as io_timeout (129)") in sentence


def test_throughput_that_peaks_then_falls_is_not_called_flat():
    """A model that scaled to 10 users and then collapsed at 50 is described as such."""
    runs = [
        run("threadpool", "slow-io", [step(1, 9.6, 106), step(10, 95.0, 110),
                                      step(50, 9.0, 300, share=0.2)]),
        run("threading", "slow-io", [step(1, 9.6, 106), step(10, 95.0, 110), step(50, 470.0, 130)]),
    ]
    results = parse(document(runs, ["slow-io"]))
    sentence = verdict(results, results.scenarios[0])
    assert "threadpool came last" in sentence
    assert "peaked at 95.0 req/s with 10 users, then fell to 9.00 req/s with 50" in sentence
    assert "stayed flat" not in sentence


def test_repeats_show_medians_and_spreads_and_how_stable_the_ranking_was(tmp_path):
    """Three repeats: every cell is the median with its spread (min–max); models whose
    spreads overlap are level; the verdict says in how many repeats the winner won."""
    def slow(model: str, rps: float, repeat: int) -> dict:
        return run(model, "slow-io", [step(1, 9.8, 104), step(10, rps / 5, 110),
                                      step(50, rps, 120 + repeat)], repeat=repeat)

    runs = [slow("select", rps, r) for r, rps in enumerate((450, 470, 430))]
    runs += [slow("asyncio", rps, r) for r, rps in enumerate((440, 480, 420))]
    runs += [slow("sequential", rps, r) for r, rps in enumerate((9.7, 9.9, 9.8))]
    doc = document(runs, ["slow-io"])
    written = write_report(write(tmp_path, doc))
    text = written.markdown.read_text(encoding="utf-8")
    rows = {row["model"]: row for row in md_table(text, "### At 50 users")}
    assert rows["select"]["req/s"].replace("**", "") == "450 (430–470)"
    assert rows["asyncio"]["req/s"].replace("**", "") == "440 (420–480)"
    assert rows["sequential"]["p99 ms"].replace("**", "") == "121 (120–122)"
    assert rows["select"]["procs"] == "1 (1–1)"  # a spread for every figure, even a flat one
    assert "the median of 3 repeats" in text
    sentence = dict(verdicts(parse(doc)))["slow-io"]
    assert "select and asyncio were level at the top" in sentence  # 430–470 meets 420–480
    assert ("Over 3 repeats, the winner (asyncio or select) was first in 3 of 3 and the "
            "loser (sequential) last in 3 of 3.") in sentence
    csv_rows = list(csv.DictReader(written.csv.open(encoding="utf-8")))
    assert len(csv_rows) == 3 * 3 * 3 and {r["repeat"] for r in csv_rows} == {"1", "2", "3"}
    assert sorted(float(r["rps"]) for r in csv_rows
                  if r["model"] == "select" and r["step"] == "50") == [430, 450, 470]
    # rebuilt from results.json alone: the same report
    again = tmp_path / "again"
    assert write_report(written.markdown.parent / "results.json", again).markdown.read_text(
        encoding="utf-8") == text


def test_agreement_of_runs_side_by_side(tmp_path):
    """testbed report --agree: each run's first and last models side by side, whether they
    agree, and which cells moved 10% or more between the runs, telling apart those that
    moved no more than their windows' counts do by chance."""
    paths = []
    for index in range(3):
        runs = slow_io_runs()
        if index == 1:  # 17 replies in 2 s instead of 19.6: 14%, within what a count moves
            runs[0]["summary"]["steps"][0] = step(1, 8.5, 104)
        if index == 2:  # threading collapsed (failing, so last), and served half at 10 users
            runs[1]["summary"]["steps"][2] = step(50, 5.0, 4900, failures={"io_timeout": 100})
            runs[1]["summary"]["steps"][1]["rps"] = 50.0
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        paths.append(write(folder, document(runs, ["slow-io"])))
    result = subprocess.run([sys.executable, "-m", "testbed", "report", str(paths[0]),
                             "--agree", str(paths[1])], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "| slow-io | first threading; last sequential | first threading; last sequential " \
           "| yes |" in result.stdout
    assert "1 of 1 scenarios name the same first and last models in all 2 runs." in result.stdout
    three = subprocess.run([sys.executable, "-m", "testbed", "report", str(paths[0]),
                            "--agree", str(paths[1]), str(paths[2])], capture_output=True,
                           text=True, timeout=60)
    assert three.returncode == 0, three.stderr
    assert "| no |" in three.stdout and "0 of 1 scenarios" in three.stdout
    assert "moved most: slow-io threading at 10, rps 95.0, 95.0, 50.0 (47%)" in three.stdout
    assert ("moved most: slow-io sequential at 1, rps 9.8, 8.5, 9.8 (13%, within its "
            "counts)") in three.stdout
    assert "Of the 2 that moved more, 1 moved within what their windows count" in three.stdout
    assert "at 50," not in three.stdout  # a step that failed attempts is past capacity
    assert list(tmp_path.glob("run*/report.md")) == []  # --agree writes nothing


def test_the_hosts_steal_is_shown_beside_what_moved(tmp_path):
    """A comparison records how much of the machine's CPU time its hypervisor took, over
    all of it and in each run: the report's head says so and names the run that lost the
    most, and --agree shows it per comparison and beside each cell that moved most (the
    share in the cell's window where it was counted, in its run otherwise)."""
    paths = []
    for index, (overall, stolen) in enumerate(((0.01, 0.02), (0.12, 0.25))):
        runs = slow_io_runs()
        for record in runs:
            record["host_steal"] = stolen / 2
        runs[0]["host_steal"] = stolen
        if index == 1:  # its window's own share, where counted, rather than its run's
            runs[0]["summary"]["steps"][0] = step(1, 7.0, 104) | {"host_steal": 0.3}
        doc = document(runs, ["slow-io"])
        doc["metadata"]["host_steal"] = overall
        folder = tmp_path / f"run{index}"
        folder.mkdir()
        paths.append(write(folder, doc))
    results = parse(json.loads(paths[1].read_text(encoding="utf-8")))
    head = dict(facts(results))
    assert head["Host steal"].startswith("12.0% of the machine's CPU time went to other work")
    assert "the most in one run: 25.0% (sequential, slow-io)" in head["Host steal"]
    agreed = subprocess.run([sys.executable, "-m", "testbed", "report", str(paths[0]),
                             "--agree", str(paths[1])], capture_output=True, text=True,
                            timeout=60)
    assert agreed.returncode == 0, agreed.stderr
    assert "The machine's hypervisor took 1.0%, 12.0% of its CPU time" in agreed.stdout
    assert "moved most: slow-io sequential at 1, rps 9.8, 7.0" in agreed.stdout
    assert "host steal while measured 2.0%, 30.0%)" in agreed.stdout
    table = scenario_section(write_report(paths[1]).markdown.read_text(encoding="utf-8"),
                             "slow-io")
    assert ("host steal: the host took 5% or more of the machine's CPU time while these were "
            "measured (the most in any repeat): sequential (25.0%), threading (12.5%)") in table
    quiet = scenario_section(write_report(paths[0]).markdown.read_text(encoding="utf-8"),
                             "slow-io")
    assert "host steal" not in quiet  # 2% and 1%: below the note's 5%
    older = document(slow_io_runs(), ["slow-io"])  # a results.json from before: no line
    assert "Host steal" not in dict(facts(parse(older)))


def test_counts_that_cannot_tell_models_apart_are_level():
    """One window's counts carry their own noise: 146 of 150 attempts served is level with
    150 of 150 (their 95% intervals overlap), 75 of 150 is not; 360 replies in a second
    are level with 400, 300 are not."""
    def denial(model: str, share: float) -> dict:
        return run(model, "denial", [step(100, 150 * share, 500, share=share, window=1.0)])

    doc = document([denial("select", 1.0), denial("forking", 146 / 150),
                    denial("threadpool", 0.5)], ["denial"])
    results = parse(doc)
    sentence = verdict(results, results.scenarios[0])
    assert "select and forking were level at the top" in sentence, sentence
    assert "threadpool came last with 50.0% of attempts served" in sentence

    runs = [run(model, "slow-io", [step(1, 9.8, 100), step(50, rps, 110, window=1.0)])
            for model, rps in (("threading", 400), ("select", 360), ("forking", 300))]
    results = parse(document(runs, ["slow-io"]))
    sentence = verdict(results, results.scenarios[0])
    assert "threading and select were level at the top with 400 req/s" in sentence, sentence
    assert "forking came last with 300 req/s" in sentence


def test_the_bench_figure_is_the_median_of_its_samples_and_its_pipelines_are_tabled(tmp_path):
    """fast's capacity: the median of the bench samples, shown with their spread; models
    with three samples are level when their medians are within 20%, and with more (here
    two repeats of three) when a rank test of their samples cannot tell them apart; the
    pipelined runs make a table and a plot of CPU per request against the requests in
    flight."""
    def capacity(cpus: list[float], depths: dict[int, float]) -> dict:
        samples = [{"pipeline": 1, "ok": True, "rps": 1e6 / cpu,
                    "server_cpu_us_per_request": cpu} for cpu in cpus]
        record = bench(sorted(cpus)[1], 1e6 / sorted(cpus)[1])
        record["samples"] = samples
        record["pipelines"] = [{"pipeline": 1, "ok": True,
                                "server_cpu_us_per_request": sorted(cpus)[1],
                                "rps": 1e6 / sorted(cpus)[1]}] + [
            {"pipeline": depth, "ok": True, "server_cpu_us_per_request": cpu, "rps": 1e6 / cpu}
            for depth, cpu in depths.items()]
        return record

    runs = [run("select", "fast", [step(1, 1000, 1), step(50, 4000, 20)],
                capacity=capacity([15.0, 13.0, 18.0], {4: 5.0, 16: 1.6})),
            run("reuseport", "fast", [step(1, 1000, 1), step(50, 4000, 19)],
                capacity=capacity([19.0, 17.5, 21.0], {4: 6.0, 16: 2.0})),
            run("asyncio", "fast", [step(1, 1000, 1), step(50, 4000, 25)],
                capacity=capacity([30.0, 28.0, 33.0], {4: 10.0, 16: 4.0}))]
    doc = document(runs, ["fast"])
    results = parse(doc)
    sentence = verdict(results, results.scenarios[0])
    # 15.0 (13.0-18.0) and 19.0 (17.5-21.0): the samples overlap, the medians are 21% apart
    assert sentence.startswith("fast, 50 users: select won with 15.0 µs"), sentence
    assert "asyncio came last with 30.0 µs" in sentence
    # a second repeat: select's medians 15.0 and 21.0, reuseport's 19.0 and 27.0; the
    # medians of the repeats (18.0 and 23.0) are 22% apart, but their six samples each mix
    # (Mann-Whitney p 0.13): level
    second = [run("select", "fast", [step(1, 1000, 1), step(50, 4000, 20)], repeat=1,
                  capacity=capacity([21.0, 20.5, 21.5], {4: 5.0, 16: 1.6})),
              run("reuseport", "fast", [step(1, 1000, 1), step(50, 4000, 19)], repeat=1,
                  capacity=capacity([27.0, 26.5, 27.5], {4: 6.0, 16: 2.0})),
              run("asyncio", "fast", [step(1, 1000, 1), step(50, 4000, 25)], repeat=1,
                  capacity=capacity([31.0, 29.0, 33.0], {4: 10.0, 16: 4.0}))]
    repeated = parse(document(runs + second, ["fast"]))
    sentence = verdict(repeated, repeated.scenarios[0])
    assert "select and reuseport were level at the top" in sentence, sentence
    written = write_report(write(tmp_path, doc))
    text = written.markdown.read_text(encoding="utf-8")
    summary_rows = md_table(scenario_section(text, "fast"), "### At 50 users")
    assert summary_rows[0]["bench µs/req"].replace("**", "") == "15.0 (13.0–18.0)"
    rows = {row["model"]: row for row in md_table(scenario_section(text, "fast"),
                                                  "### Requests in flight")}
    assert rows["select"]["16 in flight µs/req"].replace("**", "") == "1.6"
    assert rows["asyncio"]["req per CPU s, 16 vs 1"] == "7.5×"
    assert (written.markdown.parent / "fast-pipeline.png").stat().st_size > 0


def sampled(cpus: list[float], *, served: int = 10) -> dict[str, Any]:
    """A bench record of several samples, its figures the median sample's."""
    middle = sorted(cpus)[(len(cpus) - 1) // 2]
    record = bench(middle, 1e6 / middle, served=served)
    record["samples"] = [{"pipeline": 1, "ok": True, "rps": 1e6 / cpu,
                          "server_cpu_us_per_request": cpu} for cpu in cpus]
    return record


def test_one_in_flight_is_the_median_sample_as_the_bench_figure(tmp_path):
    """The comparison benches the pipelined depths in the model's run, beside its first
    sample: the requests-in-flight table's depth 1 is still the median of the samples, the
    figure the summary table shows, and the ratio against 16 in flight is taken from it."""
    record = sampled([22.0, 14.0, 15.0, 16.0, 13.0, 17.0])  # first 22.0, median 15.0
    record["pipelines"] = [{"pipeline": 1, "ok": True, "server_cpu_us_per_request": 22.0,
                            "rps": 1e6 / 22.0},
                           {"pipeline": 16, "ok": True, "server_cpu_us_per_request": 1.5,
                            "rps": 1e6 / 1.5}]
    runs = [run("select", "fast", [step(1, 1000, 1), step(50, 4000, 20)], capacity=record),
            run("asyncio", "fast", [step(1, 1000, 1), step(50, 4000, 25)],
                capacity=sampled([30.0] * 6))]
    text = write_report(write(tmp_path, document(runs, ["fast"]))).markdown.read_text(
        encoding="utf-8")
    rows = {row["model"]: row for row in md_table(scenario_section(text, "fast"),
                                                  "### Requests in flight")}
    assert rows["select"]["1 in flight µs/req"].replace("**", "") == "15.0"
    assert rows["select"]["req per CPU s, 16 vs 1"].replace("**", "") == "10.0×"


def test_the_ratio_interval_is_the_rank_tests_interval():
    """Moses' interval of the ratio: from the pairwise ratios, cut where the two-sided
    Mann-Whitney test at 5% would reject (U <= 0 of 16 with 4 each, U <= 5 of 36 with 6
    each, as in the test's tables); none with 3 each, where the test never goes below 0.1."""
    assert ratio_interval([1, 2, 3], [4, 5, 6]) is None
    assert ratio_interval([1, 2, 3, 4], [5, 6, 7, 8]) == (5 / 4, 8 / 1)  # all 16 ratios
    ratios = sorted(b / a for a in range(1, 7) for b in range(7, 13))
    assert ratio_interval(range(1, 7), range(7, 13)) == (ratios[5], ratios[30])
    low, high = ratio_interval([10, 11, 12, 13], [11.5, 12, 12.5, 13.5])
    assert low < 1 < high  # mixed samples: cannot be told apart
    assert ratio_interval([1, 2, 3, 4], [0, 1, 2, 3]) is None  # a ratio needs positive values


def test_the_paired_interval_is_the_signed_rank_tests_interval():
    """The interval of the ratio within pairs: from the Walsh averages of the logarithms,
    cut at the Wilcoxon signed-rank test's two-sided 5% critical values (0 for 6 pairs, 2
    for 7, 3 for 8, 8 for 10, 29 for 16, 52 for 20, as in the test's tables); none under 6
    pairs, where the test never goes below 0.0625. Pairs whose ratio holds steady give a
    narrow interval even when each side's figures wander by half."""
    from testbed.stats import paired_ratio_interval, signed_rank_critical

    assert [signed_rank_critical(n, 0.025) for n in (5, 6, 7, 8, 10, 16, 20)] == [
        None, 0, 2, 3, 8, 29, 52]
    assert paired_ratio_interval([(1.0, 1.1)] * 5) is None
    assert paired_ratio_interval([(1.0, 1.1)] * 6) == pytest.approx((1.1, 1.1))
    drifting = [(speed, speed * ratio) for speed, ratio in
                zip([10, 15, 9, 14, 11, 16, 10, 13], [1.10, 1.12, 1.09, 1.11, 1.13, 1.10, 1.12, 1.11],
                    strict=True)]
    low, high = paired_ratio_interval(drifting)
    assert 1.09 <= low < high <= 1.13
    first, second = zip(*drifting, strict=True)
    low, high = ratio_interval(first, second)  # the same figures as two samples
    assert low < 1 < high
    assert paired_ratio_interval([(1.0, 2.0)] * 5 + [(0.0, 1.0)]) is None  # positive values


def test_bench_samples_are_told_apart_by_the_interval_of_their_ratio_not_by_a_tolerance():
    """With six bench samples each, CPU per request is level when the 95% interval of the
    ratio of the samples holds 1 (a rank test cannot tell them apart), and apart when it
    leaves 1 out, however close to 1 it lies: 3-7% more, shown by every sample, is not
    level, or a gap near 10% would be level in one comparison and apart in the next as its
    interval fell on one side of the line or the other. Medians 8% apart whose interval
    reaches 12% are apart too."""
    runs = [run(model, "fast", [step(1, 1000, 1), step(50, 4000, 20)], capacity=sampled(cpus))
            for model, cpus in (
                ("select", [15.0, 15.1, 15.2, 15.3, 15.4, 15.5]),     # median 15.2
                ("threadpool", [15.1, 15.2, 15.3, 15.4, 15.5, 15.6]),  # 0.99-1.03: holds 1
                ("reuseport", [15.8, 15.9, 16.0, 16.1, 16.2, 16.3]),  # 1.03-1.07: apart
                ("threading", [16.1, 16.2, 16.4, 16.6, 16.8, 17.2]),  # 8% more, 1.06-1.12
                ("asyncio", [13.0, 15.0, 18.5, 19.5, 22.0, 30.0]),    # 26%, 0.87-1.94: mixed
                ("forking", [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]))]
    results = parse(document(runs, ["fast"]))
    found = winner_and_loser(results, results.scenarios[0], results.runs_for("fast"))
    assert found == ({"select", "threadpool", "asyncio"}, {"forking"}), found
    # three samples each: the 20% tolerance decides, as before (17.4 is level with 15.0,
    # 19.5 is not)
    few = [run(model, "fast", [step(1, 1000, 1), step(50, 4000, 20)],
               capacity=sampled([cpu * 0.95, cpu, cpu * 1.05]))
           for model, cpu in (("select", 15.0), ("threading", 17.4), ("asyncio", 19.5),
                              ("forking", 42.0))]
    results = parse(document(few, ["fast"]))
    found = winner_and_loser(results, results.scenarios[0], results.runs_for("fast"))
    assert found == ({"select", "threading"}, {"forking"}), found


def test_a_lone_winner_by_cpu_says_how_far_behind_the_next_was_and_how_sure():
    """The verdict of a winner the bench's runs set apart names the next model, its gap and
    the interval of the ratio that set it apart: what a reader needs to judge a close call."""
    runs = [run(model, "fast", [step(1, 1000, 1), step(50, 4000, 20)], capacity=sampled(cpus))
            for model, cpus in (
                ("select", [15.0, 15.1, 15.2, 15.3, 15.4, 15.5]),
                ("threading", [16.1, 16.2, 16.4, 16.6, 16.8, 17.2]),
                ("forking", [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]))]
    results = parse(document(runs, ["fast"]))
    sentence = verdict(results, results.scenarios[0])
    assert sentence.startswith("fast, 50 users: select won with 15.2 µs"), sentence
    assert ("; next came threading, 8% more CPU per request (95% interval of the ratio of "
            "their runs: 6% to 12% more); forking came last") in sentence, sentence


def test_a_results_json_from_before_the_depth_records_had_one_shape_reads_the_same():
    """Samples and pipeline depths stored with ``cpu_us_per_request`` (before they were
    ``server_cpu_us_per_request``, as run_pipeline's records) give the same figures."""
    def capacity(key: str) -> dict:
        record = bench(15.0, 1e6 / 15.0)
        record["samples"] = [{"pipeline": 1, "ok": True, "rps": 1e6 / cpu, key: cpu}
                             for cpu in (15.0, 13.0, 18.0)]
        record["pipelines"] = [{"pipeline": depth, "ok": True, "rps": 1e6 / cpu, key: cpu}
                               for depth, cpu in ((1, 15.0), (16, 1.6))]
        return record

    def read(key: str):
        runs = [run("select", "fast", [step(1, 1000, 1)], capacity=capacity(key))]
        return parse(document(runs, ["fast"])).runs[0].capacity

    old, new = read("cpu_us_per_request"), read("server_cpu_us_per_request")
    assert old == new
    assert old.spread["cpu_us_per_request"] == (13.0, 18.0)
    assert [(d.pipeline, d.cpu_us_per_request) for d in old.pipelines] == [(1, 15.0), (16, 1.6)]


def test_models_the_bench_runs_cannot_decide_are_named_with_the_end_they_face():
    """Undecided: the interval of the ratio holds 1 but reaches beyond 10% of it, so the
    runs can neither call the model level with the winner (or loser) nor show it close;
    the comparison measures those again. Close (holding 1 within 10%) and apart (leaving
    1 out) models are decided."""
    from testbed.reporting.sentences import undecided

    runs = [run(model, "fast", [step(1, 1000, 1), step(50, 4000, 20)], capacity=sampled(cpus))
            for model, cpus in (
                ("select", [15.0, 15.1, 15.2, 15.3, 15.4, 15.5]),
                ("threadpool", [15.1, 15.2, 15.3, 15.4, 15.5, 15.6]),  # close: 0.99-1.03
                ("reuseport", [15.8, 15.9, 16.0, 16.1, 16.2, 16.3]),  # apart: 1.03-1.07
                ("asyncio", [13.0, 15.0, 18.5, 19.5, 22.0, 30.0]),    # 0.87-1.94: undecided
                ("threading", [30.0, 31.0, 32.0, 33.0, 34.0, 35.0]),  # apart from both ends
                ("forking", [40.0, 41.0, 42.0, 43.0, 44.0, 45.0]),
                ("prefork", [36.0, 39.0, 44.0, 47.0, 52.0, 60.0]))]   # last; forking undecided
    results = parse(document(runs, ["fast"]))
    assert undecided(results, results.scenarios[0], results.runs_for("fast")) == [
        ("select", "asyncio"), ("prefork", "forking")]
    decided = [found for found in runs if found["model"] not in ("asyncio", "prefork")]
    results = parse(document(decided, ["fast"]))
    assert undecided(results, results.scenarios[0], results.runs_for("fast")) == []


def test_windows_measured_side_by_side_decide_the_two_models_they_pair():
    """Two models that their bench runs taken apart leave undecided (0.87-1.94) are decided
    by the pairs of windows a settling round took side by side: apart where each pair says
    20% more, level where each says within 3%, from either model's record; and the
    report rebuilt from results.json reads them back."""
    from testbed.reporting.sentences import undecided

    def runs_with(ratios: list[float]) -> list[dict[str, Any]]:
        ends = sampled([15.0, 15.1, 15.2, 15.3, 15.4, 15.5])
        ends["paired"] = {"asyncio": [[cpu, cpu * ratio] for cpu, ratio
                                      in zip([15, 19, 14, 21, 16, 25, 15, 18], ratios, strict=True)]}
        return [run("select", "fast", [step(1, 1000, 1), step(50, 4000, 20)], capacity=ends),
                run("asyncio", "fast", [step(1, 1000, 1), step(50, 4000, 20)],
                    capacity=sampled([13.0, 15.0, 18.5, 19.5, 22.0, 30.0])),
                run("forking", "fast", [step(1, 1000, 1), step(50, 4000, 20)],
                    capacity=sampled([40.0, 41.0, 42.0, 43.0, 44.0, 45.0]))]

    unpaired = runs_with([1.2] * 8)
    del unpaired[0]["capacity"]["paired"]
    results = parse(document(unpaired, ["fast"]))
    assert undecided(results, results.scenarios[0], results.runs_for("fast")) == [
        ("select", "asyncio")]
    for ratios, top in (([1.18, 1.22, 1.2, 1.19, 1.21, 1.2, 1.23, 1.17], {"select"}),
                        ([1.01, 0.99, 1.02, 1.0, 0.98, 1.01, 1.03, 1.0], {"select", "asyncio"})):
        results = parse(json.loads(json.dumps(document(runs_with(ratios), ["fast"]))))
        assert undecided(results, results.scenarios[0], results.runs_for("fast")) == []
        found = winner_and_loser(results, results.scenarios[0], results.runs_for("fast"))
        assert found == (top, {"forking"}), ratios
    select = results.runs_for("fast")[0]
    assert len(select.capacity.paired["asyncio"]) == 8
    apart = parse(document(runs_with([1.18, 1.22, 1.2, 1.19, 1.21, 1.2, 1.23, 1.17]), ["fast"]))
    assert "interval of the ratio of their windows side by side: 18% to 22% more" in verdict(
        apart, apart.scenarios[0]), verdict(apart, apart.scenarios[0])


def test_the_summary_names_the_models_measured_in_settling_rounds(tmp_path):
    settled = sampled([13.0, 15.0, 18.5, 19.5, 22.0, 30.0, 17.0, 16.0])
    settled["settling_runs"] = 1
    runs = [run("select", "fast", [step(1, 1000, 1), step(50, 4000, 20)],
                capacity=sampled([15.0, 15.1, 15.2, 15.3, 15.4, 15.5])),
            run("asyncio", "fast", [step(1, 1000, 1), step(50, 4000, 25)], capacity=settled)]
    text = write_report(write(tmp_path, document(runs, ["fast"]))).markdown.read_text(
        encoding="utf-8")
    assert ("settling rounds: once the planned runs were over, these had more capacity runs"
            in text), text
    assert ": asyncio (1); their figures are over every run" in text, text
