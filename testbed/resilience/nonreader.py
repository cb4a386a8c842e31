"""4. non-reader: a client that sends and never reads; memory stays flat, others served."""

from __future__ import annotations

import socket
import threading
import time

from clients.harness import EXPECTED, classify, open_connection
from testbed.resilience.common import (
    IDLE_SLACK,
    IDLE_TIMEOUT,
    P99_LIMIT,
    REDUCED,
    RSS_LIMIT,
    Figures,
    MiB,
    Scale,
    _pattern,
    altered,
    holds_up_to,
    paced_probes,
    pump,
    running,
    served_again,
    slots,
    tree_rss,
)


def read_stream(sock: socket.socket, expected_block: bytes, total: int,
                time_limit: float) -> tuple[int, int, str | None]:
    """Read ``total`` bytes that must repeat ``expected_block``: (verified, lost, failure)."""
    sock.settimeout(time_limit)
    got = bad = 0
    size = len(expected_block)
    kind = None
    try:
        while got < total:
            chunk = sock.recv(min(MiB, total - got))
            if not chunk:
                kind = "closed_early"
                break
            at = got % size
            wanted = (expected_block[at:] + expected_block * (len(chunk) // size + 1))[:len(chunk)]
            if chunk != wanted:
                bad += altered(chunk, wanted)
            got += len(chunk)
    except OSError as exc:
        kind = classify(exc)
    return got - bad, (total - got) + bad, kind


TCP_ESTABLISHED = 1  # tcp_info.tcpi_state


def connection_open(sock: socket.socket) -> bool:
    """Is the connection still established (the peer has neither closed nor reset it)?

    Read from TCP_INFO without reading data, so a client that never reads can tell.
    """
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_ESTABLISHED
    except (AttributeError, OSError):
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0


class _StuckNonReader(threading.Thread):
    """With --idle-timeout, a non-reader whose replies make no progress is shed like an idle
    client: the server closes it about IDLE_TIMEOUT after it stopped taking bytes."""

    def __init__(self, model: str, scale: Scale) -> None:
        super().__init__(name="resilience-stuck-non-reader", daemon=True)
        self.model, self.scale = model, scale
        self.shed_after: float | None = None
        self.failure: str | None = None
        self.start()

    def run(self) -> None:
        try:
            with running(self.model, "upper", "--idle-timeout", f"{IDLE_TIMEOUT:g}") as server:
                with open_connection(*server.address, timeout=10) as sock:
                    pumped = pump(sock, _pattern(), self.scale.nonreader_bytes,
                                  self.scale.stall, 15.0)
                    # The shed is timed from the last bytes the server took from us; the
                    # wait for it from now, as before, with the slack of a busy machine.
                    deadline = time.monotonic() + IDLE_TIMEOUT + IDLE_SLACK
                    shed = pumped.peer_closed
                    while not shed and time.monotonic() < deadline:
                        time.sleep(0.05)
                        shed = not connection_open(sock)
                    if shed:
                        self.shed_after = time.monotonic() - pumped.last_taken
        except Exception as exc:  # noqa: BLE001 - reported by the check
            self.failure = f"{type(exc).__name__}: {exc}"


def check_nonreader(model: str, scale: Scale = REDUCED) -> Figures:
    """A client sends up to 100 MiB and reads nothing: memory stays flat, others are served."""
    figures = Figures(model, "non-reader")
    concurrent = holds_up_to(model, 1)
    if not concurrent:
        figures.expected_denial = f"serves {slots(model)}: the non-reader holds it"
    block = _pattern()
    expected_block = EXPECTED["upper"](block)
    stuck = _StuckNonReader(model, scale)  # on its own server, meanwhile
    with running(model, "upper") as server:
        before = tree_rss(server.pid)
        with open_connection(*server.address, timeout=10) as sock:
            figures.faults += 1
            sent = pump(sock, block, scale.nonreader_bytes, scale.stall, time_limit=15.0).sent
            during = tree_rss(server.pid)
            others = paced_probes(server.address, "upper", seconds=1.0, period=0.2,
                                  timeout=P99_LIMIT, figures=figures)
            during = max(during, tree_rss(server.pid))
            # Now read: the server must pick up where it stopped and owe nothing less.
            sock.shutdown(socket.SHUT_WR)
            verified, lost, kind = read_stream(sock, expected_block, sent, time_limit=20.0)
        figures.bytes_verified += verified
        figures.bytes_lost += lost
        if kind is None and not lost:
            figures.exchanges += 1
        else:
            figures.deny(kind or "mismatch")
        alive = server.running and served_again(server.address, "upper", 10.0, figures)
        figures.survived += alive
    stuck.join(30)
    figures.faults += 1
    figures.survived += stuck.shed_after is not None
    shed = "-" if stuck.shed_after is None else f"{stuck.shed_after:.1f}s"
    figures.measure(f"shed by --idle-timeout {IDLE_TIMEOUT:g}", stuck.failure or shed)
    figures.expect(stuck.failure is None, f"stuck non-reader check broke down: {stuck.failure}")
    figures.expect(stuck.shed_after is not None,
                   f"--idle-timeout {IDLE_TIMEOUT:g} never shed a non-reader whose replies made "
                   f"no progress (waited {IDLE_TIMEOUT + IDLE_SLACK:g}s)")
    growth = during - before
    figures.measure("sent unread", f"{sent / MiB:.1f} MiB")
    figures.measure("rss growth", f"{growth / MiB:+.1f} MiB")
    figures.measure("others served", f"{len(others)}/{len(others) + figures.total_denied}")
    figures.expect(alive, "the server stopped serving after the non-reader")
    figures.expect(lost == 0 and kind is None,
                   f"reading back the non-reader's replies: {lost} bytes lost ({kind})")
    if model == "select":
        figures.expect(growth < RSS_LIMIT, f"RSS grew {growth / MiB:.0f} MiB >= "
                       f"{RSS_LIMIT // MiB} MiB under a non-reader")
    figures.expect(sent < scale.nonreader_bytes,
                   f"the server read all {sent / MiB:.0f} MiB from a client that reads nothing")
    if concurrent:
        figures.expect(figures.total_denied == 0,
                       f"another client was denied meanwhile: {dict(figures.denied)}")
    return figures
