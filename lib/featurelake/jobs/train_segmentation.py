"""Segment customers (k by silhouette); track in MLflow; write gold/customer_segments.

./spark-submit.sh train-segmentation                     # every segmentation config
./spark-submit.sh train-segmentation --model-config conf/models/customer_segments.yaml
./spark-submit.sh train-segmentation --features-version 3
"""

import argparse
import json
import logging

from featurelake.core.errors import DataError
from featurelake.core.runner import JobContext
from featurelake.ml.config import SegmentationConfig, check_columns, required_model_configs
from featurelake.ml.ledger import promotion_rows, record_promotions
from featurelake.ml.registry import replace_challenger
from featurelake.ml.segmentation import assign_segments, train_segmentation
from featurelake.ml.tracking import configure_tracking, lineage_tags

log = logging.getLogger("featurelake.jobs.train_segmentation")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-config",
        action="append",
        default=None,
        metavar="FILE",
        help="a conf/models/*.yaml file (repeatable; default: every "
        "segmentation config in conf/models)",
    )
    parser.add_argument(
        "--features-version",
        type=int,
        default=None,
        help="segment this Delta version of the feature table",
    )


def segment_one(
    ctx: JobContext, source: str, config: SegmentationConfig, args: argparse.Namespace
) -> dict:
    features_path = ctx.path(config.features.layer, config.features.name)
    version = (
        args.features_version if args.features_version is not None else config.features.version
    )
    features = ctx.tables.read(features_path, version=version)
    check_columns(config, source, {"features": features.schema})
    key = config.features.key
    rows = features.count()
    distinct = features.select(key).distinct().count()
    if rows != distinct:
        raise DataError(
            f"{config.name}: {features_path} has {rows - distinct} duplicated {key} "
            "values; one row per entity is required"
        )
    null_keys = features.filter(features[key].isNull()).count()
    if null_keys:
        raise DataError(f"{config.name}: {features_path} has {null_keys} rows with a null {key}")

    reads = ctx.tables.lineage.reads
    tags = lineage_tags(
        {"features": (features_path, reads[features_path])},
        model_config=source,
        job_run_id=ctx.run_id,
        feature_list=",".join(config.feature_columns),
    )
    target = configure_tracking(ctx.settings.mlflow)
    result = train_segmentation(config, features, tags=tags, run_name=f"{config.name}-{ctx.run_id}")

    import mlflow

    client = mlflow.MlflowClient(target.tracking_uri, target.registry_uri)
    registration = replace_challenger(
        client,
        config.name,
        result.model_uri,
        run_id=result.run_id,
        tags={
            **tags,
            "featurelake.k": str(result.k),
            "silhouette": f"{result.silhouette:.6f}",
            # segment id -> name, so scoring can name segments without the training run
            "featurelake.segment_names": json.dumps(
                {str(k): v for k, v in sorted(result.names.items())}
            ),
        },
        description=f"{config.algorithm} k={result.k} from run {result.run_id}",
    )
    record_promotions(ctx, promotion_rows(ctx.run_id, transitions=registration.transitions))
    model_version = registration.version
    segments = assign_segments(
        result.model, features, config, result.names, str(model_version.version)
    )
    out_layer, out_table = config.output.split("/", 1)
    written = ctx.tables.write(
        segments,
        ctx.path(out_layer, out_table),
        mode="overwrite",
        metadata={
            "model": config.name,
            "model_version": str(model_version.version),
            "mlflow_run_id": result.run_id,
        },
    )
    if written.rows_written != rows:
        raise DataError(
            f"{config.name}: {rows} entities in, {written.rows_written} segment rows "
            "written; every entity must get exactly one segment"
        )
    return {
        "run_id": result.run_id,
        "challenger_version": model_version.version,
        "features_version": reads[features_path],
        "rows": rows,
        "k": result.k,
        "silhouette": round(result.silhouette, 4),
        "silhouettes": {k: round(v, 4) for k, v in result.silhouettes.items()},
        "segments": {p["segment_name"]: p["size"] for p in result.profiles},
        "output_version": written.version,
    }


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    configs = required_model_configs(
        ctx.settings.conf_path("models"), args.model_config, SegmentationConfig, "segmentation"
    )
    for source, config in configs:
        ctx.summary[config.name] = segment_one(ctx, source, config, args)
