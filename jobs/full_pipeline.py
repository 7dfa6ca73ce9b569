"""The whole pipeline: data, bronze, silver, gold, features, models, scoring, online store."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["full-pipeline", *sys.argv[1:]]))
