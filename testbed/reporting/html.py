"""report.html: one self-contained file that opens in a browser with no server.

CSS is inline, plots are embedded as base64 ``data:`` URIs, and nothing refers
to another file or to the network: no ``src``/``href`` except ``data:``, and no
``http://`` or ``https://`` anywhere (a URL that turns up in recorded text, an
error message say, is defanged to ``http[:]//``).
"""

from __future__ import annotations

import base64
import html
import re
from typing import TYPE_CHECKING

from testbed.reporting import describe, tables
from testbed.reporting.data import Results
from testbed.reporting.sentences import verdicts

if TYPE_CHECKING:  # matplotlib is imported only to draw the plots
    from testbed.reporting.plots import Plot

_URL = re.compile(r"(?i)\b(https?):(//)")

CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2rem auto; max-width: 88rem;
       padding: 0 1rem; color: #1b1b1b; background: #fff; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
code { background: #f3f3f3; padding: 0 .25rem; border-radius: 3px; }
table { border-collapse: collapse; margin: .6rem 0; font-variant-numeric: tabular-nums; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #e4e4e4; white-space: nowrap; }
th { background: #f5f5f5; text-align: left; } td.num, th.num { text-align: right; }
td.best { background: #e3f4e1; font-weight: 700; }
tr.crashed td { background: #fbe9e9; color: #8a1f1f; }
ul.notes { font-size: .88rem; color: #555; margin-top: .2rem; }
.verdicts li { margin: .35rem 0; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
.plots img { max-width: 100%; width: 34rem; border: 1px solid #eee; }
.scroll { overflow-x: auto; }
"""


def text(value: str) -> str:
    """Escaped HTML text in which no URL survives."""
    return _URL.sub(r"\1[:]\2", html.escape(value, quote=True))


def cell(entry: tables.Entry, column: tables.Column) -> str:
    content = text(entry.text)
    if entry.generator_bound:
        content += tables.GENERATOR_BOUND
    classes = [name for name, on in (("num", column.numeric), ("best", entry.best)) if on]
    attr = f' class="{" ".join(classes)}"' if classes else ""
    return f"<td{attr}>{f'<strong>{content}</strong>' if entry.best else content}</td>"


def table(data: tables.Table) -> str:
    head = "".join(f'<th{" class=num" if column.numeric else ""}>{text(column.header)}</th>'
                   for column in data.columns)
    rows = []
    for index, row in enumerate(data.rows):
        attr = ' class="crashed"' if index in data.crashed_rows else ""
        cells = "".join(cell(entry, column) for entry, column in zip(row, data.columns,
                                                                     strict=True))
        rows.append(f"<tr{attr}>{cells}</tr>")
    notes = "".join(f"<li>{text(note)}</li>" for note in data.notes).replace(
        f"{tables.BEST} best", "<strong>bold</strong>: best", 1)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>'
            + (f'<ul class="notes">{notes}</ul>' if notes else ""))


def image(plot: Plot) -> str:
    data = base64.b64encode(plot.png).decode("ascii")
    return f'<img alt="{text(plot.title)}" src="data:image/png;base64,{data}">'


def facts(pairs: list[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{text(label)}</dt><dd>"
                    f"{f'<code>{text(value)}</code>' if label in ('Command', 'Server') else text(value)}"
                    "</dd>" for label, value in pairs)
    return f'<dl class="facts">{items}</dl>'


def render(results: Results, plots: list[Plot]) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             "<title>Concurrency models compared</title>", f"<style>{CSS}</style></head><body>",
             "<h1>Concurrency models compared</h1>", facts(describe.facts(results)),
             "<h2>Verdicts</h2>", '<ul class="verdicts">']
    for name, sentence in verdicts(results):
        rest = sentence[len(name):] if sentence.startswith(name) else f": {sentence}"
        parts.append(f"<li><strong>{text(name)}</strong>{text(rest)}</li>")
    parts.append("</ul>")
    for scenario in results.scenarios:
        heading, summary, steps = tables.scenario_tables(results, scenario)
        parts += [f"<h2>{text(scenario.name)}: {text(scenario.title)}</h2>",
                  f"<p>{text(scenario.description)}</p>",
                  facts(describe.scenario_facts(results, scenario.name)),
                  f"<h3>{text(heading)}</h3>", table(summary)]
        images = [image(plot) for plot in plots if plot.scenario == scenario.name]
        if images:
            parts.append(f'<div class="plots">{"".join(images)}</div>')
        pipelines = tables.pipeline_table(results, scenario)
        if pipelines is not None:
            parts += ["<h3>Requests in flight</h3>", table(pipelines)]
        parts += ["<h3>Every step</h3>", table(steps)]
    parts.append("<h2>Reading the figures</h2><ul>")
    parts += [f"<li>{text(line)}</li>" for line in describe.glossary(results, tables.GENERATOR_BOUND)]
    parts += ["</ul></body></html>", ""]
    return "\n".join(parts)
