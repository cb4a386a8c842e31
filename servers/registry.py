"""The one place that maps names to models and services.

``testbed models`` prints it, ``testbed serve`` looks names up in it and the
comparison iterates it. Adding a model is one module in ``servers/models/``
and one line in ``MODELS``; adding a service is one module in ``servers/services/``
and one line in ``SERVICES``.
"""

from __future__ import annotations

import importlib

from servers.models.base import Model
from servers.services import Service, echo, http, sntp, upper
from servers.services.lines import LineService

#: name -> "module:class", imported on first use so a broken model can't break the others
MODELS: dict[str, str] = {
    "sequential": "servers.models.sequential:SequentialModel",
    "forking": "servers.models.forking:ForkingModel",
    "threading": "servers.models.threading:ThreadingModel",
    "select": "servers.models.select:SelectModel",
    "asyncio": "servers.models.asyncio:AsyncioModel",
    "prefork": "servers.models.prefork:PreforkModel",
    "threadpool": "servers.models.threadpool:ThreadPoolModel",
    "reuseport": "servers.models.reuseport:ReuseportModel",
}

#: name -> service, in the order ``testbed models`` lists them
SERVICES: dict[str, Service] = {service.name: service for service in (
    echo.SERVICE,
    upper.SERVICE,
    http.SERVICE,
    sntp.SERVICE,
)}


def line_services() -> list[str]:
    """The services that answer newline-terminated lines with a byte-wise transform (echo,
    upper): the ones the line clients (harness, nc, bench, the TCP load) speak and verify."""
    return [name for name, service in SERVICES.items() if isinstance(service, LineService)]


def model_names() -> list[str]:
    return list(MODELS)


def get_model(name: str) -> type[Model]:
    try:
        target = MODELS[name]
    except KeyError:
        raise LookupError(f"unknown model {name!r} (choose from {', '.join(MODELS)})") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_service(name: str) -> Service:
    try:
        return SERVICES[name]
    except KeyError:
        raise LookupError(
            f"unknown service {name!r} (choose from {', '.join(SERVICES)})") from None
