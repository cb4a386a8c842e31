"""6. Faults: a client killed mid-transfer, a forked child killed mid-request, SIGTERM under load."""

from __future__ import annotations

import pytest

from testbed.resilience import check_faults
from tests.conftest import core_first
from tests.resilience.conftest import MODELS, no_problems


@pytest.mark.parametrize("model", core_first(MODELS))
def test_killed_client_killed_child_and_sigterm(model, scale):
    figures = check_faults(model, scale)
    assert figures.measures["client killed"] == "served after"
    assert figures.measures["sigterm"].startswith("exit 0 in ")
    assert ", 0 orphans," in figures.measures["sigterm"]
    if model == "forking":  # a process per connection: there is a child to kill
        assert "parent serves, child reaped" in figures.measures["child killed"]
    assert figures.survived == figures.faults
    no_problems(figures)
