"""A server started by the testbed ends with the process that started it.

A comparison or a test killed outright (SIGKILL, a timeout) cannot stop the
servers it started: each is in its own session, so no signal to the group
reaches it. The testbed names itself in :data:`PARENT_ENV`; a server that finds
it asks the kernel for a SIGTERM when that parent ends (Linux's
``PR_SET_PDEATHSIG``), which stops it like ``testbed serve`` is stopped.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

#: The pid of the process that started this server, set by testbed.processes.
PARENT_ENV = "TESTBED_PARENT_PID"
PR_SET_PDEATHSIG = 1


def end_with_parent() -> None:
    """If started by the testbed: a SIGTERM when that process ends (at once if it already
    has). Call it once the SIGTERM handler is installed. Elsewhere, or off Linux, nothing."""
    text = os.environ.pop(PARENT_ENV, "")
    if not text.isdigit() or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):
        return
    if os.getppid() != int(text):  # the parent ended before the request was made
        os.kill(os.getpid(), signal.SIGTERM)
