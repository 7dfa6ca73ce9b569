"""Batch scoring with an MLflow model on gold features, silver rows or raw files.

./spark-submit.sh score --model models:/credit_default@champion --input gold/credit_features
./spark-submit.sh score --input silver/credit_clients --path pyfunc
./spark-submit.sh score --input new_clients.csv --source credit_clients
./spark-submit.sh score --all --if-champion       # every model that has a champion

While a challenger waits for promotion, the champion's batch also gets the challenger's
predictions as ``role = shadow`` rows (``retraining.shadow`` of the model config; ``--no-shadow``).
"""

import argparse
import logging
from datetime import date
from pathlib import Path

from featurelake.core.errors import UserError
from featurelake.core.runner import JobContext
from featurelake.ml.batch import ScoreOptions, run_score

log = logging.getLogger("featurelake.jobs.score")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-config",
        action="append",
        default=None,
        help="model declaration name in conf/models (repeatable; default credit_default)",
    )
    parser.add_argument("--all", action="store_true", help="every model in conf/models")
    parser.add_argument(
        "--if-champion",
        action="store_true",
        help="skip (and report) models that have no champion yet",
    )
    parser.add_argument(
        "--model", default=None, help="model URI (default: models:/<model name>@champion)"
    )
    parser.add_argument(
        "--input",
        default=None,
        help="<layer>/<table> or raw file path/glob (default: the feature table)",
    )
    parser.add_argument("--source", default=None, help="source declaration for raw input")
    parser.add_argument(
        "--path",
        choices=["auto", "native", "pyfunc"],
        default="auto",
        help="auto: native transform for Spark models, pyfunc UDF otherwise",
    )
    parser.add_argument("--output", default=None, help="<layer>/<table> for predictions")
    parser.add_argument("--scoring-date", type=date.fromisoformat, default=None)
    parser.add_argument("--batch-id", default=None)
    parser.add_argument(
        "--no-shadow",
        action="store_true",
        help="do not score a waiting challenger beside the champion (default: as the model "
        "config's retraining.shadow says)",
    )


def _config_names(ctx: JobContext, args: argparse.Namespace) -> list[str]:
    if args.all:
        return sorted(p.stem for p in Path(ctx.settings.conf_path("models")).glob("*.yaml"))
    return args.model_config or ["credit_default"]


def _shadows(config, args: argparse.Namespace) -> bool:
    """A waiting challenger is scored in shadow beside the champion alias, if its config says."""
    retraining = getattr(config, "retraining", None)
    return bool(
        retraining is not None and retraining.shadow and not args.model and not args.no_shadow
    )


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    import mlflow

    from featurelake.ml.config import load_model_config
    from featurelake.ml.registry import alias_version
    from featurelake.ml.tracking import configure_tracking

    names = _config_names(ctx, args)
    if len(names) > 1 and (args.model or args.input or args.output):
        raise UserError(
            "--model, --input and --output apply to one model; "
            "drop --all or give one --model-config"
        )
    configure_tracking(ctx.settings.mlflow)
    skipped = {}
    for name in names:
        config = load_model_config(ctx.settings.conf_path("models", f"{name}.yaml"))
        if (
            args.if_champion
            and not args.model
            and alias_version(mlflow.MlflowClient(), config.name, "champion") is None
        ):
            skipped[config.name] = "no champion: no challenger has cleared the promotion rule"
            log.warning(
                "score_skipped",
                extra={"fields": {"model": config.name, "reason": skipped[config.name]}},
            )
            continue
        run_score(
            ctx,
            ScoreOptions(
                model_uri=args.model or f"models:/{config.name}@champion",
                input=args.input or config.features.table,
                model_config=name,
                source=args.source,
                path=args.path,
                output=args.output,
                scoring_date=args.scoring_date,
                batch_id=args.batch_id,
                shadow=_shadows(config, args),
            ),
        )
    ctx.summary["skipped"] = skipped
