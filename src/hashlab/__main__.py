"""``python -m hashlab`` runs the command line."""

import sys

from hashlab.cli import main

sys.exit(main())
