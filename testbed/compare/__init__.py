"""``testbed compare``: every model through the same scenarios, one at a time, then the report.

For each scenario, for each model (all registered ones unless ``--models``),
one ``testbed.load.run_load`` call: a freshly started server and one locust
run covering all of the scenario's user steps. Never two runs at once. A run
whose server dies is kept and reported as crashed; the others still run.

Everything measured goes to ``results/compare-<timestamp>/results.json``
first; the report (report.md, report.html, results.csv, PNG plots) is then
built from that file by ``testbed.reporting.write_report``, the same code
``testbed report`` runs, and the tables and verdicts are printed.

The package, one module per part: :mod:`.command` (the command line),
:mod:`.plan` (which runs, in which order), :mod:`.progress` (the bar),
:mod:`.runs` (one run and results.json), :mod:`.scenarios` and
:mod:`.contenders` (what is compared).
"""

from testbed.compare.command import main

__all__ = ["main"]
