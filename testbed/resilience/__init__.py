"""``testbed resilience``: attack every model on loopback and print what it withstood.

The checks live here, once: each starts its own server(s) through
:mod:`testbed.processes`, attacks them within a bounded count and time, and
returns :class:`Figures` -- exchanges and bytes verified, faults injected and
survived, what was denied and how (counted by the harness's failure classes),
the measures taken, and ``problems``: every threshold that the
model missed. ``tests/resilience/`` asserts on those figures; this command
prints them. The reduced scale is what the default suite runs, ``--full`` the full figures.

A model that serves a bounded number of clients at once (``Model.capacity``:
one for sequential, the workers of a fixed pool) is expected to deny service
when idle clients or a non-reader hold every slot: its figures say so
(``expected_denial``) instead of hiding it, and that is not counted as a problem.

The package: :mod:`.common` (scale, figures, server and client helpers), one module
per check, and :mod:`.command` (``main``).
"""

from __future__ import annotations

from testbed.resilience.bad_input import check_bad_input
from testbed.resilience.command import CHECKS, main, run_check
from testbed.resilience.common import FULL, REDUCED, Figures, Scale
from testbed.resilience.descriptors import check_descriptors
from testbed.resilience.faults import check_faults
from testbed.resilience.integrity import check_integrity
from testbed.resilience.nonreader import check_nonreader
from testbed.resilience.properties import check_properties
from testbed.resilience.slowloris import check_slowloris

__all__ = ["CHECKS", "FULL", "REDUCED", "Figures", "Scale", "check_bad_input",
           "check_descriptors", "check_faults", "check_integrity", "check_nonreader",
           "check_properties", "check_slowloris", "main", "run_check"]
