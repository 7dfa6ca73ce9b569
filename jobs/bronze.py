"""Bronze ingest: new raw files of each declared source into append-only Delta tables."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["bronze", *sys.argv[1:]]))
