"""The ``testbed resilience`` command: run the checks, print a line each and the table."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from servers import registry
from testbed.args import ArgumentParser
from testbed.resilience.bad_input import check_bad_input
from testbed.resilience.common import FULL, REDUCED, Figures, Scale
from testbed.resilience.descriptors import check_descriptors
from testbed.resilience.faults import check_faults
from testbed.resilience.integrity import check_integrity
from testbed.resilience.nonreader import check_nonreader
from testbed.resilience.properties import check_properties
from testbed.resilience.slowloris import check_slowloris

CHECKS: dict[str, Callable[..., Figures]] = {
    "integrity": check_integrity,
    "properties": check_properties,
    "slowloris": check_slowloris,
    "non-reader": check_nonreader,
    "descriptors": check_descriptors,
    "faults": check_faults,
    "bad-input": check_bad_input,
}


def run_check(name: str, model: str, scale: Scale) -> Figures:
    """Run one check; a check that breaks down is itself a problem in the figures."""
    started = time.monotonic()
    try:
        figures = CHECKS[name](model, scale)
    except Exception as exc:  # noqa: BLE001 - reported in the table, not a traceback
        figures = Figures(model, name)
        figures.problems.append(f"check broke down: {type(exc).__name__}: {exc}"[:300])
    figures.seconds = time.monotonic() - started
    return figures


def denied_text(figures: Figures) -> str:
    if not figures.denied:
        return "-"
    text = ", ".join(f"{kind} {count}" for kind, count in figures.denied.most_common())
    return f"{text} (expected: {figures.expected_denial})" if figures.expected_denial else text


def detail_line(figures: Figures) -> str:
    measures = "; ".join(f"{k} {v}" for k, v in figures.measures.items() if k != "seed")
    verdict = "ok" if not figures.problems else "FAIL: " + "; ".join(figures.problems)
    return (f"  {figures.check:<12} {figures.exchanges:>6} ex {_size(figures.bytes_verified):>9}"
            f"  faults {figures.survived}/{figures.faults}  denied {denied_text(figures)}"
            f"  [{measures}]  {figures.seconds:.1f}s  {verdict}")


def _size(count: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return str(count)


def summary_table(results: dict[str, list[Figures]]) -> str:
    """One row per model: what was checked, what it withstood, what it denied and how."""
    headers = ("model", "exchanges", "bytes verified", "lost", "faults survived",
               "denied (by failure class)", "problems")
    rows = []
    for model, figures in results.items():
        denied = [f"{f.check}: {denied_text(f)}" for f in figures if f.denied]
        rows.append((model, str(sum(f.exchanges for f in figures)),
                     _size(sum(f.bytes_verified for f in figures)),
                     str(sum(f.bytes_lost for f in figures)),
                     f"{sum(f.survived for f in figures)}/{sum(f.faults for f in figures)}",
                     "; ".join(denied) or "-",
                     str(sum(len(f.problems) for f in figures))))
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    widths[5] = min(widths[5], 200)
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="testbed resilience",
        description="Attack every model on loopback (integrity, properties, slowloris, "
        "non-reader, descriptor exhaustion, faults, bad input) and print what each "
        "withstood. Exit status 1 if any model missed a threshold.")
    parser.add_argument("--models", nargs="+", metavar="MODEL", default=None,
                        help="models to attack (default: every registered model)")
    parser.add_argument("--checks", nargs="+", metavar="CHECK", default=None,
                        help=f"checks to run: {', '.join(CHECKS)} (default: all)")
    parser.add_argument("--full", action="store_true",
                        help="the full figures (2,000 exchanges, 10,000 fuzz strings, "
                        "5 s of slowloris...) instead of the reduced CI form")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    known = registry.model_names()
    models = args.models or known
    for name in models:
        if name not in known:
            parser.error(f"unknown model {name!r} (choose from {', '.join(known)})")
    checks = args.checks or list(CHECKS)
    for name in checks:
        if name not in CHECKS:
            parser.error(f"unknown check {name!r} (choose from {', '.join(CHECKS)})")
    scale = FULL if args.full else REDUCED
    print(f"resilience ({scale.name} form): {', '.join(models)}; checks: {', '.join(checks)}",
          flush=True)
    results: dict[str, list[Figures]] = {}
    for model in models:
        print(f"{model}:", flush=True)
        for check in checks:
            figures = run_check(check, model, scale)
            results.setdefault(model, []).append(figures)
            print(detail_line(figures), flush=True)
    print()
    print(summary_table(results))
    problems = sum(len(f.problems) for figures in results.values() for f in figures)
    if problems:
        print(f"\n{problems} problem(s): see FAIL above", flush=True)
    return 1 if problems else 0
