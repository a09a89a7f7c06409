"""``python -m unthrottle.cli``."""

import sys

from unthrottle.cli import main

sys.exit(main())
