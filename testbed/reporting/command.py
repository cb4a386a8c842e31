"""``testbed report RESULTS.json``: rebuild a comparison's report from its data alone.

``testbed compare`` writes results.json first and then calls :func:`write_report`
on that file, so a report rebuilt later is the very same one: report.md,
report.html (self-contained), results.csv and the PNG plots, next to
results.json unless ``--out`` says otherwise. The terminal summary (one table
and one sentence per scenario) comes from :func:`terminal_summary`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from testbed.args import ArgumentParser
from testbed.reporting import agreement, csvfile, html, markdown, tables
from testbed.reporting.data import Results, ResultsError, load
from testbed.reporting.sentences import verdicts

__all__ = ["Written", "ResultsError", "write_report", "terminal_summary", "main"]


@dataclass(frozen=True)
class Written:
    """What a report wrote, and the results it was built from."""

    results: Results
    markdown: Path
    html: Path
    csv: Path
    plots: list[Path]

    @property
    def files(self) -> list[Path]:
        return [self.markdown, self.html, self.csv, *self.plots]


def write_report(results_path: str | Path, out_dir: str | Path | None = None) -> Written:
    """Read results.json and write report.md, report.html, results.csv and the plots.

    Raises ResultsError for unusable data and OSError when the files can't be written.
    """
    results_path = Path(results_path)
    results = load(results_path)
    directory = Path(out_dir) if out_dir is not None else results_path.parent
    directory.mkdir(parents=True, exist_ok=True)
    from testbed.reporting import plots  # matplotlib: only where plots are drawn

    images = plots.render(results)
    image_paths = plots.write(images, directory)
    md_path, html_path, csv_path = (directory / "report.md", directory / "report.html",
                                    directory / "results.csv")
    md_path.write_text(markdown.render(results, images), encoding="utf-8")
    html_path.write_text(html.render(results, images), encoding="utf-8")
    csv_path.write_text(csvfile.render(results), encoding="utf-8", newline="")
    return Written(results, md_path, html_path, csv_path, image_paths)


def terminal_summary(results: Results) -> str:
    """One table per scenario (its highest user count) and its sentence, for the terminal."""
    blocks = []
    sentences = dict(verdicts(results))
    for scenario in results.scenarios:
        blocks.append(tables.render_text(tables.scenario_tables(results, scenario)[1]))
        blocks.append(f"=> {sentences[scenario.name]}")
        blocks.append("")
    return "\n".join(blocks)


def print_text(text: str, stream=None) -> None:
    """Print, replacing what the terminal's encoding can't show instead of failing."""
    stream = stream or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(text.encode(encoding, errors="replace").decode(encoding) + "\n")
    stream.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="testbed report",
                     description="Rebuild report.md, report.html, results.csv and the plots of a "
                     "comparison from its results.json, and print its tables and verdicts.")
    parser.add_argument("results", type=Path, help="results/compare-<timestamp>/results.json")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write the report there (default: next to results.json)")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="write the files, print only their paths")
    parser.add_argument("--agree", type=Path, nargs="+", metavar="RESULTS",
                        help="other runs of the same comparison: print every run's verdicts "
                        "side by side and how much each cell moved between them (writes "
                        "nothing)")
    return parser


def _path(path: Path) -> Path:
    return path / "results.json" if path.is_dir() else path


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = _path(args.results)
    if args.agree:
        paths = [path, *map(_path, args.agree)]
        try:
            runs = [load(each) for each in paths]
        except ResultsError as exc:
            print(f"testbed report: error: {exc}", file=sys.stderr)
            return 2
        names = [str(run.metadata.get("date") or each.parent.name)
                 for run, each in zip(runs, paths, strict=True)]
        print_text(agreement.render(runs, names))
        return 0
    try:
        written = write_report(path, args.out)
    except ResultsError as exc:
        print(f"testbed report: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = exc.filename or args.out or path.parent
        print(f"testbed report: error: cannot write the report to {where}: "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print_text(terminal_summary(written.results))
    print(f"report: {written.markdown}\n        {written.html}\n        {written.csv}\n"
          f"plots:  {written.markdown.parent}/*.png ({len(written.plots)} files)")
    return 0
