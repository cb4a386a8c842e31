"""``python -m servers ...`` is ``testbed serve ...``."""

import sys

from servers.cli import main

sys.exit(main())
