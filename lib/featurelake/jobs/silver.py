"""Silver: rebuild typed, validated, deduplicated tables from all of bronze.

    ./spark-submit.sh silver                       # every table in conf/tables/
    ./spark-submit.sh silver --table transactions  # one table (repeatable)
    ./spark-submit.sh silver --as-of 2011-12-10T00:00:00

See featurelake.lakehouse.silver.run_silver for what a run does and guarantees.
"""

import argparse
from datetime import datetime

from featurelake.core.runner import JobContext
from featurelake.lakehouse.silver import run_silver


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--table",
        action="append",
        default=None,
        metavar="NAME",
        help="build only this silver table (repeatable; default: all declared)",
    )
    parser.add_argument(
        "--as-of",
        default=None,
        type=datetime.fromisoformat,
        help="'now' for not_future rules (ISO time, UTC when naive; "
        "default: silver.as_of, else the run's start)",
    )


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    run_silver(ctx, args.table, args.as_of)
