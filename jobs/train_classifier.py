"""Train classifiers (LR, RF, GBT) on gold features; track in MLflow; register the challenger."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-classifier", *sys.argv[1:]]))
