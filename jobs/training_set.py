"""Point-in-time training set: entity rows + feature references -> a Delta table with lineage."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["training-set", *sys.argv[1:]]))
