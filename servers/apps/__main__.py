"""``python -m servers.apps CONTENDER ...``: the same as ``testbed contender``."""

import sys

from servers.apps.launch import main

sys.exit(main(prog="python -m servers.apps"))
