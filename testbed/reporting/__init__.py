"""Rendering a comparison from its results.json: tables, sentences, Markdown, HTML, CSV, plots.

One module per output; every one of them reads the same :class:`~testbed.reporting.data.Results`
loaded from results.json, so a report can always be rebuilt from the data alone.
"""
