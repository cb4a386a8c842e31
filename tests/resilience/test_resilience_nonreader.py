"""4. Non-reader: a client sends up to 100 MiB and reads nothing.

select's memory stays flat (backpressure); every model that can serve two
clients at once keeps serving another; the non-reader gets every byte it is
owed once it reads; with --idle-timeout a non-reader that makes no progress is shed.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest

from clients.harness import open_connection
from testbed.resilience import check_nonreader
from testbed.resilience.common import RSS_LIMIT, MiB, holds_up_to, pump
from tests.conftest import core_first
from tests.resilience.conftest import MODELS, no_problems


@pytest.mark.parametrize("model", core_first(MODELS))
def test_a_client_that_never_reads(model, scale):
    figures = check_nonreader(model, scale)
    growth = float(figures.measures["rss growth"].split()[0]) * MiB
    sent = float(figures.measures["sent unread"].split()[0]) * MiB
    assert sent < scale.nonreader_bytes  # the server stopped reading it
    if model == "select":
        assert growth < RSS_LIMIT
    if holds_up_to(model, 1):
        assert figures.total_denied == 0, dict(figures.denied)
    else:
        assert figures.expected_denial and figures.total_denied > 0
    assert figures.bytes_lost == 0  # what it was owed came back whole when it read
    assert figures.measures["shed by --idle-timeout 1"].endswith("s")
    no_problems(figures)


def test_a_shed_that_arrives_while_the_client_waits_for_room_is_a_shed_not_an_error():
    """The race of a busy machine: the server resets the non-reader while the client is
    still waiting for send room. The pump ends, says the peer closed, and dates the last
    bytes taken, instead of raising out of the check."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        def accept_then_reset() -> None:
            conn, _ = listener.accept()
            time.sleep(0.5)  # take nothing, like a server whose replies are stuck
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()  # with unread data and linger 0: a reset

        resetter = threading.Thread(target=accept_then_reset)
        resetter.start()
        with open_connection(*listener.getsockname(), timeout=5) as sock:
            started = time.monotonic()
            pumped = pump(sock, b"x" * 65536, 100 * MiB, stall=5.0, time_limit=10.0)
            ended = time.monotonic()
        resetter.join(5)
    assert pumped.peer_closed
    assert 0 < pumped.sent < 100 * MiB
    assert started <= pumped.last_taken < ended
    assert ended - started < 5.0  # ended by the reset, not by the 5 s stall
