"""``python -m cje`` runs the command-line interface."""

import sys

from cje.cli import main

if __name__ == "__main__":
    sys.exit(main())
