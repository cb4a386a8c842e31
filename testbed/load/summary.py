"""Summarising a run: the workers' windows and the server's samples into ``summary.json``."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import math
import platform
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clients.harness import FAILURE_CLASSES
from loadtests.common import BUCKETS_PER_E
from testbed.load.calibration import CEILING_SHARE, read_ceiling
from testbed.load.plan import Plan
from testbed.sampling import covered, window_figures

if TYPE_CHECKING:
    from testbed.load.runner import LoadRun

#: A locust worker using at least this share of one CPU in a window is saturated.
SATURATED_CPU = 0.9
#: In arrivals mode, a step whose achieved rate falls short of the offered one by more than
#: this share measured the generator's limit, not only the server's.
RATE_SHORTFALL = 0.05


def package_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def percentile(hist: dict[int, int], fraction: float, buckets_per_e: float) -> float | None:
    """The latency (ms) below which ``fraction`` of the histogram's requests fall."""
    total = sum(hist.values())
    if not total:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for key in sorted(hist):
        seen += hist[key]
        if seen >= rank:
            return (math.exp((key + 0.5) / buckets_per_e) - 1.0) / 1000.0
    return None  # not reached


def latency_figures(hist: dict[int, int], max_ms: float | None,
                    buckets_per_e: float) -> dict[str, float | None]:
    figures: dict[str, float | None] = {}
    for name, fraction in (("p50_ms", 0.50), ("p95_ms", 0.95), ("p99_ms", 0.99)):
        value = percentile(hist, fraction, buckets_per_e)
        if value is not None and max_ms is not None:
            value = min(value, max_ms)  # a bucket's middle may lie above the largest latency
        figures[name] = None if value is None else round(value, 4)
    figures["max_ms"] = None if max_ms is None or not hist else round(max_ms, 4)
    return figures


def _failures(counts: dict[str, int]) -> dict[str, int]:
    merged = {kind: 0 for kind in FAILURE_CLASSES}
    for kind, count in counts.items():
        merged[kind if kind in merged else "other"] += count
    return merged


def jain_index(values: list[int]) -> float | None:
    """Jain's fairness index of the replies per client: 1.0 when every client got as many,
    1/n when one client got them all; None when nobody got anything."""
    squares = sum(v * v for v in values)
    if not values or not squares:
        return None
    return sum(values) ** 2 / (len(values) * squares)


def _merge(windows: list[dict[str, Any]]) -> dict[str, Any]:
    hist: dict[int, int] = {}
    failures: dict[str, int] = {}
    replies: list[int] = []
    for window in windows:
        replies.extend(int(n) for n in window.get("replies_per_user", ()))
        for key, count in window["hist"]:
            hist[int(key)] = hist.get(int(key), 0) + int(count)
        for kind, count in window["failures"].items():
            failures[kind] = failures.get(kind, 0) + count
    return {
        "requests": sum(w["requests"] for w in windows),
        "started": sum(w.get("started", w["requests"]) for w in windows),
        "unfinished": sum(w.get("unfinished", 0) for w in windows),
        "skipped": sum(w.get("skipped", 0) for w in windows),
        "replies": replies,
        "drained_s": max((w.get("drained_s", 0.0) for w in windows), default=0.0),
        "served": sum(w["served"] for w in windows),
        "bytes": sum(w["bytes"] for w in windows),
        "failures": failures, "hist": hist,
        "max_ms": max((w["max_ms"] for w in windows if w["served"]), default=None),
        "window_s": sum(w["window_s"] for w in windows) / len(windows),
        "t_start": sum(w["t_start"] for w in windows) / len(windows),
        "t_end": sum(w["t_end"] for w in windows) / len(windows),
        "complete": all(w["complete"] for w in windows),
        # users present when the window opened (fewer than the step's: the ramp was too slow)
        "users_running": sum(w["users_start"] for w in windows),
    }


def _server_figures(run: LoadRun, start: float, end: float, served: int) -> dict[str, Any] | None:
    samples = run.sampler.series("server")  # ours, or the target_pid a caller gave
    if not samples:
        return None
    figures = window_figures(samples, start, end)
    if figures is None:
        return None
    measured = covered(samples, start, end)
    figures = {
        "cpu_s": round(figures["cpu_s"], 4) if measured else None,
        "cpu_us_per_request": (round(figures["cpu_s"] * 1e6 / served, 2)
                               if measured and served else None),
        "peak_rss_mib": round(figures["peak_rss_mib"], 2),
        "peak_threads": figures["peak_threads"], "peak_processes": figures["peak_processes"],
        "peak_fds": figures["peak_fds"],
    }
    return figures


