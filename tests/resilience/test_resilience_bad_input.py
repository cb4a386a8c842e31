"""7. Bad input: malformed connections and random byte strings; 0 crashes, 0 tracebacks."""

from __future__ import annotations

import pytest

from testbed.resilience import check_bad_input
from testbed.resilience.bad_input import MALFORMED
from tests.resilience.conftest import MODELS, no_problems


@pytest.mark.parametrize("model", MODELS)
def test_malformed_and_random_input(model, scale):
    figures = check_bad_input(model, scale)
    assert figures.measures["tracebacks"] == "0"
    assert int(figures.measures["fuzzed strings"]) >= scale.fuzz
    assert figures.bytes_lost == 0
    assert figures.faults >= len(MALFORMED)
    assert figures.survived == figures.faults
    no_problems(figures)
