"""``python -m hashlab.cli`` runs the command line, like the ``hashlab`` script."""

import sys

from hashlab.cli import main

sys.exit(main())
