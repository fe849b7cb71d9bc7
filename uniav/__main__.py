"""``python -m uniav`` is the ``uniav`` command."""

import sys

from uniav.cli import main

sys.exit(main())
