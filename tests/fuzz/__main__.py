"""``python -m tests.fuzz``: long fuzz runs (see README.md here)."""

import sys

from .runner import main

sys.exit(main())
