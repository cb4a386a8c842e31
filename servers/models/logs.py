"""Every line a model logs, written once: tests and the resilience checks grep for these words.

A model never calls ``log.info`` with its own text for what a client did: it
calls one of these, so that ``client 127.0.0.1:5000 disconnected: 12 bytes, 2
requests`` reads the same whatever the model, and a check that counts
``": unexpected "`` or ``" rejected"`` counts every model's lines.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("testbed.server")


# -- a connection's life ------------------------------------------------------

def connected(peer: str) -> None:
    log.info("client %s connected", peer)


def disconnected(peer: str, received: int, requests: int) -> None:
    """The client closed its side and everything owed was sent: the normal end."""
    log.info("client %s disconnected: %d bytes, %d requests", peer, received, requests)


def closed(peer: str, reason: str, received: int) -> None:
    """The connection ended otherwise (reset, broken pipe, closed by the server)."""
    log.info("client %s: %s after %d bytes", peer, reason, received)


def idle(peer: str, seconds: float) -> None:
    """--idle-timeout (or a service's own timeout) ran out with nothing received."""
    log.info("client %s idle for %gs: closing", peer, seconds)


def not_reading(peer: str, seconds: float) -> None:
    """--idle-timeout ran out while replies waited for a client that no longer reads."""
    log.info("client %s: not reading its replies for %gs: closing", peer, seconds)


def failed(peer: str, exc: OSError) -> None:
    """A socket error that is not one of the ends above."""
    log.info("client %s: %s", peer, exc.strerror or exc)


def dropped_stopping(peer: str) -> None:
    log.info("client %s dropped: server stopping", peer)


def unexpected(peer: str, exc: BaseException) -> None:
    """A bug met while serving one client: one line, and the server serves on."""
    log.error("client %s: unexpected %s: %s", peer, type(exc).__name__, exc)


# -- admission ----------------------------------------------------------------

def over_limit(peer: str, open_connections: int, limit: int) -> None:
    log.warning("client %s rejected: %d connections open (--max-connections %d)",
                peer, open_connections, limit)


def queue_full(what: str, peer: str, waiting: int) -> None:
    """``what``: "client" or "datagram from"."""
    log.warning("%s %s rejected: queue full (%d waiting)", what, peer, waiting)


def queued(what: str, peer: str, workers: int, waiting: int) -> None:
    log.info("%s %s queued: all %d workers busy (%d waiting)", what, peer, workers, waiting)


def accept_error(exc: OSError) -> None:
    log.info("accept failed: %s", exc.strerror or exc)


def accepts_paused(errno: int) -> None:
    """The first EMFILE-like failure of a burst (see Model.accept_failed)."""
    log.warning("accept failed (%s): pausing accepts until descriptors are free",
                os.strerror(errno))


def accepts_resumed(failed_accepts: int) -> None:
    log.warning("accepting again (%d accepts failed for want of descriptors)", failed_accepts)


# -- datagrams ----------------------------------------------------------------

def datagram(peer: str, size: int) -> None:
    log.info("client %s sent %d bytes", peer, size)


def receive_failed(exc: BaseException) -> None:
    log.info("receive failed: %s", getattr(exc, "strerror", None) or exc)


def reply_lost(peer: str, exc: OSError) -> None:
    log.info("client %s: reply lost: %s", peer, exc.strerror or exc)


# -- worker processes and the event loop ----------------------------------------

def workers_started(pids: list[int]) -> None:
    log.info("%d worker processes started: pids %s", len(pids), " ".join(map(str, pids)))


def worker_died(slot: int, pid: int, how: str) -> None:
    log.warning("worker %d (pid %d) %s: starting a new one", slot, pid, how)


def worker_failed(slot: int, pid: int, exc: BaseException) -> None:
    log.error("worker %d (pid %d) failed: %s: %s", slot, pid, type(exc).__name__, exc)


def loop_error(message: str, exc: BaseException | None) -> None:
    detail = f": {type(exc).__name__}: {exc}" if exc else ""
    log.error("event loop: %s%s", message, detail)
