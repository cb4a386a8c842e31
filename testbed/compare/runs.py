"""Running the comparison's runs one by one, and writing what they measured to results.json."""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from testbed.bench.pipeline import depth_record
from testbed.bench.summary import median_window
from testbed.compare import contenders
from testbed.compare.plan import ComparisonPlan, PlannedRun, versus_run_seconds
from testbed.compare.retake import RETAKE_STEAL, fold_retakes
from testbed.compare.scale import run_scale_one
from testbed.reporting.data import FORMAT


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    return {"hostname": socket.gethostname(), "cpu_model": cpu_model(), "cores": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version()}


def make_out_dir(base: Path, now: datetime) -> Path:
    """A new ``compare-<timestamp>`` directory under ``base`` (OSError if it can't be made)."""
    stamp = now.strftime("%Y%m%d-%H%M%S")
    base.mkdir(parents=True, exist_ok=True)
    for suffix in ("", *(f"-{n}" for n in range(2, 100))):
        path = base / f"compare-{stamp}{suffix}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"too many comparisons started at {stamp} in {base}")


def run_dir_name(run: PlannedRun) -> str:
    """``<scenario>-<model>``, ``-r<N>`` from the second repeat on, ``-retake`` for a
    retake (testbed.compare.retake)."""
    suffix = (f"-r{run.repeat + 1}" if run.repeat else "") + ("-retake" if run.retake else "")
    return f"{run.scenario.name}-{run.model}{suffix}"


def load_spec(plan: ComparisonPlan, run: PlannedRun, out_dir: Path,
              target: str | None = None, target_pid: int | None = None) -> Any:
    """The LoadSpec of one (model, scenario): its own server, every step in one locust run
    (or, with ``target``, the server started for it by :func:`http_server`).

    ``testbed load`` keeps its files in ``out_dir/<scenario>-<model>/``.
    """
    from testbed.load import LoadSpec

    scenario = run.scenario
    return LoadSpec(
        server_options=[] if target else
        scenario.server_options(*contenders.server_options(run.model)),
        target=target, target_pid=target_pid, allow_remote=False,
        steps=list(scenario.steps), step_time=run.timing.window, warmup=run.timing.warmup,
        first_warmup=run.timing.first,
        spawn_rate=None, mode=scenario.mode, payload_size=scenario.payload_size, udp=False,
        expect=scenario.service, think_time=scenario.think_time,
        # within every warm-up, so that each window opens on users that have all begun
        start_jitter=min(scenario.start_jitter,
                         run.timing.schedule(len(scenario.steps)).shortest_warmup),
        connect_timeout=scenario.connect_timeout, io_timeout=scenario.io_timeout,
        workers=plan.workers, pin=plan.pin, out_dir=out_dir,
        run_id=run_dir_name(run), lab=plan.lab and plan.lab["lab"],
        locust_html=False)  # the comparison writes its own report (locust's: 1 MB a run)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def worth_sampling(run: PlannedRun, records: list[dict[str, Any]]) -> bool:
    """Whether a later capacity sample of ``run``'s model is worth taking: not where its run
    crashed, nor where its first capacity run got no reply at all (a listen queue the idle
    connections filled: a fresh server would only make wrk wait as long again, about 5 s,
    to find the same); for a side-by-side run, neither of its two models'."""
    for record in records:
        if (record["model"] in (run.model, run.versus)
                and (record["scenario"], record["repeat"]) == (run.scenario.name, run.repeat)
                and not record.get("sample")):
            capacity = record.get("capacity")
            if not (record["status"] == "ok" and capacity is not None
                    and capacity.get("rps") != 0):
                return False
    return True


def drop_unneeded_samples(plan: ComparisonPlan, index: int, records: list[dict[str, Any]]) -> None:
    """Once ``plan.runs[index]`` is done, drop the later samples no longer worth taking
    (:func:`worth_sampling`), so that the last run taken is the plan's last, and what
    follows the runs (settling rounds, retakes: :func:`testbed.compare.afterwards.runs_after`)
    follows it. (Dropped only when reached, a last sample not worth taking ended the
    comparison with neither: the HTTP comparison's last runs are idle's second wrk
    samples, which the servers the idle connections block do not get.)"""
    done = records[-1]
    if done.get("sample"):  # only a model's own run says whether its samples are worth it
        return
    plan.runs[index + 1:] = [later for later in plan.runs[index + 1:]
                             if not later.sample or worth_sampling(later, [done])]


