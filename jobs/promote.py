"""Promote each model's challenger to champion when it clears the threshold and the margin."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["promote", *sys.argv[1:]]))
