"""``python -m legato.cli``: the `legato` command."""

import sys

from .main import main

sys.exit(main())
