"""Build the gold feature tables (credit clients, customer snapshots) from silver."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["gold", *sys.argv[1:]]))
