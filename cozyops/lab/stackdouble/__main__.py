"""``python3 -m stackdouble``: the ``cozy-stack`` command line of the double."""

import sys

from .cli import main

sys.exit(main())
