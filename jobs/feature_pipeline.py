"""Run silver then gold in one Spark session (the original pipeline's feature-pipeline alias)."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["feature-pipeline", *sys.argv[1:]]))
