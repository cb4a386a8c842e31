"""Supervision shared by the models made of N forked worker processes (prefork, reuseport).

The parent opens the listening socket(s) in ``bind()``, forks the workers in
``serve_forever()`` and then only supervises: it waits for a worker to die,
logs it and forks a replacement in the same slot. On shutdown it closes its
copies of the sockets, SIGTERMs the workers and reaps them
(:func:`~servers.models.support.reap_children`).

A worker is a forked copy of the parent: it must never run the parent's
shutdown, so it resets SIGTERM to the default action (die) and ignores SIGINT
(a Ctrl-C reaches the whole process group; the parent stops the workers), and
it always leaves with ``os._exit``. On Linux it also asks to be killed if the
parent dies, so a SIGKILLed parent leaves no workers serving its port.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import signal
import sys
import time
from abc import abstractmethod

from servers.models import logs
from servers.models.base import STOP_CHECK, STOP_SIGNALS, Model
from servers.models.support import SignalWakeup, reap_children

RESPAWN_PAUSE = 1.0  # a worker that dies younger than this is replaced after this pause
PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    return os.cpu_count() or 1


def describe_status(status: int) -> str:
    """``killed by SIGKILL`` or ``exited with status 1``, from a waitpid status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"killed by {signal.Signals(number).name}"
        except ValueError:
            return f"killed by signal {number}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def die_with_parent(parent: int) -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies (best effort)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


class Board:
    """One byte per worker slot in memory shared across fork: each worker writes only its own.

    The sum is the number of connections being served by all workers together,
    which is what ``--max-connections`` limits in a process-per-slot model.
    """

    def __init__(self, slots: int) -> None:
        self.memory = mmap.mmap(-1, max(1, slots))  # MAP_SHARED | MAP_ANONYMOUS

    def __setitem__(self, slot: int, value: int) -> None:
        self.memory[slot] = value

    def total(self) -> int:
        return sum(self.memory[:])


class ProcessPoolModel(Model):
    """N worker processes forked up front, replaced when they die, reaped on close."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.workers = self.config.workers or default_workers()
        self.children: dict[int, tuple[int, float]] = {}  # pid -> (slot, started at)
        self.wakeup: SignalWakeup | None = None

    # -- what a concrete model provides ---------------------------------------

    @abstractmethod
    def run_worker(self, slot: int) -> None:
        """Serve, in the forked worker of ``slot``; return only to exit."""

    @abstractmethod
    def close_listeners(self) -> None:
        """Close the parent's copies of the listening sockets."""

    # -- contract -------------------------------------------------------------

    def serve_forever(self) -> None:
        with SignalWakeup(signal.SIGCHLD) as wakeup:
            self.wakeup = wakeup
            for slot in range(self.workers):
                self.spawn(slot)
            logs.workers_started(list(self.children))
            while True:
                self.replace_dead()
                wakeup.wait(STOP_CHECK)  # for SIGCHLD, or SIGTERM/SIGINT (their handler raises Shutdown)
                self.stop_requested()  # in case that Shutdown was swallowed somewhere

    def close(self, grace: float = 3.0) -> None:
        self.stopping.set()
        self.close_listeners()
        reap_children(set(self.children), grace)
        self.children.clear()

    # -- supervision ----------------------------------------------------------

    def replace_dead(self) -> None:
        """Reap every worker that has died and fork a new one in its slot."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                pid = 0
            if not pid:
                break
            entry = self.children.pop(pid, None)
            if entry is None:
                continue
            slot, started = entry
            logs.worker_died(slot, pid, describe_status(status))
            if time.monotonic() - started < RESPAWN_PAUSE:
                time.sleep(RESPAWN_PAUSE)  # a worker that dies at once would fork-loop
            self.spawn(slot)

    def spawn(self, slot: int) -> int:
        """Fork the worker of ``slot``; signals are held so no fork goes unrecorded."""
        parent = os.getpid()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                self._worker(slot, parent, mask)  # never returns
            self.children[pid] = (slot, time.monotonic())
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return pid

    def _worker(self, slot: int, parent: int, mask: set) -> None:
        status = 1
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            if self.wakeup is not None:
                self.wakeup.forget()
            die_with_parent(parent)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            self.run_worker(slot)
            status = 0
        except BaseException as exc:  # noqa: BLE001 - one line, then the parent replaces us
            logs.worker_failed(slot, os.getpid(), exc)
        finally:
            os._exit(status)
