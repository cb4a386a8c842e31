"""The blocking models' inner loops: one connection, or one datagram, on a blocking socket.

Every model that gives a client its own thread or process of control
(sequential, forking, threading, and the pool-based ones) runs these, so the
framing, the cost policy, the limits and the log lines are written once.
"""

from __future__ import annotations

import socket

from servers.models.base import RECV_SIZE, Model, disconnect_reason, log, send_datagram


def serve_connection(model: Model, sock: socket.socket, peer: str) -> None:
    """Pump one TCP connection through the service until the client is done."""
    session = model.service.session()
    cost, stop = model.cost, model.stopping
    idle = model.config.idle_timeout
    sock.settimeout(idle or None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # replies go out at once
    received = requests = 0
    log.info("client %s connected", peer)
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
                    log.info("client %s dropped: server stopping", peer)
                    return
            if reply:
                sock.sendall(reply)
            if not data:
                break
    except TimeoutError:
        log.info("client %s idle for %gs: closing", peer, idle)
        return
    except ConnectionError as exc:
        log.info("client %s: %s after %d bytes", peer, disconnect_reason(exc), received)
        return
    except OSError as exc:
        if stop.is_set():
            return
        log.info("client %s: %s", peer, exc.strerror or exc)
        return
    log.info("client %s disconnected: %d bytes, %d requests", peer, received, requests)


def serve_datagram(model: Model, data: bytes, sock: socket.socket, address: tuple,
                   peer: str) -> None:
    """Answer one UDP datagram: each datagram is a request, the reply goes to its sender."""
    reply = model.answer_datagram(data, peer)
    if model.cost.wait(1, model.stopping):
        send_datagram(sock, reply, address, peer)

