"""Rendering a comparison from its results.json: tables, sentences, Markdown, HTML, CSV, plots.

One module per output; every one of them reads the same :class:`~testbed.reporting.data.Results`
loaded from results.json, so a report can always be rebuilt from the data alone.
:mod:`.command` is ``testbed report``: it rebuilds the report from results.json,
with :func:`write_report`, the same call ``testbed compare`` makes.
"""

from testbed.reporting.command import (
    ResultsError,
    Written,
    main,
    print_text,
    terminal_summary,
    write_report,
)

__all__ = ["ResultsError", "Written", "main", "print_text", "terminal_summary", "write_report"]
