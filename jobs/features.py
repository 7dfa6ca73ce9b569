"""Feature catalog: apply, list, describe and search feature views."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["features", *sys.argv[1:]]))
