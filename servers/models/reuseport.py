"""``reuseport``: N processes, each a select loop on its own SO_REUSEPORT socket (nginx's model).

The parent binds N listening sockets to one port with ``SO_REUSEPORT`` (the
first on the requested port, 0 picks one, the others on the port it got) and
forks one worker per socket; each worker runs the ``select`` model's loop on
its socket alone, and the kernel spreads incoming connections (or datagrams)
over the sockets by a hash of the client's address and port. The parent keeps
its copies of the sockets without ever accepting on them, so when a worker
dies the connections the kernel routes to its socket wait in that socket's
backlog for the replacement instead of being refused.

``--max-connections`` applies to each worker separately, like nginx's
``worker_connections``: the loops share no state.
"""

from __future__ import annotations

import socket

from servers.config import ServerConfig
from servers.models.select import SelectModel
from servers.models.support import make_listener
from servers.models.workers import ProcessPoolModel


class AdoptingSelectModel(SelectModel):
    """The select model, serving a listening socket it is handed instead of opening one."""

    def __init__(self, config: ServerConfig, service, listener: socket.socket) -> None:
        super().__init__(config, service)
        self.adopted = listener

    def bind(self) -> tuple[str, int]:
        self.listener = self.adopted
        self.listener.setblocking(False)
        self._listen()
        host, port = self.listener.getsockname()[:2]
        return host, port


class ReuseportModel(ProcessPoolModel):
    name = "reuseport"
    description = "N processes, each a select loop on its own SO_REUSEPORT socket; the kernel spreads clients"

    listeners: list[socket.socket]

    def bind(self) -> tuple[str, int]:
        config = self.config
        self.listeners = []
        if config.port:
            # SO_REUSEPORT would quietly join another server of ours on that port: a plain
            # bind first turns "already in use" into the error every other model gives.
            make_listener(config).close()
        try:
            first = make_listener(config, reuse_port=True)
            self.listeners.append(first)
            host, port = first.getsockname()[:2]
            for _ in range(1, self.workers):
                self.listeners.append(make_listener(config, port, reuse_port=True))
        except BaseException:
            self.close_listeners()
            raise
        return host, port

    def close_listeners(self) -> None:
        for sock in getattr(self, "listeners", ()):
            sock.close()

    def run_worker(self, slot: int) -> None:
        mine = self.listeners[slot]
        for sock in self.listeners:
            if sock is not mine:
                sock.close()  # this process's copies only; the parent keeps its own
        loop = AdoptingSelectModel(self.config, self.service, mine)
        loop.bind()
        loop.serve_forever()
