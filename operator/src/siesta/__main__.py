"""`python -m siesta` runs the `siesta` command."""

import sys

from siesta.cli import main

sys.exit(main())
