"""Serve online features and model predictions over HTTP (FastAPI + uvicorn); runs until stopped."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
