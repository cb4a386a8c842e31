"""3. slowloris: idle connections beside a normal client, then --idle-timeout sheds them."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import suppress

from clients.harness import EXPECTED, ExchangeError, TCPClient, classify
from clients.storm import percentile
from testbed.resilience.common import (
    IDLE_SLACK,
    IDLE_TIMEOUT,
    P99_LIMIT,
    REDUCED,
    Figures,
    MiB,
    Scale,
    _family,
    _pattern,
    altered,
    close_all,
    holds_up_to,
    open_idle,
    paced_probes,
    running,
    served_again,
    slots,
    wait_for_eof,
)


def check_slowloris(model: str, scale: Scale = REDUCED) -> Figures:
    """200 idle connections beside a normal client; then --idle-timeout 1 must shed them.

    The servers get a listen queue longer than the attack (--backlog), so every idle
    connection completes its handshake whatever the model: a model that does not accept
    them leaves them in the queue, holding their place ahead of the normal client.
    """
    figures = Figures(model, "slowloris")
    backlog = str(scale.idle + 56)
    concurrent = holds_up_to(model, scale.idle)
    if not concurrent:
        figures.expected_denial = f"serves {slots(model)}: idle clients hold every slot"
    # The --idle-timeout phase runs on its own server: meanwhile in the reduced form (its
    # 200 connections then share the machine with the normal client's), after in the full.
    defence = Figures(model, "slowloris")
    phase = threading.Thread(target=_idle_timeout_phase, args=(model, scale, backlog, defence),
                             name="resilience-idle-timeout", daemon=True)
    if scale.overlap:
        phase.start()
    with running(model, "echo", "--backlog", backlog) as server:
        idle, failed = open_idle(server.address, scale.idle, within=3.0)
        figures.faults += 1
        try:
            latencies = paced_probes(server.address, "echo", scale.slowloris_seconds,
                                     scale.period, timeout=P99_LIMIT, figures=figures)
        finally:
            close_all(idle)
        alive = server.running and served_again(server.address, "echo", 10.0)
        figures.survived += alive
    p99 = percentile(latencies, 0.99)
    figures.measure("idle held", f"{len(idle)}/{scale.idle}")
    figures.measure("normal p99", f"{p99 * 1000:.0f} ms" if latencies else "-")
    figures.measure("normal served", f"{len(latencies)}/{len(latencies) + figures.total_denied}")
    figures.expect(alive, "the server stopped serving after the idle connections closed")
    if concurrent:
        figures.expect(len(idle) == scale.idle and not failed,
                       f"only {len(idle)} of {scale.idle} idle connections were accepted")
        figures.expect(figures.total_denied == 0,
                       f"the normal client was denied: {dict(figures.denied)}")
        figures.expect(p99 < P99_LIMIT, f"normal client p99 {p99:.2f}s >= {P99_LIMIT:g}s")
    if not scale.overlap:
        phase.start()
    phase.join(60)
    figures.expect(not phase.is_alive(), "the --idle-timeout phase did not finish in 60 s")
    figures.merge(defence)
    return figures


def _idle_timeout_phase(model: str, scale: Scale, backlog: str, figures: Figures) -> None:
    """With --idle-timeout 1 the idle connections see EOF after about 1 s; active ones stay."""
    concurrent = holds_up_to(model, scale.idle)
    with running(model, "echo", "--idle-timeout", f"{IDLE_TIMEOUT:g}",
                 "--backlog", backlog) as server:
        idle, _ = open_idle(server.address, scale.idle, within=3.0)
        figures.faults += 1
        active = slow = None
        if concurrent:
            active = _ActiveClient(server.address, period=IDLE_TIMEOUT / 4,
                                   seconds=IDLE_TIMEOUT + 0.5)
            slow = _SlowReader(server.address, seconds=IDLE_TIMEOUT * 2)
        # A bounded model sheds them a few at a time: watch long enough to show it, no more.
        within = IDLE_TIMEOUT + IDLE_SLACK if concurrent else IDLE_TIMEOUT * 2 + 0.5
        try:
            closed = wait_for_eof(idle, within=within)
        finally:
            close_all(idle)
            for client in (active, slow):
                if client is not None:
                    client.join(IDLE_TIMEOUT * 2 + 10)
        alive = server.running and served_again(server.address, "echo", 10.0)
        figures.survived += alive
    figures.measure("idle shed", f"{len(closed)}/{len(idle)} in "
                    f"{min(closed, default=0):.1f}-{max(closed, default=0):.1f}s")
    figures.expect(alive, "the server stopped serving after --idle-timeout shed connections")
    if active is not None:
        figures.exchanges += active.exchanges
        figures.bytes_verified += active.exchanges * 10
        figures.measure("active kept", f"{active.exchanges} exchanges, {active.failure or 'ok'}")
        figures.expect(active.failure is None,
                       f"--idle-timeout cut a client that was exchanging: {active.failure}")
    if slow is not None:
        figures.bytes_verified += slow.verified
        figures.bytes_lost += slow.lost
        figures.measure("slow reader kept", f"{slow.verified // 1024} KiB in "
                        f"{slow.seconds:g}s, {slow.failure or 'ok'}")
        figures.expect(slow.failure is None and not slow.lost,
                       f"--idle-timeout {IDLE_TIMEOUT:g} cut a client reading its reply slowly "
                       f"but steadily: {slow.failure}, {slow.lost} bytes lost")
    if concurrent:
        figures.expect(len(closed) == len(idle) == scale.idle,
                       f"--idle-timeout {IDLE_TIMEOUT:g}: {len(closed)} of {len(idle)} idle "
                       f"connections closed within {IDLE_TIMEOUT + IDLE_SLACK:g}s")
        figures.expect(min(closed, default=IDLE_TIMEOUT) >= IDLE_TIMEOUT * 0.5,
                       f"idle connections closed after {min(closed):.2f}s, before the timeout")


class _ActiveClient(threading.Thread):
    """One connection exchanging every ``period``: --idle-timeout must leave it alone."""

    def __init__(self, address: tuple[str, int], period: float, seconds: float) -> None:
        super().__init__(name="resilience-active", daemon=True)
        self.address, self.period, self.seconds = address, period, seconds
        self.exchanges = 0
        self.failure: str | None = None
        self.start()

    def run(self) -> None:
        end = time.monotonic() + self.seconds
        try:
            with TCPClient(*self.address, connect_timeout=3, io_timeout=3) as client:
                while time.monotonic() < end:
                    client.exchange(b"still here\n")
                    self.exchanges += 1
                    time.sleep(self.period)
        except ExchangeError as exc:
            self.failure = exc.kind


class _SlowReader(threading.Thread):
    """Sends 8 MiB of lines (more than the kernel buffers hold), then reads the replies slowly
    but steadily (32 KiB every 0.1 s, small receive buffer): a client whose reply makes
    progress is not idle, so --idle-timeout must not cut it.

    Much slower is indistinguishable from a non-reader at the socket level: the server's
    send buffer autotunes to MiBs and a write waits until half of it drains.
    """

    def __init__(self, address: tuple[str, int], seconds: float) -> None:
        super().__init__(name="resilience-slow-reader", daemon=True)
        self.address, self.seconds = address, seconds
        self.verified = self.lost = 0
        self.failure: str | None = None
        self.start()

    def run(self) -> None:
        block = _pattern(MiB)
        expected = EXPECTED["echo"](block)
        sock = socket.socket(_family(self.address[0]), socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.settimeout(5.0)
        try:
            sock.connect(self.address)
            sender = threading.Thread(target=_send_quietly, args=(sock, block * 8), daemon=True)
            sender.start()
            got = 0
            end = time.monotonic() + self.seconds
            while time.monotonic() < end:
                chunk = sock.recv(32 * 1024)
                if not chunk:
                    self.failure = "closed_early"
                    break
                at = got % len(block)
                wanted = (expected[at:] + expected)[:len(chunk)]
                bad = altered(chunk, wanted)
                self.verified += len(chunk) - bad
                self.lost += bad
                got += len(chunk)
                time.sleep(0.1)
        except OSError as exc:
            self.failure = classify(exc)
        finally:
            sock.close()


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with suppress(OSError):
        sock.sendall(data)