def run_one(plan: ComparisonPlan, run: PlannedRun, out_dir: Path, note: Callable[[str], None]) -> dict:
    """One record for results.json; a crash or an error becomes a 'crashed' record."""
    from testbed.load import run_load

    if run.scenario.scale is not None:  # no locust: testbed bench at each step (scale.py)
        return run_scale_one(plan, run, out_dir / run_dir_name(run), note)
    if run.versus:  # a settling round's two models side by side, folded by fold_samples()
        return versus_sample(run, out_dir / run_dir_name(run), note)
    if run.sample:  # one more bench (or wrk) sample, folded into its run by fold_samples()
        started = time.monotonic()
        run_dir = out_dir / run_dir_name(run)
        note(f"capacity: testbed {run.scenario.capacity_tool}")
        taken = (run_wrk(run, run_dir, run.sample) if run.scenario.wrk is not None
                 else bench_sample(run, run_dir, run.sample))
        return {"model": run.model, "scenario": run.scenario.name, "repeat": run.repeat,
                "sample": run.sample, "settling": run.settling, "bench": taken,
                "status": "ok" if taken.get("ok") else "crashed", "error": taken.get("error"),
                "duration_s": round(time.monotonic() - started, 3)}
    started = time.monotonic()
    record: dict[str, Any] = {"model": run.model, "scenario": run.scenario.name,
                              "repeat": run.repeat, **({"retake": 1} if run.retake else {}),
                              "started": datetime.now().astimezone().isoformat(timespec="seconds"),
                              "out_dir": str(out_dir / run_dir_name(run))}
    try:
        if run.scenario.service == "http":
            with http_server(plan, run) as (target, pid):
                summary = run_load(load_spec(plan, run, out_dir, target, pid), progress=note)
        else:
            summary = run_load(load_spec(plan, run, out_dir), progress=note)
        if run.scenario.capacity is not None:
            note("capacity: testbed bench")
            record["capacity"] = run_bench(plan, run, out_dir / run_dir_name(run))
        if run.scenario.wrk is not None:
            note("capacity: testbed wrk")
            record["capacity"] = run_wrk(run, out_dir / run_dir_name(run))
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of one run is that cell's result
        record.update(status="crashed", error=_one_line(exc), summary=None)
    else:
        crashed = not summary.get("complete", True) or bool(summary.get("error"))
        record.update(status="crashed" if crashed else "ok",
                      error=summary.get("error") or ("incomplete run" if crashed else None),
                      summary=summary)
    record["duration_s"] = round(time.monotonic() - started, 3)
    return record


@contextmanager
def http_server(plan: ComparisonPlan, run: PlannedRun) -> Iterator[tuple[str, int]]:
    """The server of an HTTP run, a model or a production server, started here (on the first
    CPU with --pin) with the scenario's idle connections held open: its http:// URL and pid.

    testbed load starts the project's models itself; the production servers are another
    command, so every HTTP run starts its server here, the same way for all, and the load
    is given the URL and the pid whose process tree it samples."""
    from testbed.processes import cpu_affinity, start_server
    from testbed.wrk.command import open_idle

    cpus = sorted(os.sched_getaffinity(0))[:1] if plan.pin else None
    with cpu_affinity(cpus):
        server = start_server(run.scenario.server_options(*contenders.server_options(run.model)))
    idle: list[socket.socket] = []
    try:
        if run.scenario.idle:
            idle, _ = open_idle(server.host, server.port, run.scenario.idle)
        yield f"http://{server.host}:{server.port}", server.pid
    finally:
        for sock in idle:
            sock.close()
        server.cleanup()


def versus_sample(run: PlannedRun, run_dir: Path, note: Callable[[str], None]) -> dict:
    """A settling round's sample of ``run.model`` and ``run.versus`` side by side: both
    servers started here (on the first CPU where two are free, as a bench sample's), then
    one ``testbed bench`` (or ``testbed wrk``) ``--target A --versus B --json`` (on the
    other CPU) whose windows alternate between them, kept in ``versus-<B>-<round>.json``:
    one record holding each model's windows and their pairs."""
    from testbed.processes import cpu_affinity, start_server

    tool = run.scenario.capacity_tool
    assert tool is not None
    started = time.monotonic()
    two = len(os.sched_getaffinity(0)) >= 2
    servers = []
    note(f"capacity: testbed {tool}, {run.model} and {run.versus} side by side")
    try:
        with cpu_affinity(sorted(os.sched_getaffinity(0))[:1] if two else None):
            for model in (run.model, run.versus):
                servers.append(start_server(
                    run.scenario.server_options(*contenders.server_options(model))))
        first, second = servers
        # tcp://HOST:PORT: testbed wrk takes it for http:// too
        command = [sys.executable, "-m", "testbed", tool,
                   "--target", first.endpoint.url, "--server-pid", str(first.pid),
                   "--versus", second.endpoint.url, "--versus-pid", str(second.pid),
                   *run.scenario.versus_options(), "--json", *(["--pin"] if two else [])]
        taken = _capacity_run(command, versus_run_seconds(run.scenario), run_dir,
                              f"versus-{run.versus}-{run.settling}")
    except Exception as exc:  # noqa: BLE001 - a server that would not start: a failed sample
        taken = {"ok": False, "error": _one_line(exc)}
    finally:
        for server in servers:
            server.cleanup()
    sides = [_side(taken, key) for key in ("target", "versus")]
    return {"model": run.model, "scenario": run.scenario.name, "repeat": run.repeat,
            "sample": run.sample, "settling": run.settling, "versus": run.versus,
            "bench": sides[0], "versus_bench": sides[1], "pairs": taken.get("pairs") or [],
            "status": "ok" if taken.get("ok") else "crashed", "error": taken.get("error"),
            "duration_s": round(time.monotonic() - started, 3)}


