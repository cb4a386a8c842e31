"""``prefork``: N worker processes forked up front, all accepting on one shared socket.

gunicorn's sync workers, Apache's prefork MPM: each worker blocks in
``accept()`` on the listening socket it inherited, serves that one connection
to the end with the shared blocking loop, and only then accepts again. The
kernel hands each connection to one waiting worker; while every worker is busy,
new connections wait in the listen backlog. A worker that dies is replaced.

``--max-connections`` counts the connections of all workers together (a shared
board), so it only bites when it is below ``--workers``: beyond the workers,
clients wait in the backlog instead of being accepted and turned away.

UDP: every worker ``recvfrom``s on the shared socket, a datagram at a time.
"""

from __future__ import annotations

import socket
import time

from servers.config import ServerConfig
from servers.models import logs
from servers.models.blocking import serve_connection, serve_datagram
from servers.models.support import MAX_DATAGRAM, make_listener, peer_name
from servers.models.workers import Board, ProcessPoolModel, default_workers


class PreforkModel(ProcessPoolModel):
    name = "prefork"
    description = "N processes forked up front (--workers) accept on one shared socket; dead ones replaced"

    listener: socket.socket | None = None

    @classmethod
    def capacity(cls, config: ServerConfig) -> int | None:
        """One client per worker at once; the others wait in the listen backlog."""
        return config.workers or default_workers()

    def bind(self) -> tuple[str, int]:
        self.listener = make_listener(self.config)
        self.board = Board(self.workers)
        host, port = self.listener.getsockname()[:2]
        return host, port

    def close_listeners(self) -> None:
        if self.listener is not None:
            self.listener.close()

    def run_worker(self, slot: int) -> None:
        assert self.listener is not None
        self.board[slot] = 0  # a predecessor killed mid-connection left its mark
        if self.config.udp:
            self._serve_datagrams()
        else:
            self._serve_connections(slot)

    def _serve_connections(self, slot: int) -> None:
        listener, board = self.listener, self.board
        while True:
            accepted = self.accept_client(listener)
            if accepted is None:
                if self.accept_starved:
                    time.sleep(0.05)  # out of descriptors: let some close
                continue
            sock, peer = accepted
            with sock:
                if self.over_limit(board.total(), peer):
                    continue
                board[slot] = 1
                try:
                    serve_connection(self, sock, peer)
                finally:
                    board[slot] = 0

    def _serve_datagrams(self) -> None:
        listener = self.listener
        while True:
            try:
                data, address = listener.recvfrom(MAX_DATAGRAM)
            except OSError as exc:  # e.g. ICMP port unreachable from an earlier reply
                logs.receive_failed(exc)
                continue
            serve_datagram(self, data, listener, address, peer_name(address))
