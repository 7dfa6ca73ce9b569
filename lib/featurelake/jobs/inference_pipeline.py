"""The original shortcut: inference-pipeline MODEL_URI INPUT OUTPUT.

    ./spark-submit.sh inference-pipeline models:/credit_default@champion \
        silver/credit_clients predictions/credit_default
"""

import argparse

from featurelake.core.runner import JobContext
from featurelake.ml.batch import ScoreOptions, run_score


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_uri")
    parser.add_argument("input", help="<layer>/<table> or raw file path/glob")
    parser.add_argument("output", help="<layer>/<table> for the predictions")
    parser.add_argument("--model-config", default="credit_default")
    parser.add_argument("--source", default=None)
    parser.add_argument("--path", choices=["auto", "native", "pyfunc"], default="auto")


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    run_score(
        ctx,
        ScoreOptions(
            model_uri=args.model_uri,
            input=args.input,
            output=args.output,
            model_config=args.model_config,
            source=args.source,
            path=args.path,
        ),
    )
