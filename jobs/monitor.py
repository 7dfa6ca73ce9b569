"""Monitor features and models: profiles, drift, freshness, model quality, alerts, dashboard."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["monitor", *sys.argv[1:]]))
