"""`python -m shared.cli`: the `footfall` command."""

import sys

from shared.cli.main import main

sys.exit(main())
