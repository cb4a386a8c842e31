"""2. Properties (hypothesis): for any bytes cut any way, reply == transform(input).

One server per (model, service) for the whole module, many examples over it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servers import registry
from testbed.processes import ServerProcess, start_server
from testbed.resilience import Figures
from testbed.resilience.properties import run_properties
from tests.resilience.conftest import MODELS, no_problems

SERVICES = registry.line_services()  # the property: reply == transform(input)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[tuple[str, str], ServerProcess]]:
    """Servers started on first use, one per (model, service), all reaped at module end."""
    started: dict[tuple[str, str], ServerProcess] = {}
    yield started
    for proc in started.values():
        proc.cleanup()


def server_for(servers: dict, model: str, service: str) -> ServerProcess:
    if (model, service) not in servers:
        servers[model, service] = start_server(
            ["--model", model, "--service", service, "--quiet"])
    return servers[model, service]


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("model", MODELS)
def test_reply_is_the_transform_of_any_chunked_input(servers, model, service, scale):
    server = server_for(servers, model, service)
    figures = Figures(model, "properties")
    run_properties(server.address, service, scale.examples, figures)
    no_problems(figures)
    assert figures.bytes_lost == 0
    assert figures.exchanges >= scale.examples
    assert server.running
