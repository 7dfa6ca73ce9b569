"""The original shortcut: inference-pipeline MODEL_URI INPUT OUTPUT."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["inference-pipeline", *sys.argv[1:]]))
