"""Evaluate each classifier's retraining triggers; retrain those that fire; record why."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["retrain-check", *sys.argv[1:]]))
