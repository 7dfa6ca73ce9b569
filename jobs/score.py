"""Batch scoring with an MLflow model on gold features, silver rows or raw files."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["score", *sys.argv[1:]]))
