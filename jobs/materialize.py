"""Load the latest feature values per entity into the online store (incremental)."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["materialize", *sys.argv[1:]]))
