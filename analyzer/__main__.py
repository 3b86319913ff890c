"""`python -m analyzer` runs the same command line as `vmstate-guard`."""

import sys

from .cli import main

sys.exit(main())
