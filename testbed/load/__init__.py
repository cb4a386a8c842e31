"""``testbed load``: one locust load test against one server, with the results kept.

The server runs as its own process (or an already running one is named with
``--target``); locust runs as a master and ``--workers`` worker processes (the
workers carry the load; the master only steers the schedule and collects); a
sampler thread reads the server's process tree with psutil. Everything is in
its own process group and is stopped at the end, also on Ctrl-C or SIGTERM.

A run is a schedule of steps (one step for a flat run), each an unrecorded
warm-up followed by a measured window on connections opened after the
warm-up. ``results/<run-id>/`` receives locust's CSV and HTML, its logs, the
per-window statistics of every worker (``steps.json``), the server samples
(``samples.json``) and ``summary.json`` (see :func:`run_load`).

:func:`run_load` is the API the comparison calls; :func:`main` is the command.
"""

from testbed.load.calibration import read_ceiling, store_ceiling
from testbed.load.command import main
from testbed.load.runner import run_load
from testbed.load.spec import LoadError, LoadSpec, default_workers

__all__ = ["LoadError", "LoadSpec", "default_workers", "main", "read_ceiling", "run_load",
           "store_ceiling"]
