"""``testbed load --lab``: the server on h1, the locust master on h2, workers on h3..hN."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import one_line
from tests.lab.conftest import TESTBED, run


def test_a_load_across_the_lab_completes_and_its_workers_add_up(make_lab, lab_env, tmp_path):
    lab = make_lab("--hosts", "4")
    hosts = {entry["name"]: entry for entry in lab.state["hosts"]}
    out = tmp_path / "results"
    done = run([*TESTBED, "load", "--lab", lab.name, "--model", "select", "--users", "4",
                "--run-time", "1s", "--warmup", "0.5s", "--workers", "2", "--out", str(out)],
               {**lab_env, "TESTBED_CALIBRATION": str(tmp_path / "calibration.json")})
    assert done.returncode == 0, done.stderr
    summary = json.loads(next(out.glob("*/summary.json")).read_text())
    assert summary["complete"], summary["error"]
    placed = summary["lab"]
    assert placed["lab"] == lab.name
    assert placed["server"] == {"host": "h1", "namespace": hosts["h1"]["namespace"],
                                "address": hosts["h1"]["ipv4"]}
    assert placed["master"]["host"] == "h2"
    assert [w["host"] for w in placed["workers"]] == ["h3", "h4"]
    assert f"listening on tcp://{hosts['h1']['ipv4']}:" in done.stderr
    step = summary["steps"][0]
    assert len(step["workers"]) == 2 and all(n > 0 for n in step["workers"].values())
    assert sum(step["workers"].values()) == step["requests"] > 0
    generator = summary["generator"]
    assert sum(generator["per_worker"].values()) == generator["requests_all_phases"]
    # nothing the run started is left in the lab's hosts
    status = json.loads(lab.lab("status", "--name", lab.name, "--json").stdout)
    assert status[0]["running"] == {}


def test_a_load_on_a_lab_that_is_not_up_is_one_line(lab_env, tmp_path: Path):
    done = run([*TESTBED, "load", "--lab", "nolab", "--model", "select", "--out",
                str(tmp_path)], lab_env)
    assert done.returncode == 2
    assert "lab nolab is not up" in one_line(done.stderr)
    assert not any(tmp_path.iterdir())


def test_a_load_across_the_lab_has_no_web_ui(make_lab, lab_env, tmp_path: Path):
    lab = make_lab("--hosts", "2")
    done = run([*TESTBED, "load", "--lab", lab.name, "--web", "--out", str(tmp_path)], lab_env)
    assert done.returncode == 2 and "--web with --lab" in one_line(done.stderr)


@pytest.mark.slow  # 6-8 s: a whole comparison, for one model
def test_a_comparison_across_the_lab_records_its_placement(make_lab, lab_env, tmp_path):
    lab = make_lab("--hosts", "3", "--rate", "100mbit")
    out = tmp_path / "results"
    done = run([*TESTBED, "compare", "--lab", lab.name, "--models", "select", "--scenarios",
                "fast", "--steps", "2", "--run-time", "0.5", "--warmup", "0.3", "--workers", "1",
                "--repeat", "1", "--out", str(out), "--quiet"],
               {**lab_env, "TESTBED_CALIBRATION": str(tmp_path / "calibration.json")})
    assert done.returncode == 0, done.stderr
    folder = next(out.glob("compare-*"))
    meta = json.loads((folder / "results.json").read_text())["metadata"]
    assert meta["lab"]["lab"] == lab.name and meta["lab"]["server"]["host"] == "h1"
    assert meta["lab"]["conditions"]["h1"]["rate"] == "100mbit"
    report = (folder / "report.md").read_text()
    assert f"across lab {lab.name}" in report and "every link: rate 100mbit" in report
