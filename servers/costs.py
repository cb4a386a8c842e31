"""The per-request cost policy (``--delay``, ``--work-ms``), separate from the service.

Each model applies it its own way: a blocking model sleeps in the handler, the
select loop arms a timer, an asyncio model awaits. Only the CPU work is the same
everywhere, because burning CPU is the point: it shows what the GIL does.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Cost:
    """What serving one request costs: ``delay`` seconds of waiting, ``work_ms`` of CPU."""

    delay: float = 0.0
    work_ms: float = 0.0

    def burn(self, requests: int = 1) -> None:
        """Spin the CPU for ``work_ms`` per request (pure Python, so it holds the GIL)."""
        if not self.work_ms or not requests:
            return
        deadline = time.thread_time() + self.work_ms * requests / 1000.0
        while time.thread_time() < deadline:
            pass

    def wait(self, requests: int = 1, stop: threading.Event | None = None) -> bool:
        """Block for the delay of ``requests`` requests; False if ``stop`` cut it short."""
        if not self.delay or not requests:
            return True
        if stop is None:
            time.sleep(self.delay * requests)
            return True
        return not stop.wait(self.delay * requests)

    def block(self, requests: int = 1, stop: threading.Event | None = None) -> bool:
        """The blocking models' way: burn, then wait. False if shutdown interrupted the wait."""
        self.burn(requests)
        return self.wait(requests, stop)
