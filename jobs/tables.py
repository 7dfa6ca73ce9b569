"""Table maintenance: history, vacuum and compaction of one Delta table."""

import sys

from featurelake.cli import main

if __name__ == "__main__":
    sys.exit(main(["tables", *sys.argv[1:]]))
