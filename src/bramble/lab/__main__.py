"""``python -m bramble.lab``: see bramble.lab.cli."""

import sys

from bramble.lab.cli import main

sys.exit(main())
