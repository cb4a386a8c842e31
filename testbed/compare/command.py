"""``testbed compare``'s command line: options, the plan, the runs, then the report."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

from testbed import reporting, steal
from testbed.args import ArgumentParser, duration, name_list, positive, user_counts
from testbed.compare.afterwards import runs_after
from testbed.compare.plan import ComparisonPlan, make_plan
from testbed.compare.progress import Progress, clock
from testbed.compare.retake import RETAKE_STEAL, retaken
from testbed.compare.runs import (
    drop_unneeded_samples,
    fold_records,
    make_out_dir,
    results_document,
    run_one,
    write_json,
)
from testbed.compare.scenarios import QUICK, SERVICES, scenario_names
from testbed.compare.settle import MAX_ROUNDS


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="testbed compare",
        description="Run every concurrency model through the same scenarios, one model at a "
        "time, each on a fresh server, with locust as the load (testbed bench for the scale "
        "scenario); write results.json, "
        "results.csv, report.md, report.html and plots to OUT/compare-<timestamp>/.",
    )
    parser.add_argument("--service", choices=SERVICES, default="echo",
                        help="which comparison: the line service's scenarios (echo) or the "
                        "HTTP ones, with uvicorn and gunicorn among the contenders (http) "
                        "(default %(default)s)")
    parser.add_argument("--models", type=name_list, metavar="A,B",
                        help="models to compare (default: every registered one, and "
                        "asyncio+uvloop where uvloop is installed; with --service http, "
                        "uvicorn-* and gunicorn-* where they are installed)")
    parser.add_argument("--scenarios", type=name_list, metavar="A,B",
                        help="scenarios to run (default: "
                        f"{', '.join(QUICK.default_names())}; scale (up to 10,000 open "
                        "connections, about 2 minutes) only when named here, or with --full, "
                        "so that the quick preset's default run stays under 6 minutes; with "
                        f"--service http: {', '.join(scenario_names('http'))})")
    parser.add_argument("--full", action="store_true",
                        help="longer windows, more steps and 3 repeats (default: the quick "
                        "preset)")
    parser.add_argument("--repeat", type=positive(int), metavar="N",
                        help="run every model and scenario N times, the models' order rotated "
                        "between repeats; tables show medians and spreads (default: as many "
                        "as --budget allows in the quick preset, up to 3; 3 in the full one)")
    parser.add_argument("--budget", type=duration, metavar="T",
                        help="the time the quick preset may take: its repeats, estimated "
                        "before it starts, then settling rounds and retakes in what is left "
                        "(default 6m; 18m with --service http); --repeat overrides it")
    parser.add_argument("--run-time", type=duration, metavar="S",
                        help="measured window of every step (default: each scenario's own, "
                        "0.5-1.5 s in the quick preset, 6-10 s in the full one)")
    parser.add_argument("--warmup", type=duration, metavar="S",
                        help="unrecorded warm-up before every window, the first one's too "
                        "(default: each scenario's own, 1 s (quick) or 2 s (full) on each "
                        "fresh server)")
    parser.add_argument("--steps", type=user_counts, metavar="N,N",
                        help="measure these user counts in every scenario instead of its own")
    parser.add_argument("--workers", type=positive(int), default=None, metavar="W",
                        help="locust worker processes (default: CPUs minus one, at least 1)")
    parser.add_argument("--pin", action="store_true",
                        help="pin the server and the load generator to separate cores")
    parser.add_argument("--lab", metavar="NAME", help="run every contender across the hosts of "
                        "a lab that is up (testbed lab): server h1, master h2, workers h3..hN")
    parser.add_argument("--out", type=Path, default=Path("results"), metavar="DIR",
                        help="where compare-<timestamp>/ is written (default %(default)s)")
    parser.add_argument("--list", action="store_true",
                        help="print the models and the preset's scenarios, run nothing")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bar; print only the tables and verdicts at the end")
    return parser


def list_plan(plan: ComparisonPlan) -> None:
    print(f"models: {', '.join(plan.models)}")
    print(f"scenarios ({plan.preset.name} preset):")
    width = max([8, *(len(scenario.name) for scenario in plan.scenarios)])
    for scenario in plan.scenarios:
        assert scenario.timing is not None
        print(f"  {scenario.name:<{width}} {scenario.title}; {scenario.unit} "
              f"{', '.join(map(str, scenario.steps))}; {scenario.timing.describe()}")
    for name in plan.preset.on_request:
        if name not in (scenario.name for scenario in plan.scenarios):
            print(f"  {name:<{width}} not run unless named: --scenarios {name}")
    why = " (as many as the budget allows)" if plan.repeats_from_budget else ""
    print(f"repeats: {plan.repeats}{why}")
    print(f"about {clock(plan.estimate())} for {len(plan.runs)} runs")
    settles = any(scenario.settles for scenario in plan.scenarios)
    after = []  # in the order of testbed.compare.afterwards
    if settles:
        after.append("a settling round: each model the runs leave undecided against the "
                     "winner or the loser, measured side by side with it, their windows "
                     "alternating")
    if any(retaken(scenario) for scenario in plan.scenarios):
        after.append("retakes: one more run of each run whose top step the host disturbed "
                     f"(took {RETAKE_STEAL:.0%} or more of the CPU time), the calmer kept")
    if settles and MAX_ROUNDS > 1:
        after.append(f"more settling rounds, up to {MAX_ROUNDS} in all, for the models still "
                     "undecided")
    if after:
        room = (f" (as many as fit in the budget of {clock(plan.budget)})"
                if plan.budget is not None else "")
        print(f"then, in this order{room}:")
        for item in after:
            print(f"  {item}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        plan = make_plan(args)
    except LookupError as exc:
        print(f"testbed compare: error: {exc.args[0]}", file=sys.stderr)
        return 2
    if plan.window is not None and plan.window <= 0:
        print("testbed compare: error: --run-time must be more than 0", file=sys.stderr)
        return 2
    if args.list:
        list_plan(plan)
        return 0
    started = datetime.now().astimezone()
    try:
        out_dir = make_out_dir(args.out, started)
    except OSError as exc:
        print(f"testbed compare: error: cannot write results in {args.out}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1

    progress = Progress(plan, enabled=not args.quiet)
    records: list[dict] = []
    interrupted = False
    clock_start = time.monotonic()
    host_start = steal.read()
    progress.start()
    try:
        index = 0
        while index < len(plan.runs):  # retakes and settling rounds add runs
            run = plan.runs[index]
            progress.begin(index)
            before = steal.read()
            # Absolute: testbed load runs locust from inside the run's directory.
            record = run_one(plan, run, (out_dir / "runs").resolve(), progress.note)
            record["host_steal"] = steal.share(before, steal.read())
            records.append(record)
            progress.end(index, record["duration_s"],
                         record["error"] if record["status"] != "ok" else None)
            drop_unneeded_samples(plan, index, records)  # before: the last run may change
            elapsed = time.monotonic() - clock_start
            extra = runs_after(plan, index, records, elapsed, progress.overhead)
            if extra and extra[0].retake:
                progress.say(f"retakes: one more run of "
                             f"{', '.join(f'{p.scenario.name} {p.model}' for p in extra)} "
                             f"(the host took {RETAKE_STEAL:.0%} or more of the CPU time in "
                             "their top step)")
            elif extra:
                progress.say(f"settling round {extra[0].settling}: "
                             f"{', '.join(f'{p.scenario.name} {p.model} and {p.versus}' for p in extra)} "
                             "side by side (their runs could not call them level or apart)")
            plan.runs[index + 1:index + 1] = extra
            index += 1
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    seconds = time.monotonic() - clock_start

    results_path = out_dir / "results.json"
    try:
        records = fold_records(plan, records)
        write_json(results_path, results_document(plan, records, argv, started, seconds,
                                                  interrupted,
                                                  steal.share(host_start, steal.read())))
        written = reporting.write_report(results_path)
    except OSError as exc:
        print(f"testbed compare: error: cannot write results in {out_dir}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    reporting.print_text(reporting.terminal_summary(written.results))
    crashed = [f"{r['model']}/{r['scenario']}" for r in records if r["status"] != "ok"]
    if crashed:
        print(f"crashed (reported as such): {', '.join(crashed)}")
    print(f"took {clock(seconds)}; results: {results_path}\n"
          f"report: {written.markdown}\n        {written.html}\n        {written.csv}\n"
          f"plots:  {out_dir}/*.png ({len(written.plots)} files)")
    if interrupted:
        print("testbed compare: interrupted; the runs done so far are in the report",
              file=sys.stderr)
        return 130
    return 0
