"""Build the gold feature tables (credit clients, customer snapshots) from silver.

    ./spark-submit.sh gold                                   # everything, ranges from conf/data
    ./spark-submit.sh gold --as-of 2011-12-09                # latest snapshot as of that day
    ./spark-submit.sh gold --snapshot-start 2011-11-01 --snapshot-end 2011-11-30
    ./spark-submit.sh gold --only customers --no-daily

Preprocessing settings live in conf/features_gold.yaml; see featurelake.lakehouse.gold.
"""

import argparse

from featurelake.core.runner import JobContext
from featurelake.lakehouse.gold import add_gold_arguments, gold_options_from_args, run_gold

# The pipeline runner finds a job's options under this name.
add_arguments = add_gold_arguments


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    run_gold(ctx, gold_options_from_args(args))
