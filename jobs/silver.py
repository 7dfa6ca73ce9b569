"""Silver: rebuild typed, validated, deduplicated tables from all of bronze."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["silver", *sys.argv[1:]]))
