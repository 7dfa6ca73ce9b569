"""Run silver then gold in one Spark session (the original pipeline's feature-pipeline alias).

    ./spark-submit.sh feature-pipeline [gold options: --as-of, --snapshot-start, ...]

Silver is featurelake.lakehouse.silver.run_silver(ctx) (every table in conf/tables/); gold is
featurelake.lakehouse.gold.run_gold(ctx, options) with the same options as the gold job.
"""

import argparse

from featurelake.core.runner import JobContext
from featurelake.lakehouse.gold import add_gold_arguments, gold_options_from_args, run_gold
from featurelake.lakehouse.silver import run_silver

# The pipeline runner finds a job's options under this name.
add_arguments = add_gold_arguments


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    options = gold_options_from_args(args)  # reject bad gold options before silver runs
    run_silver(ctx)  # records its counts in ctx.summary["silver"]
    run_gold(ctx, options)
