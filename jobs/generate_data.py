"""Generate deterministic synthetic raw files into the landing folder."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["generate-data", *sys.argv[1:]]))
