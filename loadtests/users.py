"""The locust users: verified exchanges over raw TCP and UDP, built on ``clients/harness.py``.

Each exchange fires locust's ``request`` event: request type ``tcp`` or ``udp``,
name ``"<mode> <size>B"``, and on failure the harness's
:class:`~clients.harness.ExchangeError`, whose text is its failure class
(``refused``, ``connect_timeout``, ...), so locust's failure table groups
failures by class. Each attempt carries, as the event's ``context``, the
ticket of the phase it started in (:func:`loadtests.stepstats.take`), which is
how the per-window statistics count it.

Modes: ``persistent`` keeps one connection (one UDP socket) per user and opens
a new one after a failure or at a new phase; ``connect`` opens a new connection
for every request, as the course's attackDDoS does; ``arrivals`` is an open
loop of new TCP connections at the step's offered rate. The locustfile
(``locustfile.py``) declares the options these users read.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import gevent
from locust import FastHttpUser, User, task

from clients.harness import (
    ExchangeError,
    TCPClient,
    UDPClient,
    as_exchange_error,
    classify,
    exchange_once,
    parse_endpoint,
)
from clients.safety import UnsafeTarget, ensure_loopback
from loadtests import stepstats
from loadtests.common import arrival_times, make_payload

#: After a failure that took less than this (refused, reset...), a user with no think time
#: waits out the rest before its next attempt, so a dead server is not hammered in a hot loop.
FAILURE_PAUSE = 0.01
#: Exchanges a user with no think time makes per task run, between returns to locust's scheduler:
#: few enough that 50 users of one worker take turns (with 100, the replies per user in a
#: half-second window went to a few of them, a fairness of 0.4 that measured locust).
BATCH = 10
#: Attempts one arrivals user keeps in flight at most (each holds a descriptor).
ARRIVALS_IN_FLIGHT = 1000

_user_ids = itertools.count(1)
_random = random.Random()


#: The golden ratio's fraction: the offsets k * GOLDEN mod 1 of users 1, 2, 3... spread
#: evenly over the cycle whatever their number (a low-discrepancy sequence).
GOLDEN = 0.6180339887498949


def stagger(options: Any, mode: str, uid: int) -> None:
    """Before closed-loop user ``uid``'s first request, wait its part of ``--start-jitter``.

    Users started together, against a server that makes every request wait the same
    delay, keep the phase they started with: in step, each makes as many requests in a
    window as the others, and the window's count is the users times 7 or times 8
    (350 or 400 replies at 50 users in 0.8 s with a 0.1 s delay), as the window's edges
    fall about their common phase. Spread over one cycle, their phases make the count
    what their pace gives. The offsets are fixed, not random (user k waits k * GOLDEN mod
    1 of the jitter): random ones spread many users as well, but gave one user a new
    phase in every run, so that a 0.8 s window held 7 of its requests in one run and 8
    in the next. Open-loop arrivals have no phase to spread."""
    jitter = float(getattr(options, "start_jitter", 0.0) or 0.0)
    if jitter > 0 and mode != "arrivals":
        gevent.sleep((uid * GOLDEN) % 1.0 * jitter)


def safety_error(host: str | None, options: Any) -> str | None:
    """Why ``host`` must not be loaded (malformed, not loopback), or None."""
    try:
        _, name, _ = parse_endpoint(host)
        ensure_loopback(name, allow_remote=bool(getattr(options, "allow_remote", False)))
    except (ValueError, UnsafeTarget) as exc:
        return str(exc)
    return None


class SocketUser(User):
    """A user that makes verified exchanges through the harness and reports each one."""

    abstract = True
    transport = "tcp"

    def on_start(self) -> None:
        options = self.environment.parsed_options
        error = safety_error(self.host, options)
        if error:
            raise ValueError(error)
        _, self.address, self.port = parse_endpoint(self.host, self.transport)
        self.size = int(options.payload_size)
        self.payload = make_payload(self.size)
        self.mode = options.mode
        self.expect = options.expect
        self.think = float(options.think_time)
        self.connect_timeout = float(options.connect_timeout)
        self.io_timeout = float(options.io_timeout)
        self.request_name = f"{self.mode} {self.size}B"
        self.batch = BATCH if self.think <= 0 else 1
        self._fire = self.environment.events.request.fire
        self._phase: object = None
        self.client: TCPClient | UDPClient | None = None
        self._once = self._persistent if self.mode == "persistent" else self._connect
        self.uid = next(_user_ids)
        self._ticket: stepstats.Ticket | None = None
        stepstats.STATE.users.add(self.uid)
        stagger(options, self.mode, self.uid)

    def wait_time(self) -> float:
        return self.think

    def on_stop(self) -> None:
        stepstats.STATE.users.discard(getattr(self, "uid", None))
        if self.client is not None:
            self.client.close()

    @task
    def exchange(self) -> None:
        if self.mode == "arrivals":
            self._arrivals()  # an open loop: runs until the user is stopped
            return
        once = self._once
        for _ in range(self.batch):
            once()

    def _arrivals(self) -> None:
        """New connections at this user's share of the offered rate, each in its own greenlet.

        An attempt that waits for its timeout holds up no later arrival, so the offered
        rate does not depend on how the server copes. The times come block by block from
        :func:`~loadtests.common.arrival_times` (Poisson times, the offered count); a
        generator that falls behind makes its late arrivals at once. Arrivals beyond
        :data:`ARRIVALS_IN_FLIGHT` attempts at once are not made: the achieved rate, which
        the summary sets beside the offered one, then shows it.
        """
        from gevent.pool import Pool

        pool = Pool(ARRIVALS_IN_FLIGHT)
        try:
            self._arrive(pool)
        finally:
            # Stopped: the attempts in flight end unreported, as a stopped user's would
            # (neither locust nor the windows count them).
            pool.kill(block=True, timeout=1.0)

    def _arrive(self, pool: Any) -> None:
        carry = 0.0
        while True:
            rate, end, start = stepstats.arrival_block(time.monotonic())
            share = rate / max(stepstats.STATE.arrival_users, 1)
            times, carry = arrival_times(share, start, end, _random, carry)
            for due in times:
                pause = due - time.monotonic()
                if pause > 0:
                    gevent.sleep(pause)
                if pool.full():
                    window = stepstats.STATE.phase.window
                    if window is not None:
                        window.skipped += 1
                    continue
                pool.spawn(self._connect)
            pause = end - time.monotonic()
            if pause > 0:
                gevent.sleep(pause)

    def new_client(self) -> TCPClient | UDPClient:
        raise NotImplementedError

    def _persistent(self) -> None:
        state = stepstats.STATE
        client = self.client
        if client is None or self._phase is not state.phase:
            # A new phase began: its requests go over a connection opened within it.
            if client is not None:
                client.close()
            client = self.client = self.new_client()
            self._phase = state.phase
        ticket = self._ticket = stepstats.take(self.uid, self._ticket)
        start = time.perf_counter()
        try:
            done = client.exchange(self.payload)
        except Exception as exc:  # noqa: BLE001 - every failure is reported with its class
            client.close()
            self._failed(exc, start, ticket)
            return
        self._fire(request_type=self.transport, name=self.request_name, response_time=done.latency * 1000.0,
                   response_length=len(done.reply), exception=None, context=ticket)

    def _connect(self) -> None:
        ticket = self._ticket = stepstats.take(self.uid, self._ticket)
        start = time.perf_counter()
        try:
            done = exchange_once(self.address, self.port, self.payload,
                                 udp=self.transport == "udp", expect=self.expect,
                                 connect_timeout=self.connect_timeout, io_timeout=self.io_timeout)
        except Exception as exc:  # noqa: BLE001 - every failure is reported with its class
            self._failed(exc, start, ticket)
            return
        # The whole cycle counts here: connect, exchange and close.
        self._fire(request_type=self.transport, name=self.request_name,
                   response_time=(time.perf_counter() - start) * 1000.0,
                   response_length=len(done.reply), exception=None, context=ticket)

    def _failed(self, exc: Exception, start: float, ticket: object) -> None:
        elapsed = time.perf_counter() - start
        error = as_exchange_error(exc)
        self._fire(request_type=self.transport, name=self.request_name, response_time=elapsed * 1000.0,
                   response_length=0, exception=error, context=ticket)
        if self.think <= 0 and elapsed < FAILURE_PAUSE and self.mode != "arrivals":
            gevent.sleep(FAILURE_PAUSE - elapsed)


class TCPUser(SocketUser):
    """Verified exchanges over TCP, one connection per user or one per request (``--mode``);
    with ``--mode arrivals``, an open-loop source of new connections at the step's rate."""

    transport = "tcp"

    def new_client(self) -> TCPClient:
        return TCPClient(self.address, self.port, expect=self.expect,
                         connect_timeout=self.connect_timeout, io_timeout=self.io_timeout)


