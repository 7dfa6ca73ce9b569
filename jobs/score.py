"""Batch scoring with an MLflow model on gold features, silver rows or raw files.

    ./spark-submit.sh score --model models:/credit_default@champion --input gold/credit_features
    ./spark-submit.sh score --input silver/credit_clients --path pyfunc
    ./spark-submit.sh score --input new_clients.csv --source credit_clients
"""

import argparse
import sys
from datetime import date

from featurelake.ml.batch import ScoreOptions, run_score
from featurelake.runner import JobContext, run_job


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-config", default="credit_default",
                        help="model declaration in conf/models (feature table, key)")
    parser.add_argument("--model", default=None,
                        help="model URI (default: models:/<model name>@champion)")
    parser.add_argument("--input", default=None,
                        help="<layer>/<table> or raw file path/glob (default: the feature table)")
    parser.add_argument("--source", default=None, help="source declaration for raw input")
    parser.add_argument("--path", choices=["auto", "native", "pyfunc"], default="auto",
                        help="auto: native transform for Spark models, pyfunc UDF otherwise")
    parser.add_argument("--output", default=None, help="<layer>/<table> for predictions")
    parser.add_argument("--scoring-date", type=date.fromisoformat, default=None)
    parser.add_argument("--batch-id", default=None)


def options_from_args(ctx: JobContext, args: argparse.Namespace) -> ScoreOptions:
    from featurelake.ml.config import load_model_config

    config = load_model_config(ctx.settings.conf_path("models", f"{args.model_config}.yaml"))
    return ScoreOptions(
        model_uri=args.model or f"models:/{config.name}@champion",
        input=args.input or config.features.table,
        model_config=args.model_config, source=args.source, path=args.path,
        output=args.output, scoring_date=args.scoring_date, batch_id=args.batch_id,
    )


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    run_score(ctx, options_from_args(ctx, args))


if __name__ == "__main__":
    sys.exit(run_job("score", main, add_arguments=add_arguments))
