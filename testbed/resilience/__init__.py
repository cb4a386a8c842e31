"""``testbed resilience``: attack every model on loopback and print what it withstood.

The checks live here, once: each starts its own server(s) through
:mod:`testbed.processes`, attacks them within a bounded count and time, and
returns :class:`Figures` -- exchanges and bytes verified, faults injected and
survived, what was denied and how (counted by the harness's failure classes),
the measures taken, and ``problems``: every threshold of issue 6 that the
model missed. ``tests/resilience/`` asserts on those figures; this command
prints them. The reduced scale is what CI runs, ``--full`` the issue's figures.

A model that serves a bounded number of clients at once (``Model.capacity``:
one for sequential, the workers of a fixed pool) is expected to deny service
when idle clients or a non-reader hold every slot: its figures say so
(``expected_denial``) instead of hiding it, and that is not counted as a problem.

The package: :mod:`.common` (scale, figures, server and client helpers), one module
per check, and :mod:`.command` (``main``).
"""

from __future__ import annotations

from clients.storm import percentile
from testbed.resilience.bad_input import MALFORMED, check_bad_input
from testbed.resilience.command import (
    CHECKS,
    build_parser,
    denied_text,
    detail_line,
    main,
    run_check,
    summary_table,
)
from testbed.resilience.common import (
    CPU_LIMIT,
    EXIT_LIMIT,
    FULL,
    IDLE_SLACK,
    IDLE_TIMEOUT,
    INLINE_SEND,
    MAX_UDP_PAYLOAD,
    P99_LIMIT,
    REDUCED,
    RSS_LIMIT,
    Figures,
    MiB,
    Scale,
    altered,
    capacity,
    close_all,
    count_handler_errors,
    count_tracebacks,
    cut,
    family_of,
    group_survivors,
    holds_up_to,
    open_idle,
    paced_probes,
    probe,
    pump,
    random_payload,
    read_up_to,
    running,
    served_again,
    serves_udp,
    settled_family,
    slots,
    stream_exchange,
    tally,
    tree_cpu_percent,
    tree_rss,
    wait_for_eof,
)
from testbed.resilience.descriptors import EXHAUSTION, MAX_CONNECTIONS, check_descriptors, tree_fds
from testbed.resilience.faults import check_faults, tcp_connections
from testbed.resilience.integrity import check_integrity
from testbed.resilience.nonreader import TCP_ESTABLISHED, check_nonreader, connection_open, read_stream
from testbed.resilience.properties import PIECES, check_properties, run_properties
from testbed.resilience.slowloris import check_slowloris

__all__ = [
    "CHECKS",
    "CPU_LIMIT",
    "EXHAUSTION",
    "EXIT_LIMIT",
    "FULL",
    "Figures",
    "IDLE_SLACK",
    "IDLE_TIMEOUT",
    "INLINE_SEND",
    "MALFORMED",
    "MAX_CONNECTIONS",
    "MAX_UDP_PAYLOAD",
    "MiB",
    "P99_LIMIT",
    "PIECES",
    "REDUCED",
    "RSS_LIMIT",
    "Scale",
    "TCP_ESTABLISHED",
    "altered",
    "build_parser",
    "capacity",
    "check_bad_input",
    "check_descriptors",
    "check_faults",
    "check_integrity",
    "check_nonreader",
    "check_properties",
    "check_slowloris",
    "close_all",
        "connection_open",
    "count_handler_errors",
    "count_tracebacks",
    "cut",
    "denied_text",
    "detail_line",
    "family_of",
    "group_survivors",
    "holds_up_to",
    "main",
    "open_idle",
    "paced_probes",
    "percentile",
    "probe",
    "pump",
    "random_payload",
    "read_stream",
    "read_up_to",
    "run_check",
    "run_properties",
    "running",
    "served_again",
    "serves_udp",
    "settled_family",
    "slots",
    "stream_exchange",
    "summary_table",
    "tally",
    "tcp_connections",
    "tree_cpu_percent",
    "tree_fds",
    "tree_rss",
    "wait_for_eof",
]