class UDPUser(SocketUser):
    """Verified datagram exchanges; a datagram with no answer in ``--io-timeout`` is ``io_timeout``."""

    transport = "udp"

    def new_client(self) -> UDPClient:
        return UDPClient(self.address, self.port, expect=self.expect, timeout=self.io_timeout)


class HTTPUser(FastHttpUser):
    """GET / over HTTP/1.1 with locust's own FastHttpUser, every response verified (status
    200, the body ``Hello, World!``), failures in the harness's classes.

    ``persistent`` keeps its keep-alive connection (a new one at each phase, so a
    window is measured on connections opened in it); ``connect`` asks for
    ``Connection: close`` and so opens a new connection for every request.
    """

    transport = "http"
    network_timeout = connection_timeout = 5.0  # replaced by the options in on_start
    max_retries = 0  # a failed request is a failure, not a silent second try

    def on_start(self) -> None:
        options = self.environment.parsed_options
        error = safety_error(self.host, options)
        if error:
            raise ValueError(error)
        self.mode = options.mode
        self.think = float(options.think_time)
        self.headers = {"Connection": "close"} if self.mode == "connect" else {}
        self.request_name = f"GET / ({self.mode})"
        self._phase: object = None
        self.uid = next(_user_ids)
        self._ticket: stepstats.Ticket | None = None
        pool = self.client.client.clientpool
        pool.client_args.update(connection_timeout=float(options.connect_timeout),
                                network_timeout=float(options.io_timeout))
        stepstats.STATE.users.add(self.uid)
        stagger(options, self.mode, self.uid)

    def wait_time(self) -> float:
        return self.think

    def on_stop(self) -> None:
        stepstats.STATE.users.discard(getattr(self, "uid", None))
        self.client.client.clientpool.close()

    @task
    def get(self) -> None:
        for _ in range(BATCH if self.think <= 0 else 1):
            self._get()

    def _get(self) -> None:
        state = stepstats.STATE
        if self._phase is not state.phase:  # a new phase: a connection opened within it
            self.client.client.clientpool.close()
            self._phase = state.phase
        ticket = self._ticket = stepstats.take(self.uid, self._ticket)
        start = time.perf_counter()
        with self.client.get("/", name=self.request_name, headers=self.headers,
                             context={"ticket": ticket}, catch_response=True) as response:
            failure = http_failure(response)
            if failure is not None:
                response.failure(failure)
            else:
                response.success()
        if failure is not None and self.think <= 0:
            elapsed = time.perf_counter() - start
            if elapsed < FAILURE_PAUSE:
                gevent.sleep(FAILURE_PAUSE - elapsed)