def _side(taken: dict[str, Any], key: str) -> dict[str, Any]:
    """One server's summary of a side-by-side run (``target`` or ``versus``), marked as a
    bench sample is (:func:`_capacity_run`); the run's failure where it has none."""
    side = taken.get(key)
    if not isinstance(side, dict):
        return {"ok": False, "error": taken.get("error") or "no figures"}
    side = {**side, "ok": bool(taken["ok"]), "command": taken["command"]}
    for window in side.get("windows") or ():
        window["ok"], window["command"] = side["ok"], side["command"]
    return side


def run_wrk(run: PlannedRun, run_dir: Path, sample: int = 0) -> dict[str, Any]:
    """The scenario's capacity: ``testbed wrk --json`` on a fresh server of the same options
    (pinned where two CPUs are free), kept in ``wrk.json`` (``wrk-<sample + 1>.json`` for a
    later sample) and returned; a wrk run that fails is recorded as such."""
    wrk = run.scenario.wrk
    assert wrk is not None
    # its windows (testbed wrk --windows) become the samples in fold_samples, as a bench's do
    return _capacity_run(_capacity_command(run, "wrk", wrk.options()), wrk.seconds, run_dir,
                         f"wrk-{sample + 1}" if sample else "wrk")


def _capacity_command(run: PlannedRun, tool: str, options: list[str]) -> list[str]:
    """``testbed TOOL`` (bench or wrk) with ``--json`` on a fresh server of the run's options
    (its log kept: no --quiet), pinned where two CPUs are free: the server on one core, the
    client on another."""
    model, extra = contenders.server_options(run.model)
    server = [option for option in run.scenario.server_options(model, extra)
              if option != "--quiet"]
    command = [sys.executable, "-m", "testbed", tool, *server, *options, "--json"]
    if len(os.sched_getaffinity(0)) >= 2:
        command.append("--pin")
    return command


def bench_sample(run: PlannedRun, run_dir: Path, sample: int = 0,
                 pipeline: int = 1) -> dict[str, Any]:
    """One ``testbed bench --json`` run of the scenario's capacity on a fresh server of the
    same options, in a process of its own like every server and generator here; its output
    is kept in ``bench-<sample + 1>.json`` (``bench-p<K>.json`` pipelined); a bench that
    fails is recorded as such."""
    capacity = run.scenario.capacity
    assert capacity is not None
    command = _capacity_command(run, "bench", [*capacity.options(pipeline), "--payload-size",
                                               str(run.scenario.payload_size)])
    name = f"bench-{sample + 1}" if pipeline == 1 else f"bench-p{pipeline}"
    return _capacity_run(command, capacity.seconds_of(pipeline), run_dir, name)


def run_bench(plan: ComparisonPlan, run: PlannedRun, run_dir: Path) -> dict[str, Any]:
    """The scenario's capacity as its run measures it: the bench's first sample, with one
    record per pipeline depth in ``pipelines`` (the first at depth 1: that sample). The
    other samples are runs of their own (:attr:`PlannedRun.sample`), which
    :func:`fold_samples` adds."""
    capacity = run.scenario.capacity
    assert capacity is not None
    record = bench_sample(run, run_dir)
    record["samples"] = [depth_record(window, 1) for window in _windows(record)]
    if capacity.pipelines:
        record["pipelines"] = [depth_record(record, 1)] + [
            depth_record(bench_sample(run, run_dir, pipeline=depth), depth)
            for depth in capacity.pipelines]
    return record


def _windows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """A bench run's windows (``testbed bench --windows``): each a summary of its own."""
    return record.get("windows") or [record]


