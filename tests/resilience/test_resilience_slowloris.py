"""3. Slowloris: 200 idle connections beside a normal client; --idle-timeout 1 sheds them.

A model that serves every client at once must keep serving the normal client (no
failure, p99 under a second). A model that serves a bounded number at once
(sequential) is expected to deny: the figures must say so, not hide it.
"""

from __future__ import annotations

import pytest

from testbed.resilience import check_slowloris
from testbed.resilience.common import P99_LIMIT, holds_up_to
from tests.conftest import core_first
from tests.resilience.conftest import MODELS, no_problems


@pytest.mark.parametrize("model", core_first(MODELS))
def test_idle_connections_and_a_normal_client(model, scale):
    figures = check_slowloris(model, scale)
    assert figures.measures["idle held"] == f"{scale.idle}/{scale.idle}"
    if holds_up_to(model, scale.idle):
        assert figures.total_denied == 0, dict(figures.denied)
        assert not figures.expected_denial
        p99 = float(figures.measures["normal p99"].split()[0]) / 1000
        assert p99 < P99_LIMIT
        assert figures.measures["idle shed"].startswith(f"{scale.idle}/{scale.idle} ")
        assert figures.measures["active kept"].endswith(", ok")
        assert figures.measures["slow reader kept"].endswith(", ok")
    else:
        # The denial is reported, by failure class, with the reason it is expected.
        assert figures.total_denied > 0
        assert figures.expected_denial
        assert set(figures.denied) <= {"io_timeout", "connect_timeout", "reset", "closed_early"}
    assert figures.survived == figures.faults  # serving again once the idle ones are gone
    no_problems(figures)
