"""`python -m ablate` is the `ablate` command (local workers are started this way)."""

import sys

from .cli import main

sys.exit(main())
