"""Train segmentation and classifiers, then promote their challengers (the three ML jobs).

    ./spark-submit.sh training-pipeline
    ./spark-submit.sh training-pipeline --features-version 3 --no-promote

Runs train-segmentation, train-classifier and promote in one Spark session, with every model
config in conf/models; the first failure stops the pipeline.
"""

import argparse
import dataclasses
from types import ModuleType

from featurelake.core.pipeline import load_job_module
from featurelake.core.runner import JobContext

STEPS = ("train-segmentation", "train-classifier", "promote")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--features-version",
        type=int,
        default=None,
        help="train on this Delta version of the gold tables",
    )
    parser.add_argument("--no-promote", action="store_true", help="skip the promotion step")


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    for step in STEPS:
        if step == "promote" and args.no_promote:
            continue
        module = load_job_module(step)
        step_args = _defaults(module)  # each step's own options, as on its command line
        if hasattr(step_args, "features_version"):
            step_args.features_version = args.features_version
        step_ctx = dataclasses.replace(ctx, summary={})
        module.main(step_ctx, step_args)
        ctx.summary[step] = step_ctx.summary


def _defaults(module: ModuleType) -> argparse.Namespace:
    """The options of a job module with their defaults (the job run without arguments)."""
    parser = argparse.ArgumentParser(add_help=False)
    module.add_arguments(parser)
    return parser.parse_args([])
