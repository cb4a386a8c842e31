"""What one bench run is: :class:`BenchSpec`, everything :func:`testbed.bench.run_bench` needs."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Largest request the bench sends, newline included.
MAX_PAYLOAD = 16 * 1024 * 1024


@dataclass
class BenchSpec:
    """One bench run; ``server_options`` are ``testbed serve``'s options (empty with ``target``).

    With ``active`` below ``connections`` the others are opened, left idle, and each proved
    alive at the end by one verified request. ``target`` names a running server
    (``tcp://HOST:PORT``, loopback only unless ``allow_remote``) and ``server_pid`` the
    process whose tree is measured there (default: the one listening on the target's port).
    """

    server_options: list[str] = field(default_factory=list)
    target: str | None = None
    allow_remote: bool = False
    server_pid: int | None = None
    #: with ``target``: a second running server benched head to head with it, the windows
    #: alternating between the two (``versus_pid``: its process, as ``server_pid``)
    versus: str | None = None
    versus_pid: int | None = None
    udp: bool = False  # refused: the bench is TCP only
    connections: int = 10
    active: int | None = None  # connections carrying the loop (None: all); the rest stay idle
    pipeline: int = 1  # requests in flight on each active connection
    open_timeout: float = 120.0  # the opening of every connection, bounded
    process_limit: int = 2000  # a process-per-connection model is not driven beyond this
    server_nofile: int | None = None  # the started server's descriptor limit (None: inherited)
    payload_size: int = 64
    expect: str | None = None  # None: the server's service (echo for a target)
    warmup: float = 2.0  # seconds on connections closed before the window; 0: none
    duration: float = 5.0  # the measured window
    #: measured windows in a row on the same server, each on connections of its own: the
    #: summary is the median window's, with every window's in ``windows``
    windows: int = 1
    max_requests: int = 50_000_000  # a phase stops after this many replies
    io_timeout: float = 5.0
    connect_timeout: float = 5.0
    reopens: int = 3  # times a failed connection is reopened before it is given up
    pin: bool = False  # the server on the first CPU, the client on the second
    #: read the tree's memory before and after opening (each reading waits for the tree to
    #: settle, 0.4 s or more); False for runs that want the CPU and throughput alone
    memory: bool = True
