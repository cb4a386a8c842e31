"""The blocking models' inner loops: one connection, or one datagram, on a blocking socket.

Every model that gives a client its own thread or process of control
(sequential, forking, threading, and the pool-based ones) runs these, so the
framing, the cost policy, the limits and the log lines are written once.
"""

from __future__ import annotations

import socket

from servers.models import logs
from servers.models.base import Model
from servers.models.support import RECV_SIZE, disconnect_reason, linger, send_datagram, time_limit


def serve_connection(model: Model, sock: socket.socket, peer: str) -> None:
    """Pump one TCP connection through the service until the client is done, or the
    session ends it (``closing``); the session's ``timeout`` bounds each wait like
    ``--idle-timeout`` does."""
    session = model.service.session()
    cost, stop = model.cost, model.stopping
    idle = model.config.idle_timeout or None
    limit = time_limit(idle, session.timeout)
    sock.settimeout(limit)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # replies go out at once
    received = requests = 0
    logs.connected(peer)
    try:
        while True:
            data = sock.recv(RECV_SIZE)
            if not data:
                reply, done = session.close()
            else:
                received += len(data)
                reply, done = session.feed(data)
            if done:
                requests += done
                if not cost.block(done, stop):
                    logs.dropped_stopping(peer)
                    return
            if reply:
                if limit != idle:  # a send is bounded by --idle-timeout alone
                    limit = idle
                    sock.settimeout(limit)
                sock.sendall(reply)
            if not data:
                break
            if session.closing:
                linger(sock)
                break
            wait = time_limit(idle, session.timeout)
            if wait != limit:
                limit = wait
                sock.settimeout(max(limit, 0.001) if limit is not None else None)
    except TimeoutError:
        logs.idle(peer, limit or 0)
        return
    except ConnectionError as exc:
        logs.closed(peer, disconnect_reason(exc), received)
        return
    except OSError as exc:
        if stop.is_set():
            return
        logs.failed(peer, exc)
        return
    logs.disconnected(peer, received, requests)


def serve_datagram(model: Model, data: bytes, sock: socket.socket, address: tuple,
                   peer: str) -> None:
    """Answer one UDP datagram: each datagram is a request, the reply goes to its sender."""
    reply = model.answer_datagram(data, peer)
    if model.cost.wait(1, model.stopping):
        send_datagram(sock, reply, address, peer)

