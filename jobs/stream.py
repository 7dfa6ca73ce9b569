"""Stream events into silver, windowed feature views and the online store."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["stream", *sys.argv[1:]]))
