"""``python -m genjax``: the ``genjax`` command, for environments without its console script."""

import sys

from genjax.cli import main

sys.exit(main())
