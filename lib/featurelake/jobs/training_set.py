"""Point-in-time training set: entity rows + feature references -> a Delta table with lineage.

    ./spark-submit.sh training-set --entity-table gold/churn_entities \\
        --timestamp-column as_of_ts \\
        --features customer_rfm:recency_days,customer_rfm:frequency \\
        --features customer_activity:spend_30d --output churn_training \\
        [--known-at entity_time] [--churn-horizon-days 90 [--drop-censored]]

Entity rows come from a Delta table (``--entity-table <layer>/<table>``, optionally
``--entity-version``) or a Parquet/CSV file (``--entity-file``; CSV columns are read as
strings and the timestamp column is cast). Every entity row is kept (the job fails if the
output has a different number of rows). The output goes to ``<feature_store.training_set_layer>/
<output>`` (overwritten); its commit metadata records the views (definition hash, registry
version), the source tables and Delta versions read, and the feature references.
"""

import argparse
from datetime import datetime

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.core.errors import DataError, UserError
from featurelake.core.runner import JobContext
from featurelake.feature_store.api import FeatureStore
from featurelake.feature_store.labels import observed_labels, with_churn_label


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--entity-table", help="entity rows: a Delta table <layer>/<table>")
    source.add_argument("--entity-file", help="entity rows: a Parquet or CSV file")
    parser.add_argument(
        "--entity-version", type=int, default=None, help="read this Delta version of --entity-table"
    )
    parser.add_argument(
        "--timestamp-column",
        default="event_timestamp",
        help="the entity rows' time column (default: event_timestamp)",
    )
    parser.add_argument(
        "--features",
        action="append",
        required=True,
        help="view:feature references, comma-separated; repeatable",
    )
    parser.add_argument(
        "--output", required=True, help="output table name in feature_store.training_set_layer"
    )
    parser.add_argument(
        "--known-at",
        default=None,
        help="'entity_time' or an ISO datetime: only values created by then",
    )
    parser.add_argument(
        "--full-feature-names", action="store_true", help="name columns <view>__<feature>"
    )
    parser.add_argument(
        "--churn-horizon-days",
        type=int,
        default=None,
        help="add a churn label (no purchase in the N days after t) from "
        "silver/transactions; entity rows need customer_id",
    )
    parser.add_argument(
        "--drop-censored",
        action="store_true",
        help="with --churn-horizon-days: drop rows whose label window passes the data end",
    )


def _table(ctx: JobContext, name: str) -> str:
    layer, _, table = name.partition("/")
    if not table:
        raise UserError(f"expected <layer>/<table>, got {name!r}")
    return ctx.path(layer, table)


def _entities(ctx: JobContext, args: argparse.Namespace) -> tuple[DataFrame, str]:
    if args.entity_table:
        return (
            ctx.tables.read(_table(ctx, args.entity_table), version=args.entity_version),
            args.entity_table,
        )
    path = args.entity_file
    if path.endswith(".csv") or path.endswith(".csv.gz"):
        df = ctx.spark.read.option("header", True).csv(path)
        if args.timestamp_column in df.columns:
            df = df.withColumn(args.timestamp_column, F.to_timestamp(args.timestamp_column))
        return df, path
    return ctx.spark.read.parquet(path), path


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    if "/" in args.output:
        raise UserError(f"--output is a table name (no layer), got {args.output!r}")
    features = [ref.strip() for group in args.features for ref in group.split(",") if ref.strip()]
    known_at = args.known_at
    if known_at not in (None, "entity_time"):
        known_at = datetime.fromisoformat(known_at)
    entity_df, entity_source = _entities(ctx, args)
    store = FeatureStore(ctx.spark, ctx.settings, ctx.tables)
    training = store.build_training_set(
        entity_df,
        features,
        entity_timestamp_column=args.timestamp_column,
        known_at=known_at,
        full_feature_names=args.full_feature_names,
    )
    df = training.df
    labels = None
    if args.churn_horizon_days is not None:
        transactions = ctx.tables.read(ctx.path("silver", "transactions"))
        df = with_churn_label(
            df,
            transactions,
            horizon_days=args.churn_horizon_days,
            entity_timestamp_column=args.timestamp_column,
        )
        labels = {
            "kind": "churn",
            "horizon_days": args.churn_horizon_days,
            "drop_censored": args.drop_censored,
        }
    entity_rows = entity_df.count()
    if args.drop_censored and labels:
        df = observed_labels(df)
    layer = ctx.settings.feature_store.training_set_layer
    lineage = {
        **training.lineage(),
        "entities": entity_source,
        "labels": labels,
        "timestamp_column": args.timestamp_column,
        "known_at": None if known_at is None else str(known_at),
    }
    result = ctx.tables.write(
        df,
        ctx.path(layer, args.output),
        "overwrite",
        overwrite_schema=True,
        metadata={"training_set": lineage},
    )
    ctx.summary.update(
        {
            "entity_rows": entity_rows,
            "output_rows": result.rows_written,
            "output_version": result.version,
            "views": sorted(training.views),
        }
    )
    if not (args.drop_censored and labels) and result.rows_written != entity_rows:
        raise DataError(
            f"training set has {result.rows_written} rows for {entity_rows} entity rows; "
            "every entity row must be kept exactly once"
        )
