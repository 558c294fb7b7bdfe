"""``python -m chatgate``."""

import sys

from chatgate.cli import main

sys.exit(main())