def _generator_cpu(run: LoadRun, start: float, end: float) -> float | None:
    """The busiest locust worker's share of one CPU during ``[start, end]``."""
    shares = []
    for index in range(len(run.workers)):
        samples = run.sampler.series(f"worker-{index + 1}")
        if samples and covered(samples, start, end) and end > start:
            figures = window_figures(samples, start, end)
            assert figures is not None
            shares.append(figures["cpu_s"] / (end - start))
    return round(max(shares), 3) if shares else None


def _rounded(share: float | None) -> float | None:
    return None if share is None else round(share, 4)


def _bound(rps: float, ceiling: float | None, cpu: float | None) -> bool:
    return bool((ceiling and rps >= CEILING_SHARE * ceiling) or (cpu is not None and
                                                                 cpu >= SATURATED_CPU))


def _clients(merged: dict[str, Any]) -> dict[str, Any] | None:
    """How many of the step's clients got at least one reply, and how evenly replies went."""
    replies = merged["replies"]
    if not replies:
        return None
    jain = jain_index(replies)
    return {"users": len(replies), "served_any": sum(1 for n in replies if n),
            "jain": None if jain is None else round(jain, 4),
            "replies_min": min(replies), "replies_max": max(replies)}


def _record(run: LoadRun, users: int, merged: dict[str, Any], buckets_per_e: float,
            ceiling: float | None, by_worker: dict[str, int]) -> dict[str, Any]:
    window_s = merged["window_s"]
    served, requests = merged["served"], merged["requests"]
    rps = served / window_s if window_s > 0 else 0.0
    cpu = _generator_cpu(run, merged["t_start"], merged["t_end"])
    arrivals: dict[str, Any] = {}
    bound = _bound(rps, ceiling, cpu)
    if run.spec.mode == "arrivals":
        achieved = merged["started"] / window_s if window_s > 0 else 0.0
        short = achieved < (1 - RATE_SHORTFALL) * users
        arrivals = {"offered_rate": users, "achieved_rate": round(achieved, 2),
                    "rate_short": short, "skipped": merged["skipped"]}
        bound = short or (cpu is not None and cpu >= SATURATED_CPU)
    return {**arrivals,
        "users": users, "window_s": round(window_s, 3), "requests": requests, "served": served,
        "served_share": round(served / requests, 4) if requests else None,
        "failures": _failures(merged["failures"]), "rps": round(rps, 1),
        **latency_figures(merged["hist"], merged["max_ms"], buckets_per_e),
        "server": _server_figures(run, merged["t_start"], merged["t_end"], served),
        "generator_bound": bound, "generator_cpu": cpu,
        "host_steal": _rounded(run.sampler.host_steal(merged["t_start"], merged["t_end"])),
        "clients": None if run.spec.mode == "arrivals" else _clients(merged),
        "started": merged["started"], "unfinished": merged["unfinished"],
        "drained_s": round(merged["drained_s"], 3),
        "complete": merged["complete"], "users_running": merged["users_running"],
        "bytes": merged["bytes"], "workers": by_worker,
        "t_start": round(merged["t_start"], 3), "t_end": round(merged["t_end"], 3),
    }


def summarize_run(plan: Plan, run: LoadRun, run_id: str, started: datetime) -> dict[str, Any]:
    """Turn what the workers reported and what the sampler saw into the summary."""
    spec = plan.spec
    try:
        stats = json.loads((run.run_dir / "steps.json").read_text())
    except (OSError, ValueError):
        stats = {"workers": {}, "histogram": {"buckets_per_e": BUCKETS_PER_E}}
    buckets_per_e = float(stats.get("histogram", {}).get("buckets_per_e", BUCKETS_PER_E))
    workers = stats.get("workers", {})
    ceiling = read_ceiling(spec)
    steps: list[dict[str, Any]] = []
    all_windows: list[dict[str, Any]] = []
    for index, users in enumerate(spec.steps):
        windows = {wid: [w for w in data["windows"] if w["step"] == index]
                   for wid, data in workers.items()}
        found = [w for ws in windows.values() for w in ws]
        if not found:
            continue
        merged = _merge(found)
        by_worker = {wid: sum(w["requests"] for w in ws) for wid, ws in windows.items()}
        record = _record(run, users, merged, buckets_per_e, ceiling, by_worker)
        if len(found) < spec.workers:
            record["complete"] = False
        steps.append(record)
        all_windows.extend(found)
    complete = (run.error is None and len(steps) == len(spec.steps)
                and all(step["complete"] for step in steps))
    error = run.error
    if error is None and not complete:
        error = "the workers did not report every measured window"
    summary: dict[str, Any] = {
        "run_id": run_id, "started": started.isoformat(timespec="seconds"),
        "model": plan.model, "service": plan.service,
        "target": spec.target, "transport": "udp" if plan.udp else "tcp",
        "options": _options(plan), "versions": {
            "python": platform.python_version(), "locust": package_version("locust"),
            "testbed": package_version("testbed"), "psutil": package_version("psutil")},
        "placement": plan.placement, "warmup_s": spec.warmup,
        "lab": run.lab.describe() if getattr(run, "lab", None) else None,
        "first_warmup_s": spec.first_step_warmup,
        "window_s": spec.step_time,
        "complete": complete, "error": error,
        "server_exit_status": run.server_status,
        "generator_ceiling_rps": ceiling,
        "steps": steps,
    }
    summary.update(_totals(all_windows, steps, buckets_per_e))
    summary["generator"] = {
        "workers": spec.workers,
        "requests_all_phases": sum((data.get("final") or {}).get("requests", 0)
                                   for data in workers.values()),
        "locust_requests": _locust_total(run.run_dir),
        "all_phases": _all_phases(workers),
        "locust_csv": locust_csv_totals(run.run_dir),
        "per_worker": {wid: (data.get("final") or {}).get("requests")
                       for wid, data in workers.items()},
    }
    counted, csv_totals = summary["generator"]["all_phases"], summary["generator"]["locust_csv"]
    summary["generator"]["matches_locust"] = bool(csv_totals) and (
        counted["requests"] == csv_totals["requests"]
        and counted["failures"] == csv_totals["failures"])
    summary["files"] = sorted(p.name for p in run.run_dir.iterdir()) + ["summary.json"]
    (run.run_dir / "samples.json").write_text(json.dumps(run.sampler.dump()) + "\n")
    return summary


