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

from __future__ import annotations

from testbed.load.calibration import (
    CALIBRATION_SERVER,
    CALIBRATION_USERS,
    CEILING_SHARE,
    calibration_path,
    calibration_spec,
    read_ceiling,
    store_ceiling,
)
from testbed.load.command import (
    DEFAULT_STEPS,
    _end_line,
    _fmt,
    _progress_printer,
    _raise_interrupt,
    build_parser,
    main,
    server_options_from,
    spec_from,
    table,
)
from testbed.load.plan import (
    Plan,
    _check_payload,
    _quiet_parse,
    check,
    parse_target,
    probe_target,
)
from testbed.load.runner import (
    START_SLACK,
    STOP_SLACK,
    Run,
    _last_line,
    _locustfiles,
    _new_run_id,
    _remove_if_empty,
    _seconds,
    locust_options,
    run_load,
)
from testbed.load.spec import (
    LoadError,
    LoadSpec,
    default_workers,
)
from testbed.load.summary import (
    SATURATED_CPU,
    _bound,
    _failures,
    _generator_cpu,
    _locust_total,
    _merge,
    _options,
    _record,
    _server_figures,
    _totals,
    latency_figures,
    package_version,
    percentile,
    summarize,
)

__all__ = [
    "CEILING_SHARE",
    "SATURATED_CPU",
    "START_SLACK",
    "STOP_SLACK",
    "CALIBRATION_USERS",
    "CALIBRATION_SERVER",
    "DEFAULT_STEPS",
    "LoadError",
    "default_workers",
    "LoadSpec",
    "Plan",
    "parse_target",
    "check",
    "_check_payload",
    "_quiet_parse",
    "probe_target",
    "calibration_path",
    "read_ceiling",
    "store_ceiling",
    "calibration_spec",
    "_locustfiles",
    "_new_run_id",
    "package_version",
    "_seconds",
    "locust_options",
    "Run",
    "_last_line",
    "run_load",
    "_remove_if_empty",
    "percentile",
    "latency_figures",
    "_failures",
    "_merge",
    "_server_figures",
    "_generator_cpu",
    "_bound",
    "_record",
    "summarize",
    "_totals",
    "_locust_total",
    "_options",
    "build_parser",
    "server_options_from",
    "spec_from",
    "_fmt",
    "table",
    "_progress_printer",
    "_raise_interrupt",
    "main",
    "_end_line",
]
