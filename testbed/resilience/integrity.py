"""1. integrity: random sizes in random chunks over concurrent connections, 0 bytes lost."""

from __future__ import annotations

import random
import threading
import time

from clients.harness import EXPECTED, ExchangeError, UDPClient, classify, open_connection
from testbed.resilience.common import (
    MAX_UDP_PAYLOAD,
    REDUCED,
    Figures,
    Quota,
    Scale,
    cut,
    random_payload,
    running,
    serves_udp,
    stream_exchange,
    tally,
)


def check_integrity(model: str, scale: Scale = REDUCED, seed: int | None = None,
                    time_limit: float = 20.0) -> Figures:
    """Random sizes 0..1 MiB in random chunks over 20 concurrent connections: 0 bytes lost."""
    figures = Figures(model, "integrity")
    seed = random.randrange(2**32) if seed is None else seed
    figures.measure("seed", str(seed))
    lock = threading.Lock()
    quota = Quota(scale.exchanges)
    deadline = time.monotonic() + time_limit

    with running(model, "upper") as server:
        expect = EXPECTED["upper"]

        def worker(number: int) -> None:
            rnd = random.Random(seed * 1000 + number)
            while time.monotonic() < deadline:
                batch = quota.take(rnd, 8)
                if not batch:
                    return
                try:
                    sock = open_connection(*server.address, timeout=10)
                except ExchangeError as exc:
                    with lock:
                        figures.deny(classify(exc, connecting=True), batch)
                    continue
                with sock:
                    for i in range(batch):
                        final = i == batch - 1
                        payload = random_payload(rnd, scale.max_size, final)
                        reply, kind = stream_exchange(sock, cut(rnd, payload), final=final)
                        with lock:
                            ok = tally(figures, expect(payload), reply, kind)
                        if not ok:
                            with lock:
                                figures.deny("closed_early", batch - i - 1)  # never sent
                            break

        threads = [threading.Thread(target=worker, args=(n,), daemon=True)
                   for n in range(scale.connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.1, deadline + 15 - time.monotonic()))
        stuck = sum(thread.is_alive() for thread in threads)
        figures.expect(not stuck, f"{stuck} client threads still waiting for replies")

    if serves_udp(model):
        _udp_integrity(model, scale, seed, figures)
    tcp_expected = scale.exchanges
    figures.expect(figures.bytes_lost == 0, f"{figures.bytes_lost} bytes lost or altered")
    figures.expect(figures.total_denied == 0, f"exchanges failed: {dict(figures.denied)}")
    figures.expect(figures.exchanges >= tcp_expected,
                   f"only {figures.exchanges} exchanges verified in {time_limit:g}s")
    return figures


def _udp_integrity(model: str, scale: Scale, seed: int, figures: Figures) -> None:
    """Datagrams of 0..65507 bytes, the largest included: each answered whole."""
    rnd = random.Random(seed + 1)
    sizes = [0, MAX_UDP_PAYLOAD] + [min(MAX_UDP_PAYLOAD, int(2 ** (rnd.random() * 16)))
                                    for _ in range(max(0, scale.datagrams - 2))]
    verified = 0
    with running(model, "upper", udp=True) as server:
        with UDPClient(*server.address, expect=None, timeout=2.0, retries=2) as client:
            for size in sizes:
                payload = rnd.randbytes(size)
                try:
                    reply = client.exchange(payload).reply
                except ExchangeError as exc:
                    figures.deny(exc.kind)
                    figures.bytes_lost += size
                    continue
                if tally(figures, payload.upper(), reply, None):
                    verified += 1
    figures.measure("datagrams", f"{verified}/{len(sizes)} up to {MAX_UDP_PAYLOAD} B")
