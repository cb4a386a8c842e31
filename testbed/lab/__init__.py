"""The network lab: hosts h1..hN in network namespaces on one machine, built and removed exactly.

``testbed lab up|exec|status|down`` (command.py). state.py is the documented
state file every other part works from; build.py makes and removes the
namespaces, bridge, links, addresses and hosts files; conditions.py puts rate,
loss and delay on links; members.py records and stops the lab's processes;
iproute.py runs ``ip``, ``tc`` and ``nft``; placement.py tells other commands
(``testbed load --lab``) how to run a process in a host and what its address is.
"""

from __future__ import annotations

from testbed.lab.command import main

__all__ = ["main"]
