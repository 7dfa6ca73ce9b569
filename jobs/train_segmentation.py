"""Segment customers (k by silhouette); track in MLflow; write gold/customer_segments."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["train-segmentation", *sys.argv[1:]]))
