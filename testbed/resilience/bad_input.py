"""7. bad input: malformed connections, random byte strings, odd datagrams."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable
from contextlib import suppress

from clients.harness import ExchangeError, UDPClient, classify, open_connection
from testbed.resilience.common import (
    MAX_UDP_PAYLOAD,
    REDUCED,
    Figures,
    MiB,
    Quota,
    Scale,
    _family,
    count_handler_errors,
    count_tracebacks,
    cut,
    pump,
    running,
    served_again,
    serves_udp,
    stream_exchange,
    tally,
)


def _rst(sock: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def _case_exchange(payload: bytes, pieces: int = 1) -> Callable[[tuple[str, int], Figures], None]:
    def case(address: tuple[str, int], figures: Figures) -> None:
        rnd = random.Random(len(payload))
        chunks = cut(rnd, payload) if pieces > 1 else [payload]
        with open_connection(*address, timeout=20) as sock:
            reply, kind = stream_exchange(sock, chunks, final=True)
        tally(figures, payload.upper(), reply, kind)
    return case


def _case_empty(address: tuple[str, int], figures: Figures) -> None:
    open_connection(*address, timeout=5).close()


def _case_reset_immediately(address: tuple[str, int], figures: Figures) -> None:
    _rst(open_connection(*address, timeout=5))


def _case_reset_mid_request(address: tuple[str, int], figures: Figures) -> None:
    sock = open_connection(*address, timeout=5)
    sock.sendall(b"half a requ")
    _rst(sock)


def _case_half_close(address: tuple[str, int], figures: Figures) -> None:
    _case_exchange(b"one\ntwo\nno newline")(address, figures)


def _case_abandon_big_reply(address: tuple[str, int], figures: Figures) -> None:
    """10 MiB with no newline, then gone without reading: the server's sends fail."""
    sock = open_connection(*address, timeout=5)
    sock.setblocking(False)
    with suppress(OSError):
        pump(sock, b"z" * MiB, 10 * MiB, stall=0.3, time_limit=5.0)
    _rst(sock)


MALFORMED: dict[str, Callable[[tuple[str, int], Figures], None]] = {
    "empty connection": _case_empty,
    "reset at once": _case_reset_immediately,
    "reset mid-request": _case_reset_mid_request,
    "half-close": _case_half_close,
    "invalid utf-8": _case_exchange(b"\xff\xfe\xc3\x28\xa0\xa1 \xed\xa0\x80 \xf8\x88\x80\x80\x80\n"),
    "nul bytes": _case_exchange(b"\x00" * 4096 + b"abc\x00\n\x00"),
    "10 MiB line, no newline": _case_exchange(b"y" * (10 * MiB), pieces=2),
    "10 MiB unread, reset": _case_abandon_big_reply,
}


def check_bad_input(model: str, scale: Scale = REDUCED, seed: int | None = None) -> Figures:
    """Malformed connections and random byte strings: 0 crashes, 0 tracebacks, still serving."""
    figures = Figures(model, "bad input")
    seed = random.randrange(2**32) if seed is None else seed
    figures.measure("seed", str(seed))
    with running(model, "upper") as server:
        for name, case in MALFORMED.items():
            figures.faults += 1
            try:
                case(server.address, figures)
            except OSError as exc:
                figures.deny(classify(exc))
            ok = server.running and served_again(server.address, "upper", 10.0, figures)
            figures.survived += ok
            figures.expect(ok, f"not serving after: {name}")
        strings, abnormal = _fuzz(server.address, scale.fuzz, seed, figures)
        ok = server.running and served_again(server.address, "upper", 10.0, figures)
        figures.faults += abnormal
        figures.survived += abnormal if ok else 0
        figures.expect(ok, "not serving after the fuzzing")
        stderr = server.stderr_text()
        crashed = not server.running
    if serves_udp(model):
        _udp_bad_input(model, seed, figures)
    tracebacks = count_tracebacks(stderr)
    unexpected = count_handler_errors(stderr)
    figures.measure("fuzzed strings", str(strings))
    figures.measure("tracebacks", str(tracebacks))
    figures.expect(not crashed, "the server crashed")
    figures.expect(tracebacks == 0, f"{tracebacks} tracebacks on stderr")
    figures.expect(unexpected == 0, f"{unexpected} unexpected errors logged by handlers")
    figures.expect(figures.bytes_lost == 0, f"{figures.bytes_lost} bytes lost or altered")
    figures.expect(strings >= scale.fuzz, f"only {strings} of {scale.fuzz} strings sent in time")
    return figures


def _fuzz(address: tuple[str, int], count: int, seed: int, figures: Figures,
          time_limit: float = 20.0, clients: int = 4) -> tuple[int, int]:
    """Random byte strings, 1-20 per connection, each its own write; a connection ends by
    half-close and a verified reply (70%), a reset (15%) or leaving without reading (15%).

    Returns the strings sent and the connections that ended abnormally (faults).
    """
    lock = threading.Lock()
    quota = Quota(count)
    sent = [0]
    abnormal = [0]
    deadline = time.monotonic() + time_limit

    def worker(number: int) -> None:
        rnd = random.Random(seed * 100 + number)
        while time.monotonic() < deadline:
            batch = quota.take(rnd, 20)
            if not batch:
                return
            strings = [rnd.randbytes(min(4096, int(2 ** (rnd.random() * 12))))
                       for _ in range(batch)]
            ending = rnd.random()
            try:
                sock = open_connection(*address, timeout=10)
            except ExchangeError as exc:
                with lock:
                    figures.deny(classify(exc, connecting=True))
                continue
            with sock:
                if ending < 0.7:
                    reply, kind = stream_exchange(sock, strings, final=True)
                    with lock:
                        tally(figures, b"".join(strings).upper(), reply, kind)
                else:
                    with suppress(OSError):
                        for piece in strings:
                            sock.sendall(piece)
                    with lock:
                        abnormal[0] += 1
                    if ending < 0.85:
                        _rst(sock)
            with lock:
                sent[0] += batch

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.1, deadline + 15 - time.monotonic()))
    return sent[0], abnormal[0]


def _udp_bad_input(model: str, seed: int, figures: Figures) -> None:
    """Zero-length, 1-byte, largest and random datagrams; senders gone before the reply."""
    rnd = random.Random(seed)
    with running(model, "upper", udp=True) as server:
        for _ in range(20):  # fire and forget: the replies go to closed ports
            with socket.socket(_family(server.host), socket.SOCK_DGRAM) as gone:
                gone.sendto(rnd.randbytes(rnd.randint(0, 2048)), server.address)
            figures.faults += 1
        answered = 0
        with UDPClient(*server.address, expect="upper", timeout=2.0, retries=2) as client:
            for payload in (b"", b"\x00", b"\xff" * MAX_UDP_PAYLOAD,
                            *(rnd.randbytes(rnd.randint(0, 4096)) for _ in range(20))):
                try:
                    client.exchange(payload)
                    figures.served(len(payload))
                    answered += 1
                except ExchangeError as exc:
                    figures.deny(exc.kind)
                    figures.bytes_lost += len(payload)
        figures.survived += 20 if server.running and answered else 0
        stderr = server.stderr_text()
        figures.expect(server.running, "the UDP server crashed")
        figures.expect(count_tracebacks(stderr) == 0, "traceback on the UDP server's stderr")
