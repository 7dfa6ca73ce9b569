"""The ``score`` job's body: features by the gold job's own functions, then predictions.

Input can be the gold feature table a model was trained on, the silver table it is built from,
or raw source files; whatever is not yet features goes through exactly the functions the
bronze, silver and gold jobs use (no train/serve skew). Predictions land in
``predictions/<model name>`` partitioned by ``scoring_date``; re-running a batch replaces
that batch's rows.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from featurelake.core.config import Settings
from featurelake.core.errors import UserError
from featurelake.core.runner import JobContext
from featurelake.ml.scoring import (
    ResolvedModel,
    ScoringPath,
    check_input_columns,
    predict,
    resolve_model,
    split_scorable,
    with_prediction_metadata,
)

__all__ = ["ScoreOptions", "build_features_for", "raw_to_silver", "run_score"]

log = logging.getLogger(__name__)

LAYERS_OF_FEATURES = ("gold", "features")


@dataclass(frozen=True)
class ScoreOptions:
    """What to score and how.

    Attributes:
        model_uri: ``models:/<name>@champion``, ``models:/<name>/<version>`` or ``runs:/...``.
        input: ``<layer>/<table>`` (gold features or their silver source), or a raw file path or
            glob (then ``source`` names its declaration in conf/sources).
        model_config: the model's declaration in conf/models (feature table, key).
        source: source declaration for raw input.
        path: ``auto``, ``native`` or ``pyfunc``.
        output: ``<layer>/<table>`` for predictions (default ``predictions/<model name>``).
        scoring_date: the partition (default: today, UTC).
        batch_id: identifies the batch (default: derived from the input and its version).
        shadow: also score the model's waiting ``challenger`` (when it has one besides the
            champion) on the same rows, as ``role = shadow`` rows of the same batch.
    """

    model_uri: str
    input: str
    model_config: str = "credit_default"
    source: str | None = None
    path: ScoringPath = "auto"
    output: str | None = None
    scoring_date: date | None = None
    batch_id: str | None = None
    shadow: bool = False


def _is_table(ref: str) -> bool:
    layer, sep, name = ref.partition("/")
    return (
        bool(sep)
        and "/" not in name
        and "*" not in ref
        and not Path(ref).exists()
        and layer in ("bronze", "silver", "gold", "features", "predictions", "ops")
    )


def build_features_for(
    ctx: JobContext, feature_table: str, options: ScoreOptions, as_of: datetime
) -> tuple[DataFrame, str, int | None]:
    """Features for scoring, built the way the gold job builds ``feature_table``.

    Returns:
        (features, a batch identity for the input, the input table's Delta version or None).

    Raises:
        ValueError: the input cannot produce ``feature_table``.
    """
    from featurelake.lakehouse import gold

    config = gold.load_gold_config(ctx.settings.conf_path(gold.GOLD_CONFIG_FILE))
    if _is_table(options.input):
        layer, _, name = options.input.partition("/")
        path = ctx.path(layer, name)
        df = ctx.tables.read(path)
        version = ctx.tables.lineage.reads[path]
        identity = f"{options.input}@v{version}"
        if options.input == feature_table or layer in LAYERS_OF_FEATURES:
            return df, identity, version  # already features (the table, a copy or a subset)
        if layer == "silver":
            return _silver_to_features(df, feature_table, config, as_of), identity, version
        raise UserError(
            f"cannot build {feature_table} from {options.input}; give the gold "
            f"table, its silver source or raw files"
        )
    silver = _raw_to_silver(ctx, options, as_of)
    digest = hashlib.sha256(options.input.encode()).hexdigest()[:12]
    return _silver_to_features(silver, feature_table, config, as_of), f"raw:{digest}", None


def _silver_to_features(
    silver: DataFrame, feature_table: str, config: Any, as_of: datetime
) -> DataFrame:
    from featurelake.lakehouse import gold
    from featurelake.lakehouse.feature_library.customers import as_of_timestamps

    if feature_table == "gold/credit_features":
        features, _labels = gold.build_credit_gold(silver, config.credit)
        return features
    if feature_table == "gold/customer_features":
        points = as_of_timestamps(silver.sparkSession, [as_of])
        return gold.build_customer_gold(silver, points, config.customers)
    raise UserError(f"no feature builder for {feature_table}")


def _raw_to_silver(ctx: JobContext, options: ScoreOptions, as_of: datetime) -> DataFrame:
    if not options.source:
        raise UserError("raw input needs --source (a declaration in conf/sources)")
    return raw_to_silver(
        ctx.spark, ctx.settings, options.source, options.input, as_of=as_of, run_id=ctx.run_id
    )


def raw_to_silver(
    spark: SparkSession,
    settings: Settings,
    source: str,
    paths: str | Sequence[str],
    *,
    as_of: datetime,
    run_id: str,
) -> DataFrame:
    """Raw files of a source through the bronze parser and its silver table's rules, in memory.

    What the bronze and silver jobs would make of the files (without PII keys: a table that
    hashes PII needs the silver job), for scoring raw input and for building gold from files
    in tests and benchmarks.

    Args:
        spark: the session.
        settings: the validated settings (source and silver table declarations).
        source: the source declaration's name.
        paths: a file path or glob, or several.
        as_of: the ingest and as-of time.
        run_id: written to quarantined rows.

    Raises:
        UserError: the source or its silver table is not declared.
    """
    from featurelake.lakehouse import bronze, silver
    from featurelake.lakehouse.sources import load_sources

    sources = load_sources(settings)
    if source not in sources:
        raise UserError(f"unknown source {source!r}; sources: {sorted(sources)}")
    spec = sources[source]
    parsed = bronze.read_source_rows(spark, spec, paths)
    rows = bronze.with_lineage(parsed, spec=spec, batch_id="score", ingested_at=as_of)
    specs = silver.load_table_specs(settings.conf_path(settings.silver.tables_dir))
    table = next((s for s in specs.values() if s.source == source), None)
    if table is None:
        raise UserError(f"no silver table declared for source {source!r}")
    plan = silver.build_silver(
        rows, table, as_of=as_of, run_id=run_id, quarantined_at=as_of, pii_key=None
    )
    return plan.silver


def run_score(ctx: JobContext, options: ScoreOptions) -> dict[str, Any]:
    """Score ``options.input`` with ``options.model_uri``; write predictions and quarantine.

    Returns:
        Counts and identities for the run summary.

    Raises:
        MissingColumnsError: the features lack columns the model needs (named).
        ValueError: bad options or an unknown model.
    """
    from featurelake.ml.config import load_model_config
    from featurelake.ml.tracking import configure_tracking

    configure_tracking(ctx.settings.mlflow)
    model_config = load_model_config(
        ctx.settings.conf_path("models", f"{options.model_config}.yaml")
    )
    model: ResolvedModel = resolve_model(options.model_uri)
    now = datetime.now(timezone.utc)
    scoring_date = options.scoring_date or now.date()
    feature_table = model_config.features.table
    key = model_config.features.key
    features, identity, input_version = build_features_for(ctx, feature_table, options, now)
    check_input_columns(features, [key, *model.input_columns], options.model_uri)
    scorable, quarantined = split_scorable(features, model.input_columns)
    scored, used_path = predict(ctx.spark, model, scorable, options.path)
    batch_id = (
        options.batch_id
        # One batch per model name, input and day: re-running the day (even after retraining
        # or a gold rebuild) replaces that day's predictions instead of adding a second set.
        or hashlib.sha256(f"{model.name}|{options.input}|{scoring_date}".encode()).hexdigest()[:16]
    )
    feature_version = (
        input_version
        if options.input.partition("/")[0] in LAYERS_OF_FEATURES
        else model.feature_table_version
    )
    predictions = with_prediction_metadata(
        scored,
        model,
        keys=[key],
        batch_id=batch_id,
        scoring_date=F.lit(scoring_date),
        inference_ts=F.lit(now),
        feature_table_version=feature_version,
    )
    shadow = _shadow_model(model) if options.shadow else None
    shadow_rows = 0
    if shadow is not None:
        check_input_columns(features, [key, *shadow.input_columns], shadow.uri)
        shadow_scorable, _ = split_scorable(features, shadow.input_columns)
        shadowed = with_prediction_metadata(
            predict(ctx.spark, shadow, shadow_scorable, options.path)[0],
            shadow,
            keys=[key],
            batch_id=batch_id,
            scoring_date=F.lit(scoring_date),
            inference_ts=F.lit(now),
            feature_table_version=feature_version,
            role="shadow",
        ).cache()
        shadow_rows = shadowed.count()
        # One batch, one commit: the champion's rows and the shadow's together.
        predictions = predictions.unionByName(shadowed)
    layer, _, table = (options.output or f"predictions/{model.name}").partition("/")
    out_path = ctx.path(layer, table)
    written = _replace_batch(ctx, predictions, out_path, batch_id, scoring_date) - shadow_rows
    quarantine_rows = quarantined.select(
        F.col(f"`{key}`").cast("string").alias("key"),
        "_failed_rules",
        F.lit(batch_id).alias("batch_id"),
        F.lit(model.name).alias("model_name"),
        F.lit(now).cast("timestamp").alias("quarantined_at"),
        F.lit(scoring_date).cast("date").alias("scoring_date"),
    )
    q_written = _replace_batch(
        ctx, quarantine_rows, f"{out_path}_quarantine", batch_id, scoring_date
    )
    summary = {
        "model": model.load_uri,
        "input": identity,
        "path": used_path,
        "batch_id": batch_id,
        "predictions_table": out_path,
        "rows_scored": written,
        "rows_quarantined": q_written,
    }
    if shadow is not None:
        summary["shadow"] = {"model": shadow.load_uri, "rows_scored": shadow_rows}
    ctx.summary.setdefault("score", {})[model.name] = summary
    log.info("scored", extra={"fields": summary})
    return summary


def _replace_batch(
    ctx: JobContext, rows: DataFrame, path: str, batch_id: str, scoring_date: date
) -> int:
    """Write ``rows`` as batch ``batch_id`` of ``scoring_date``, replacing an earlier run of it.

    The partition's other batches are rewritten with it in the same commit, so the replace is
    atomic: readers see the old batch or the new one, never both or neither.

    Returns:
        Rows of this batch written.
    """
    if not ctx.tables.exists(path):
        return ctx.tables.write(rows, path, partition_by=["scoring_date"]).rows_written
    others = ctx.tables.read(path, record=False).filter(
        (F.col("scoring_date") == F.lit(scoring_date)) & (F.col("batch_id") != batch_id)
    )
    kept = others.count()
    # A table written before a column was added (``role``) gets it; its old rows read null.
    result = ctx.tables.write(
        others.unionByName(rows, allowMissingColumns=True),
        path,
        "overwrite",
        replace_partitions={"scoring_date": scoring_date.isoformat()},
        schema_evolution=True,
    )
    return result.rows_written - kept


def _shadow_model(model: ResolvedModel) -> ResolvedModel | None:
    """The registered model's waiting challenger, when ``model`` is its champion."""
    import mlflow

    from featurelake.ml.registry import CHALLENGER, CHAMPION, alias_version

    if model.version is None:
        return None
    client = mlflow.MlflowClient()
    champion = alias_version(client, model.name, CHAMPION)
    challenger = alias_version(client, model.name, CHALLENGER)
    if (
        champion is None
        or challenger is None
        or str(champion.version) != model.version
        or challenger.version == champion.version
    ):
        return None
    return resolve_model(f"models:/{model.name}@{CHALLENGER}")
