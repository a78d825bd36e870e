import sys

from bertkit.cli.table import main

sys.exit(main())
