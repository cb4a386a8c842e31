"""Running iproute2 (``ip``, ``tc``) and ``nft``: argument lists, never a shell, one-line errors.

Every call names the namespace it acts in (``ip -n NS``, ``tc -n NS``,
``ip netns exec NS nft``), so nothing here touches the root namespace unless a
caller passes ``ns=None`` on purpose (only ``ip netns add/del`` do).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from testbed.lab.state import LabError

#: CAP_NET_ADMIN (links, addresses, qdiscs, nftables) and CAP_SYS_ADMIN (namespace mounts).
_CAPS = {"CAP_NET_ADMIN": 12, "CAP_SYS_ADMIN": 21}


def missing_privilege() -> str | None:
    """Why this process cannot build a lab, or None if it can."""
    try:
        with open("/proc/self/status") as status:
            line = next(li for li in status if li.startswith("CapEff:"))
        effective = int(line.split()[1], 16)
    except (OSError, StopIteration, ValueError):
        return "cannot read this process's capabilities (/proc/self/status)"
    lacking = [name for name, bit in _CAPS.items() if not effective >> bit & 1]
    if lacking:
        return (f"the lab needs root ({' and '.join(lacking)} missing): "
                "run it as root, e.g. with sudo")
    return None


def missing_tool() -> str | None:
    for tool in ("ip", "tc"):
        if not shutil.which(tool):
            return f"{tool} is not installed (the lab needs iproute2: apt-get install iproute2)"
    return None


def run(argv: Sequence[str], *, input: str | None = None, check: bool = True,
        timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; LabError (one line: the command and its first error line) if it fails."""
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise LabError(f"{argv[0]} is not installed")
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(argv)} did not finish within {timeout:.0f} s")
    if check and done.returncode != 0:
        reason = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}")
        raise LabError(f"{' '.join(argv)}: {reason.splitlines()[0]}")
    return done


def ip(ns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip [-n NS] ARGS...``."""
    return run(["ip", *(["-n", ns] if ns else []), *args], check=check)


def tc(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["tc", "-n", ns, *args], check=check)


def nft(ns: str, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Feed ``script`` to ``nft -f -`` inside namespace ``ns``."""
    if not shutil.which("nft"):
        raise LabError("nft is not installed (--loss needs nftables: apt-get install nftables)")
    return run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, check=check)


def exec_prefix(ns: str) -> list[str]:
    """The argv prefix that runs a command inside namespace ``ns``."""
    return ["ip", "netns", "exec", ns]
