"""Train segmentation and classifiers, then promote their challengers (the three ML jobs)."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["training-pipeline", *sys.argv[1:]]))
