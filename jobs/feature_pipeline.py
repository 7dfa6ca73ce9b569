"""Run silver then gold in one Spark session (the original pipeline's feature-pipeline alias).

    ./spark-submit.sh feature-pipeline [gold options: --as-of, --snapshot-start, ...]

Silver is featurelake.silver.run_silver(ctx); gold is featurelake.gold.run_gold(ctx, options).
"""

import argparse
import sys

from featurelake.gold import add_gold_arguments, gold_options_from_args, run_gold
from featurelake.runner import JobContext, run_job


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    options = gold_options_from_args(args)  # validate gold options before silver runs
    try:
        from featurelake.silver import run_silver
    except ImportError as exc:
        raise RuntimeError(
            "feature-pipeline needs featurelake.silver.run_silver(ctx), the silver job's body"
        ) from exc
    run_silver(ctx)
    run_gold(ctx, options)


if __name__ == "__main__":
    sys.exit(run_job("feature-pipeline", main, add_arguments=add_gold_arguments))