#: What GET / answers (the http service's plaintext route, TechEmpower's test).
HELLO = b"Hello, World!"


def http_failure(response: Any) -> ExchangeError | None:
    """The harness's failure for an HTTP response that is not GET /'s, or None."""
    error = getattr(response, "error", None)
    if error is not None:
        # geventhttpclient wraps what the socket raised (in RetriesExceeded, as "original")
        cause = getattr(error, "original", None)
        kind = classify(cause if isinstance(cause, BaseException) else error)
        if kind == "other" and "closed" in str(error).lower():
            kind = "closed_early"
        return ExchangeError(kind, f"{type(error).__name__}: {error}")
    if response.status_code != 200:
        return ExchangeError("mismatch", f"status {response.status_code}")
    if response.content != HELLO:
        return ExchangeError("mismatch", f"body {response.content[:40]!r}")
    return None


USER_CLASSES: dict[str, type[User]] = {"tcp": TCPUser, "udp": UDPUser, "http": HTTPUser}


def pick_user_class(environment: Any, host: str | None) -> None:
    """Run only the user class of ``host``'s scheme (tcp:// when it has none)."""
    try:
        scheme = parse_endpoint(host)[0] if host else "tcp"
    except ValueError:
        return  # reported when the users start
    available = getattr(environment, "available_user_classes", None) or {}
    chosen = [cls for cls in available.values() if getattr(cls, "transport", None) == scheme]
    if not chosen:
        chosen = [USER_CLASSES[scheme]]
    environment.user_classes[:] = chosen
