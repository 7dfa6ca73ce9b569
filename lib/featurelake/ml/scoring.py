"""Batch scoring with any MLflow model: pyfunc UDFs, or Spark models applied natively.

``mlflow.pyfunc.spark_udf`` works for every MLflow flavour. Models featurelake trains carry a
numpy pyfunc beside their Spark flavour (:mod:`featurelake.ml.portable`): through it the UDF
returns the prediction and the probability without a JVM in the Python workers. A Spark model
logged without it (or by other tools) makes each Python worker start a nested local Spark to
load it (about 20 s before the first batch), and its pyfunc returns the label only. A
Spark-flavoured model is applied with its own ``transform`` by default; the pyfunc path can be
forced and gives the same predictions.

The pure parts (column checks, quarantine split, prediction columns) take and return
DataFrames; model loading is the only I/O here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from featurelake.core.errors import MissingColumnsError, UserError, require_columns
from featurelake.lakehouse.cleaning import compact_array

__all__ = [
    "MissingColumnsError",
    "ResolvedModel",
    "check_input_columns",
    "predict",
    "resolve_model",
    "split_scorable",
    "with_prediction_metadata",
]

log = logging.getLogger(__name__)

ScoringPath = Literal["auto", "native", "pyfunc"]
_CLUSTERING_MODELS = {"KMeansModel", "BisectingKMeansModel", "GaussianMixtureModel"}


@dataclass(frozen=True)
class ResolvedModel:
    """An MLflow model and what scoring needs to know about it.

    Attributes:
        uri: the URI asked for (``models:/name@alias``, ``models:/name/3``, ``runs:/id/model``).
        load_uri: an immutable URI for the same model (alias resolved to a version).
        name: registered model name, or the run's artifact path for a run URI.
        version: registered version, or None for a run URI.
        run_id: the run that logged the model.
        flavors: the model's flavours (``spark``, ``sklearn``, ``python_function`` ...).
        input_columns: input column names from the signature, in order.
        kind: ``classification``, ``clustering`` or ``regression`` (from the run's tags or the
            Spark model's stages).
        feature_table_version: the Delta version of the feature table it was trained on, when
            logged by featurelake.
    """

    uri: str
    load_uri: str
    name: str
    version: str | None
    run_id: str | None
    flavors: tuple[str, ...]
    input_columns: tuple[str, ...]
    kind: str
    feature_table_version: int | None

    @property
    def is_spark(self) -> bool:
        return "spark" in self.flavors

    @property
    def is_portable(self) -> bool:
        """Logged with featurelake's numpy pyfunc (prediction and probability, no JVM)."""
        return "featurelake_portable" in self.flavors


def resolve_model(uri: str) -> ResolvedModel:
    """Look a model up in the tracking server and registry.

    Raises:
        ValueError: the model does not exist, or has no signature to take input columns from.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    name, version, load_uri = uri, None, uri
    try:
        if uri.startswith("models:/"):
            body = uri[len("models:/") :]
            if "@" in body:
                name, alias = body.split("@", 1)
                mv = client.get_model_version_by_alias(name, alias)
            else:
                name, _, number = body.partition("/")
                mv = client.get_model_version(name, number)
            version = str(mv.version)
            load_uri = f"models:/{name}/{version}"
        info = mlflow.models.get_model_info(load_uri)
    except MlflowException as exc:
        raise UserError(f"cannot load model {uri}: {exc.message}") from exc
    if info.signature is None or info.signature.inputs is None:
        raise UserError(
            f"model {uri} has no signature; log it with one so scoring knows its input columns"
        )
    run_id = info.run_id
    tags: dict[str, str] = {}
    params: dict[str, str] = {}
    if run_id:
        run = client.get_run(run_id)
        tags, params = dict(run.data.tags), dict(run.data.params)
    if not uri.startswith("models:/"):
        name = tags.get("featurelake.model", info.artifact_path)
    # Training records the model's kind on the run (segmentation) or on the parent run of the
    # candidates (classification); any other model is treated as a classifier or regressor
    # (the native path still recognises Spark clustering stages itself).
    kind = tags.get("featurelake.kind") or params.get("kind")
    parent = tags.get("mlflow.parentRunId")
    if not kind and parent:
        kind = client.get_run(parent).data.tags.get("featurelake.kind")
    kind = kind or "classification"
    table_version = (
        tags.get("featurelake.features.version")
        or tags.get("featurelake.feature_table_version")
        or params.get("feature_table_version")
    )
    return ResolvedModel(
        uri=uri,
        load_uri=load_uri,
        name=name,
        version=version,
        run_id=run_id,
        flavors=tuple(info.flavors),
        input_columns=tuple(info.signature.inputs.input_names()),
        kind=kind,
        feature_table_version=int(table_version)
        if table_version not in (None, "", "None")
        else None,
    )


def check_input_columns(df: DataFrame, columns: Sequence[str], model_uri: str) -> None:
    """Raise :class:`MissingColumnsError` naming the columns the model needs that ``df`` lacks."""
    require_columns(df.columns, columns, f"the input of {model_uri}")


def split_scorable(df: DataFrame, columns: Sequence[str]) -> tuple[DataFrame, DataFrame]:
    """Split rows into those with every input feature and those to quarantine.

    A null (or NaN) input cannot be scored reliably by every model flavour, so such a row goes
    to quarantine with ``_failed_rules`` naming each missing feature (``null_feature:<col>``).

    Returns:
        (scorable rows, quarantined rows with ``_failed_rules``).
    """
    problems = [
        (_missing(F.col(f"`{c}`"), df.schema[c].dataType.typeName()), f"null_feature:{c}")
        for c in columns
    ]
    flagged = df.withColumn("_failed_rules", compact_array(problems))
    scorable = flagged.filter(F.size("_failed_rules") == 0).drop("_failed_rules")
    quarantined = flagged.filter(F.size("_failed_rules") > 0)
    return scorable, quarantined


def _missing(column: Column, type_name: str) -> Column:
    if type_name in ("double", "float"):
        return column.isNull() | F.isnan(column)
    return column.isNull()


def predict(
    spark: SparkSession,
    model: ResolvedModel,
    df: DataFrame,
    path: ScoringPath = "auto",
) -> tuple[DataFrame, str]:
    """Add ``prediction`` and ``probability`` (classifiers) or ``segment`` (clustering).

    Args:
        spark: the session (the pyfunc UDF is registered in it).
        model: from :func:`resolve_model`.
        df: rows with the model's input columns (other columns are carried through).
        path: ``native`` (Spark models only), ``pyfunc``, or ``auto`` (native for Spark
            models, pyfunc otherwise).

    Returns:
        (scored frame, the path used).

    Raises:
        ValueError: ``native`` asked for a model that is not Spark-flavoured.
    """
    if path == "native" and not model.is_spark:
        raise ValueError(
            f"{model.uri} has no Spark flavour (flavours: {list(model.flavors)}); "
            "use --path pyfunc or auto"
        )
    chosen = "native" if path == "native" or (path == "auto" and model.is_spark) else "pyfunc"
    if chosen == "native":
        return _predict_native(model, df), chosen
    return _predict_pyfunc(spark, model, df), chosen


def _predict_native(model: ResolvedModel, df: DataFrame) -> DataFrame:
    import mlflow.spark
    from pyspark.ml.functions import vector_to_array

    spark_model = mlflow.spark.load_model(model.load_uri)
    original = df.columns
    out = spark_model.transform(df)
    stages = getattr(spark_model, "stages", [spark_model])
    clustering = model.kind in ("clustering", "segmentation") or any(
        type(s).__name__ in _CLUSTERING_MODELS for s in stages
    )
    if clustering:
        return out.select(
            *original,
            F.col("prediction").cast("int").alias("segment"),
            F.col("prediction").cast("double").alias("prediction"),
            F.lit(None).cast("double").alias("probability"),
        )
    probability = (
        vector_to_array(F.col("probability"))[1]
        if "probability" in out.columns
        else F.lit(None).cast("double")
    )
    return out.select(
        *original,
        F.col("prediction").cast("double").alias("prediction"),
        probability.cast("double").alias("probability"),
        F.lit(None).cast("int").alias("segment"),
    )


def _predict_pyfunc(spark: SparkSession, model: ResolvedModel, df: DataFrame) -> DataFrame:
    import mlflow.pyfunc

    inputs = F.struct(*[F.col(f"`{c}`") for c in model.input_columns])
    if model.is_portable:
        # featurelake's numpy form returns the prediction and P(class 1) (null when clustering).
        udf = mlflow.pyfunc.spark_udf(
            spark,
            model.load_uri,
            result_type="prediction double, probability double",
            env_manager="local",
        )
        scored = udf(inputs)
        segment = (
            scored["prediction"].cast("int")
            if model.kind in ("clustering", "segmentation")
            else F.lit(None).cast("int")
        )
        return df.select(
            "*",
            scored["prediction"].alias("prediction"),
            scored["probability"].alias("probability"),
            segment.alias("segment"),
        )
    udf = mlflow.pyfunc.spark_udf(spark, model.load_uri, result_type="double", env_manager="local")
    value = udf(inputs)
    if model.kind in ("clustering", "segmentation"):
        return df.select(
            "*", value.alias("prediction"), F.lit(None).cast("double").alias("probability")
        ).withColumn("segment", F.col("prediction").cast("int"))
    # A pyfunc model returns one value per row: the label. Its probability is not part of
    # the pyfunc contract, so it is left null here (the native path fills it).
    return df.select(
        "*",
        value.alias("prediction"),
        F.lit(None).cast("double").alias("probability"),
        F.lit(None).cast("int").alias("segment"),
    )


def with_prediction_metadata(
    scored: DataFrame,
    model: ResolvedModel,
    *,
    keys: Sequence[str],
    batch_id: str,
    scoring_date: Column,
    inference_ts: Column,
    feature_table_version: int | None,
    role: str = "champion",
) -> DataFrame:
    """The predictions table's columns: keys, outputs, model identity, batch, time and role.

    ``role`` is ``champion`` for the model the batch is scored with and ``shadow`` for a
    waiting challenger scored beside it (docs/RETRAINING.md).
    """
    return scored.select(
        *[F.col(f"`{k}`") for k in keys],
        F.col("prediction").cast("double").alias("prediction"),
        F.col("probability").cast("double").alias("probability"),
        F.col("segment").cast("int").alias("segment"),
        F.lit(model.name).alias("model_name"),
        F.lit(model.version).cast("string").alias("model_version"),
        F.lit(model.run_id).cast("string").alias("run_id"),
        F.lit(feature_table_version).cast("long").alias("feature_table_version"),
        F.lit(batch_id).alias("batch_id"),
        inference_ts.cast("timestamp").alias("inference_ts"),
        scoring_date.cast("date").alias("scoring_date"),
        F.lit(role).alias("role"),
    )
