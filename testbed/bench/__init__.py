"""``testbed bench``: a server's CPU per request and requests/s, with a generator lean enough
to keep it busy.

Locust spends about 25 µs of CPU per request, so against a fast server it is the limit
and its figures describe locust. This command drives the server with
:class:`clients.bench.ClosedLoop` instead (a few µs per request, one thread, TCP only):
``--connections`` persistent connections, each with one request in flight, every reply
verified. It starts the server itself (port 0, its ready line) or benches a running one
(``--target``, loopback only unless ``--allow-remote``).

The modules, one job each: ``spec`` (what a run is), ``plan`` (checking it), ``server``
(starting or finding the server), ``memory`` (what the server's tree holds), ``runner``
(the phases), ``summary`` (the record and its text), ``command`` (the options), ``scale``
(the scale scenario), ``pipeline`` (CPU per request against requests in flight).
:func:`run_bench`, :func:`run_scale` and :func:`run_pipeline` are the API; :func:`main`
the command.
"""

from __future__ import annotations

from testbed.bench.command import main
from testbed.bench.pipeline import run_pipeline
from testbed.bench.runner import run_bench
from testbed.bench.scale import run_scale
from testbed.bench.spec import BenchSpec

__all__ = ["BenchSpec", "main", "run_bench", "run_pipeline", "run_scale"]
