"""The resilience suite: the checks of testbed.resilience, asserted for every registered model.

Each test runs one check in its reduced form (the default run, CI) and in its full
form (``-m slow``: the full figures). The checks start and reap their own
servers; the tests assert on the figures they return, which are also what
``testbed resilience`` prints.
"""

from __future__ import annotations

import pytest

from servers import registry
from testbed.resilience import FULL, REDUCED, Figures, Scale

MODELS = registry.model_names()
UDP_MODELS = [name for name in MODELS if registry.get_model(name).udp]

FULL_TIMEOUT = 900  # seconds: a full check on a busy machine


@pytest.fixture(params=[
    pytest.param(REDUCED, id="reduced"),
    pytest.param(FULL, id="full", marks=[pytest.mark.slow, pytest.mark.timeout(FULL_TIMEOUT)]),
])
def scale(request: pytest.FixtureRequest) -> Scale:
    """The reduced form by default; the full form only with ``-m slow``."""
    return request.param


def no_problems(figures: Figures) -> None:
    """Every threshold of the check held; the message shows all the figures if not."""
    assert figures.problems == [], (
        f"{figures.model} {figures.check}: {figures.problems}\n"
        f"measures {figures.measures}, denied {dict(figures.denied)}")
