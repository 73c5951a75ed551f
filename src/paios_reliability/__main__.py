"""``python -m paios_reliability`` runs the CLI."""

import sys

from .cli import main

sys.exit(main())
