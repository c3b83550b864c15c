"""`python -m zerolink` runs the same command line as the `zerolink` script."""

from zerolink.cli import main

raise SystemExit(main())
