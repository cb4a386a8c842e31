"""The contract between a service and the models that run it.

A model never looks inside a service. Over TCP it asks :meth:`Service.session`
for one :class:`Session` per connection, feeds it every chunk received and
sends back what it returns; over UDP it hands each datagram to
:meth:`Service.datagram` and sends back its reply, if it returns one. The
number of requests a reply completes is what the model applies the per-request
cost to (``--delay``, ``--work-ms``) and what it logs.

Two things a session may ask of the model, both read after each ``feed``
(the line services ask neither: ``closing`` is False, ``timeout`` None):

- ``closing``: True once the reply just returned must end the connection
  (HTTP's ``Connection: close``, HTTP/1.0, an error). The model feeds it no
  more, sends everything owed, then half-closes and discards what the client
  still sends for a moment before closing (``support.linger``: closing with
  unread bytes would reset the connection and could destroy the reply).
- ``timeout``: how long, from the last bytes fed, the connection may wait for
  the client's next bytes given the session's state (HTTP: the keep-alive timeout
  between requests, the header timeout inside a head), or None. The model
  applies the smaller of it and ``--idle-timeout`` as it applies
  ``--idle-timeout`` alone (``support.time_limit``), and logs it the same way.

A service with options of its own (an HTTP parser, an SNTP stratum) declares
them in :meth:`Service.add_options`, which ``testbed serve`` calls for every
registered service, and takes their values in :meth:`Service.configure`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any, Protocol


class Session(Protocol):
    """One connection's protocol state: fed bytes, returns (reply, requests completed)."""

    #: the connection ends once the last reply is sent (a plain attribute: read per request)
    closing: bool

    def feed(self, data: bytes) -> tuple[bytes, int]:
        """Take received bytes (never empty); return the reply owed now and the requests it ends."""

    def close(self) -> tuple[bytes, int]:
        """The peer finished sending: return what is still owed (a final partial request)."""

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of a request (bounded by the service)."""

    @property
    def timeout(self) -> float | None:
        """Seconds from the last feed the connection may wait for more (0: no longer), or None."""


class Service(Protocol):
    """A named service: the logic every model runs, chosen by name from the registry."""

    name: str
    description: str
    transports: frozenset[str]  # "tcp", "udp": what it can be served over

    def add_options(self, group: argparse._ArgumentGroup) -> None:
        """Add this service's own command-line options (long names that say whose they are)."""

    def configure(self, options: Mapping[str, Any]) -> Service:
        """This service with the parsed options applied (a new object, or itself if it has none)."""

    def session(self) -> Session:
        """Start the state of one connection."""

    def datagram(self, data: bytes) -> bytes | None:
        """Answer one UDP datagram: each datagram is one whole request.

        None means no reply at all (a datagram that is not a request, to a service such
        as sntp); b"" is a reply of zero bytes (echo's answer to an empty datagram).
        A service served over UDP only may raise in :meth:`session`.
        """