def fold_samples(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bench samples taken in runs of their own, and the windows of a bench or wrk run
    (``--windows``), folded into the record of their run:
    its capacity becomes the JSON of the median window (by server CPU per request) of every
    run's, with every window's figures in ``samples`` in the order taken, how many of
    those runs were settling rounds' in ``settling_runs``, and the windows measured side by
    side with another model (:func:`versus_sample`) as pairs of server CPU per request in
    ``paired`` (by the model faced, this one's first); the pipelined figures stay."""
    extra: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    settled: dict[tuple[str, str, int], int] = {}
    paired: dict[tuple[str, str, int], dict[str, list[list[float]]]] = {}
    for record in records:
        if not record.get("sample"):
            continue
        key = (record["model"], record["scenario"], record["repeat"])
        sides = [(key, record["bench"])]
        if record.get("versus"):  # both models' windows, and their pairs from each side
            other = (record["versus"], *key[1:])
            sides.append((other, record["versus_bench"]))
            pairs = record.get("pairs") or []
            paired.setdefault(key, {}).setdefault(other[0], []).extend(pairs)
            paired.setdefault(other, {}).setdefault(key[0], []).extend(
                [b, a] for a, b in pairs)
        for side, bench in sides:
            extra.setdefault(side, []).append(bench)
            settled[side] = settled.get(side, 0) + bool(record.get("settling"))
    folded = []
    for record in records:
        if record.get("sample"):
            continue
        group = (record["model"], record["scenario"], record["repeat"])
        more = extra.get(group, [])
        capacity = record.get("capacity")
        if capacity is not None and (more or "windows" in capacity):
            first = {key: value for key, value in capacity.items()
                     if key not in ("samples", "pipelines")}
            taken = [window for run in (first, *more) for window in _windows(run)]
            median = {key: value for key, value in median_window(taken).items()
                      if key != "windows"}
            median["samples"] = [depth_record(sample, 1) for sample in taken]
            if "pipelines" in capacity:
                median["pipelines"] = capacity["pipelines"]
            if settled.get(group):  # bench runs of settling rounds (testbed.compare.settle)
                median["settling_runs"] = settled[group]
            if group in paired:  # {model faced: [[this one's, that one's], ...]}
                median["paired"] = paired[group]
            record = {**record, "capacity": median}
        folded.append(record)
    return folded


def fold_records(plan: ComparisonPlan, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as results.json keeps them: each run's bench samples folded into it
    (:func:`fold_samples`), and each retaken run and its retake folded into the calmer
    (:func:`testbed.compare.retake.fold_retakes`)."""
    return fold_retakes(plan, fold_samples(records))


def _capacity_run(command: list[str], seconds: float, run_dir: Path, name: str) -> dict[str, Any]:
    """Run ``testbed bench`` or ``testbed wrk`` with ``--json``; its record, or why not."""
    timeout = seconds + BENCH_SLACK
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"testbed {command[3]} did not finish in {timeout:g} s"}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / f"{name}.json").write_text(done.stdout)
    (run_dir / f"{name}.log").write_text(done.stderr)
    try:
        data = json.loads(done.stdout)
    except ValueError:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        return {"ok": False, "error": lines[-1] if lines else f"exit status {done.returncode}"}
    data["ok"] = done.returncode in (0, 1)  # 1: the window saw errors, still measured
    data["command"] = shlex.join(["testbed", *command[3:]])
    for window in data.get("windows") or ():  # each window a sample of the same run
        window["ok"], window["command"] = data["ok"], data["command"]
    return data


#: Seconds a bench run may take beyond its warm-up and window (start, stop, the server's).
BENCH_SLACK = 30.0


def results_document(plan: ComparisonPlan, runs: list[dict], argv: list[str], started: datetime,
                     seconds: float, interrupted: bool,
                     host_steal: float | None = None) -> dict[str, Any]:
    from testbed.load.summary import package_version

    return {
        "format": FORMAT,
        "metadata": {
            "date": started.strftime("%Y-%m-%d %H:%M"),
            "started": started.isoformat(timespec="seconds"),
            "finished": datetime.now().astimezone().isoformat(timespec="seconds"),
            "duration_s": round(seconds, 1),
            "preset": plan.preset.name, "warmup_s": plan.warmup, "window_s": plan.window,
            "repeats": plan.repeats,
            "workers": plan.workers, "pin": plan.pin, "lab": plan.lab,
            "command_line": shlex.join(["testbed", "compare", *argv]),
            "interrupted": interrupted,
            "machine": machine(),
            # the share of the machine's CPU time its hypervisor took over the comparison
            # (testbed.steal); each run's own is its record's "host_steal"
            "host_steal": host_steal,
            # a run whose top step the host disturbed this much was retaken (compare.retake)
            "retake_steal": RETAKE_STEAL,
            "versions": {name: package_version(name)
                         for name in ("testbed", "locust", "psutil", "matplotlib")},
            "models": plan.models,
            "scenarios": [scenario.name for scenario in plan.scenarios],
        },
        "scenarios": [scenario.as_dict() for scenario in plan.scenarios],
        "runs": runs,
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write through a temporary file, so a results.json is never half written."""
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(document, indent=1, default=str) + "\n", encoding="utf-8")
    partial.replace(path)
