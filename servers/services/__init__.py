"""Services: what bytes go back, written once and free of sockets (sans-I/O).

One module per service; :mod:`servers.services.base` is the contract every model
relies on, :mod:`servers.services.lines` the line framing that ``echo`` and
``upper`` share. Adding a service is one module here and one line in
:mod:`servers.registry`.
"""

from servers.services.base import Service, Session

__all__ = ["Service", "Session"]
