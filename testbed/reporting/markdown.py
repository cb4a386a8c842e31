"""report.md: the verdicts, then per scenario its summary table, plots and every step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed.reporting import describe, tables
from testbed.reporting.data import Results
from testbed.reporting.sentences import verdicts

if TYPE_CHECKING:  # matplotlib is imported only to draw the plots
    from testbed.reporting.plots import Plot


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def cell(entry: tables.Entry) -> str:
    """A table entry in Markdown: best values in bold, generator-bound ones with a dagger."""
    text = _escape(entry.text)
    if entry.generator_bound:
        text += tables.GENERATOR_BOUND
    return f"**{text}**" if entry.best else text


def bold_name(name: str, sentence: str) -> str:
    """The sentence with its leading scenario name in bold."""
    if sentence.startswith(name):
        return f"**{_escape(name)}**{_escape(sentence[len(name):])}"
    return f"**{_escape(name)}**: {_escape(sentence)}"


def table(data: tables.Table) -> str:
    lines = ["| " + " | ".join(_escape(column.header) for column in data.columns) + " |",
             "|" + "|".join("---:" if column.numeric else "---" for column in data.columns) + "|"]
    lines += ["| " + " | ".join(cell(entry) for entry in row) + " |" for row in data.rows]
    notes = [note.replace(f"{tables.BEST} best", "**bold**: best", 1) for note in data.notes]
    if notes:
        lines.append("")
        lines += [f"- {_escape(note)}" for note in notes]
    return "\n".join(lines)


def render(results: Results, plots: list[Plot]) -> str:
    out = ["# Concurrency models compared", ""]
    out += [f"- **{label}**: {text}" if label != "Command" else f"- **{label}**: `{text}`"
            for label, text in describe.facts(results)]
    out += ["", "## Verdicts", ""]
    out += [f"- {bold_name(name, sentence)}" for name, sentence in verdicts(results)]
    for scenario in results.scenarios:
        out += ["", f"## {scenario.name}: {scenario.title}", "", scenario.description, ""]
        out += [f"- {label}: `{text}`" if label == "Server" else f"- {label}: {text}"
                for label, text in describe.scenario_facts(results, scenario.name)]
        heading, summary, steps = tables.scenario_tables(results, scenario)
        out += ["", f"### {heading}", "", table(summary)]
        images = [plot for plot in plots if plot.scenario == scenario.name]
        if images:
            out += [""] + [f"![{plot.title}]({plot.filename})" for plot in images]
        pipelines = tables.pipeline_table(results, scenario)
        if pipelines is not None:
            out += ["", "### Requests in flight", "", table(pipelines)]
        out += ["", "### Every step", "", table(steps)]
    out += ["", "## Reading the figures", ""]
    out += [f"- {line}" for line in describe.glossary(results, tables.GENERATOR_BOUND)]
    out.append("")
    return "\n".join(out)