def _totals(windows: list[dict[str, Any]], steps: list[dict[str, Any]],
            buckets_per_e: float) -> dict[str, Any]:
    """The whole run's figures: every measured window of every step together."""
    if not windows:
        return {"requests": 0, "served": 0, "served_share": None,
                "failures": _failures({}), "rps": 0.0, "p50_ms": None, "p95_ms": None,
                "p99_ms": None, "max_ms": None, "server": None, "generator_bound": False}
    merged = _merge(windows)
    window_s = sum(step["window_s"] for step in steps)
    served = merged["served"]
    rps = served / window_s if window_s > 0 else 0.0
    server = None
    measured = [step["server"] for step in steps if step["server"] is not None]
    if measured:
        cpu = [s["cpu_s"] for s in measured if s["cpu_s"] is not None]
        server = {
            "cpu_s": round(sum(cpu), 4) if cpu else None,
            "cpu_us_per_request": (round(sum(cpu) * 1e6 / served, 2)
                                   if cpu and served and len(cpu) == len(measured) else None),
            **{key: max(s[key] for s in measured)
               for key in ("peak_rss_mib", "peak_threads", "peak_processes", "peak_fds")},
        }
    return {
        "requests": merged["requests"], "served": served,
        "served_share": round(served / merged["requests"], 4) if merged["requests"] else None,
        "failures": _failures(merged["failures"]), "rps": round(rps, 1),
        **latency_figures(merged["hist"], merged["max_ms"], buckets_per_e),
        "server": server,
        "generator_bound": any(step["generator_bound"] for step in steps),
    }


def _all_phases(workers: dict[str, Any]) -> dict[str, Any]:
    """Every attempt of the run by outcome, warm-ups and drains included, over all workers:
    what locust's own statistics count too."""
    served, failures = 0, {}
    for data in workers.values():
        final = data.get("final") or {}
        served += int(final.get("served", 0))
        for kind, count in (final.get("failures") or {}).items():
            failures[kind] = failures.get(kind, 0) + int(count)
    return {"requests": served + sum(failures.values()), "served": served,
            "failures": dict(sorted(failures.items()))}


def locust_csv_totals(run_dir: Path) -> dict[str, Any] | None:
    """Locust's own totals from its CSV files: requests, and failures by class (the error
    text of a harness failure is its class)."""
    try:
        with open(run_dir / "locust_stats.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        with open(run_dir / "locust_failures.csv", newline="") as handle:
            failure_rows = list(csv.DictReader(handle))
    except OSError:
        return None
    try:
        total = next(row for row in rows if row.get("Name") == "Aggregated")
        failures: dict[str, int] = {}
        for row in failure_rows:
            kind = row["Error"].strip()
            failures[kind] = failures.get(kind, 0) + int(row["Occurrences"])
        return {"requests": int(total["Request Count"]),
                "failures": dict(sorted(failures.items()))}
    except (StopIteration, KeyError, ValueError):
        return None


def _locust_total(run_dir: Path) -> int | None:
    """Requests in locust's own final statistics (all phases), as a cross-check."""
    try:
        entries = json.loads((run_dir / "locust.json").read_text())
        return sum(int(entry["num_requests"]) for entry in entries)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _options(plan: Plan) -> dict[str, Any]:
    spec = asdict(plan.spec)
    spec["out_dir"] = str(spec["out_dir"])
    if spec["calibration_file"] is not None:
        spec["calibration_file"] = str(spec["calibration_file"])
    spec["server_options"] = plan.server_options
    spec["expect"] = plan.expect
    return spec
