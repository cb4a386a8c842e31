"""5. Descriptors: soft limit 64, 200 connections; then --max-connections 50.

The server survives, stays under 20% CPU while exhausted, logs the exhaustion
once per burst (per accepting process), and serves a normal client once the
connections close; --max-connections turns the extra clients away at once, logs
them, and lets the next client in as soon as the others have left.
"""

from __future__ import annotations

import pytest

from testbed.resilience import check_descriptors
from testbed.resilience.common import CPU_LIMIT
from tests.conftest import core_first
from tests.resilience.conftest import MODELS, no_problems


@pytest.mark.parametrize("model", core_first(MODELS))
def test_out_of_descriptors_and_max_connections(model, scale):
    figures = check_descriptors(model, scale)
    cpu = float(figures.measures["cpu saturated"].rstrip("%"))
    assert cpu < CPU_LIMIT
    assert figures.survived == figures.faults == 2
    no_problems(figures)
