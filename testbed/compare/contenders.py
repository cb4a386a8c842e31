"""What the comparison puts side by side: every registered model, plus named variants.

A variant is a model run with options that change how it works inside, such as
asyncio on libuv (``asyncio+uvloop`` is ``--model asyncio --loop uvloop``): the
same model module, a different engine, a row of its own in every table. A
variant that needs an optional package is compared only where that package is
installed, and asking for it elsewhere is a one-line error.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from servers import registry
from servers.apps import launch


@dataclass(frozen=True)
class Variant:
    """A registered model with extra ``testbed serve`` options, under a name of its own."""

    model: str
    options: tuple[str, ...]
    needs: str | None = None  # an importable module it cannot run without
    extra: str | None = None  # the pip extra that installs it

    def available(self) -> bool:
        return self.needs is None or importlib.util.find_spec(self.needs) is not None

    def missing(self, name: str) -> str:
        return (f"{name} needs {self.needs}, which is not installed "
                f"(pip install 'testbed[{self.extra or self.needs}]')")


VARIANTS: dict[str, Variant] = {
    "asyncio+uvloop": Variant("asyncio", ("--loop", "uvloop"), needs="uvloop", extra="uvloop"),
}


def names(service: str = "echo") -> list[str]:
    """The default contenders: every registered model, then the variants installed here
    (for http, the production servers installed here too)."""
    found = [*registry.model_names(),
             *(name for name, variant in VARIANTS.items() if variant.available())]
    if service == "http":
        found += [name for name, server in launch.CONTENDERS.items() if not server.missing()]
    return found


def known(service: str = "echo") -> list[str]:
    """Every name ``--models`` accepts, installed or not."""
    return [*registry.model_names(), *VARIANTS,
            *(launch.CONTENDERS if service == "http" else ())]


def require_installed(name: str) -> None:
    """LookupError (one line) for a variant or a production server that cannot run here."""
    variant = VARIANTS.get(name)
    if variant is not None and not variant.available():
        raise LookupError(variant.missing(name))
    server = launch.CONTENDERS.get(name)
    if server is not None and server.missing():
        raise LookupError(f"{name} needs {server.missing()}, which is not installed "
                          f"(pip install 'testbed[{launch.EXTRA}]')")


def server_options(name: str) -> tuple[str, tuple[str, ...]]:
    """The model a contender runs and the options it adds to a scenario's."""
    variant = VARIANTS.get(name)
    return (variant.model, variant.options) if variant else (name, ())
