"""4. Non-reader: a client sends up to 100 MiB and reads nothing.

select's memory stays flat (backpressure); every model that can serve two
clients at once keeps serving another; the non-reader gets every byte it is
owed once it reads; with --idle-timeout a non-reader that makes no progress is shed.
"""

from __future__ import annotations

import pytest

from testbed.resilience import check_nonreader
from testbed.resilience.common import RSS_LIMIT, MiB, holds_up_to
from tests.conftest import core_first
from tests.resilience.conftest import MODELS, no_problems


@pytest.mark.parametrize("model", core_first(MODELS))
def test_a_client_that_never_reads(model, scale):
    figures = check_nonreader(model, scale)
    growth = float(figures.measures["rss growth"].split()[0]) * MiB
    sent = float(figures.measures["sent unread"].split()[0]) * MiB
    assert sent < scale.nonreader_bytes  # the server stopped reading it
    if model == "select":
        assert growth < RSS_LIMIT
    if holds_up_to(model, 1):
        assert figures.total_denied == 0, dict(figures.denied)
    else:
        assert figures.expected_denial and figures.total_denied > 0
    assert figures.bytes_lost == 0  # what it was owed came back whole when it read
    assert figures.measures["shed by --idle-timeout 1"].endswith("s")
    no_problems(figures)
