"""`python -m bertkit.cli`, the same as the `bertkit` script."""

import sys

from bertkit.cli.table import main

sys.exit(main())
