"""Customer segmentation: a Spark ML pipeline (assemble, scale, cluster) with k by silhouette.

Pipeline (:func:`build_segmentation_pipeline`): heavy-tailed columns -> log(1 + max(x, 0))
(``SQLTransformer``); median imputation (a customer with a missing feature still gets a
segment); assembly; scaling to unit variance; KMeans, BisectingKMeans or
GaussianMixture. The fitted pipeline takes the raw feature columns, so scoring needs nothing else.

k is chosen by the silhouette (squared Euclidean, on the standardised features) over the
configured range; ties go to the smaller k.

Segment names (:func:`name_segments`) come from the profile (size and raw feature means per
segment) by the configured rules: a rule compares the segment's mean of a feature with the mean
over all rows (``above: {monetary: 2.0}`` = at least twice the overall mean; ``below:
{tenure_days: 0.5}`` = at most half); the first rule that holds names the segment, else the
default name. Repeated names get ``-2``, ``-3``... by decreasing segment size.

Example:
    >>> result = train_segmentation(config, features_df, tags={...})
    >>> segments = assign_segments(result.model, features_df, config, result.names, "3", )
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.clustering import BisectingKMeans, GaussianMixture, KMeans
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.ml.feature import Imputer, SQLTransformer, StandardScaler, VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.ml.config import NamingConfig, SegmentationConfig

__all__ = [
    "SegmentationResult",
    "assign_segments",
    "build_segmentation_pipeline",
    "name_segments",
    "overall_means",
    "segment_profiles",
    "silhouette",
    "train_segmentation",
]

log = logging.getLogger(__name__)

FEATURES_COL = "_features"
PREDICTION_COL = "prediction"  # MLflow's Spark flavour serves the column named "prediction"


def _transformed_name(column: str, config: SegmentationConfig) -> str:
    return f"{column}__log1p" if column in config.log1p_columns else column


def build_segmentation_pipeline(config: SegmentationConfig, k: int) -> Pipeline:
    """The segmentation pipeline for one k.

    Args:
        config: the segmentation configuration.
        k: the number of segments.

    Returns:
        An unfitted Pipeline whose model adds ``prediction`` (the segment id, 0..k-1).
    """
    stages: list[Any] = []
    if config.log1p_columns:
        logs = ", ".join(
            f"ln(1 + greatest(CAST(`{c}` AS DOUBLE), 0.0)) AS `{c}__log1p`"
            for c in config.log1p_columns
        )
        stages.append(SQLTransformer(statement=f"SELECT *, {logs} FROM __THIS__"))
    inputs = [_transformed_name(c, config) for c in config.feature_columns]
    imputed = [f"{c}__imputed" for c in inputs]
    stages.append(Imputer(inputCols=inputs, outputCols=imputed, strategy="median"))
    stages.append(VectorAssembler(inputCols=imputed, outputCol=f"{FEATURES_COL}_raw"))
    # Unit variance but not centred: clustering does not care about a shift, and
    # BisectingKMeans splits a cluster by perturbing its centre in proportion to the centre's
    # norm - at the origin (centred data) it never splits.
    stages.append(
        StandardScaler(
            inputCol=f"{FEATURES_COL}_raw", outputCol=FEATURES_COL, withMean=False, withStd=True
        )
    )
    common: dict[str, Any] = {
        "featuresCol": FEATURES_COL,
        "predictionCol": PREDICTION_COL,
        "k": k,
        "seed": config.seed,
        "maxIter": config.max_iter,
    }
    if config.algorithm == "kmeans":
        stages.append(KMeans(**common))
    elif config.algorithm == "bisecting_kmeans":
        stages.append(BisectingKMeans(**common))
    else:
        stages.append(GaussianMixture(probabilityCol="_segment_probability", **common))
    return Pipeline(stages=stages)


def silhouette(assigned: DataFrame) -> float:
    """The silhouette (squared Euclidean) of a fitted pipeline's output."""
    evaluator = ClusteringEvaluator(
        featuresCol=FEATURES_COL,
        predictionCol=PREDICTION_COL,
        metricName="silhouette",
        distanceMeasure="squaredEuclidean",
    )
    return float(evaluator.evaluate(assigned))


def segment_profiles(assigned: DataFrame, features: Sequence[str]) -> DataFrame:
    """Size and raw feature means per segment.

    Returns:
        segment_id int, size long, then one mean per feature (named like the feature).
    """
    return assigned.groupBy(F.col(PREDICTION_COL).cast("int").alias("segment_id")).agg(
        F.count(F.lit(1)).alias("size"), *[F.avg(c).alias(c) for c in features]
    )


def overall_means(df: DataFrame, features: Sequence[str]) -> DataFrame:
    """One row: the mean of each feature over all rows (what naming rules compare with)."""
    return df.agg(*[F.avg(c).alias(c) for c in features])


def _holds(
    profile: Mapping[str, Any], overall: Mapping[str, Any], column: str, factor: float, above: bool
) -> bool:
    base, value = overall.get(column), profile.get(column)
    if base is None or value is None or base <= 0:
        return False
    return value >= factor * base if above else value <= factor * base


def name_segments(
    profiles: Sequence[Mapping[str, Any]], overall: Mapping[str, Any], naming: NamingConfig
) -> dict[int, str]:
    """Readable, unique names for segments from their profiles.

    Args:
        profiles: rows of :func:`segment_profiles` (``segment_id``, ``size``, feature means).
        overall: the feature means over all rows.
        naming: the ordered rules and the default name.

    Returns:
        segment id -> name. Repeated names get ``-2``, ``-3``... by decreasing size (ties by id).
    """
    names: dict[int, str] = {}
    used: dict[str, int] = {}
    for profile in sorted(profiles, key=lambda p: (-int(p["size"]), int(p["segment_id"]))):
        name = naming.default
        for rule in naming.rules:
            if all(_holds(profile, overall, c, f, True) for c, f in rule.above.items()) and all(
                _holds(profile, overall, c, f, False) for c, f in rule.below.items()
            ):
                name = rule.name
                break
        used[name] = used.get(name, 0) + 1
        names[int(profile["segment_id"])] = name if used[name] == 1 else f"{name}-{used[name]}"
    return names


def assign_segments(
    model: PipelineModel,
    features: DataFrame,
    config: SegmentationConfig,
    names: Mapping[int, str],
    model_version: str,
) -> DataFrame:
    """Score every row: the gold ``customer_segments`` rows.

    Returns:
        <key>, segment_id int, segment_name string, model_version string, as_of_ts timestamp.
    """
    mapping = F.create_map(
        *[x for sid, name in sorted(names.items()) for x in (F.lit(sid), F.lit(name))]
    )
    segment = F.col(PREDICTION_COL).cast("int")
    return model.transform(features).select(
        F.col(config.features.key),
        segment.alias("segment_id"),
        F.coalesce(mapping[segment], F.lit(config.naming.default)).alias("segment_name"),
        F.lit(model_version).alias("model_version"),
        F.col(config.as_of_column).cast("timestamp").alias("as_of_ts"),
    )


@dataclass(frozen=True)
class SegmentationResult:
    """A segmentation training run.

    Attributes:
        run_id: the MLflow run.
        model_uri: the logged model (``models:/<model id>``).
        model: the fitted pipeline of the chosen k.
        k: the chosen k.
        silhouette: its silhouette.
        silhouettes: k -> silhouette for every k tried.
        profiles: per segment: segment_id, name, size and feature means.
        names: segment id -> name.
        rows: rows clustered.
    """

    run_id: str
    model_uri: str
    model: PipelineModel
    k: int
    silhouette: float
    silhouettes: dict[int, float]
    profiles: list[dict[str, Any]]
    names: dict[int, str]
    rows: int


def _profile_figure(silhouettes: Mapping[int, float], profiles: Sequence[Mapping[str, Any]]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    ks = sorted(silhouettes)
    left.plot(ks, [silhouettes[k] for k in ks], marker="o")
    left.set_xlabel("k")
    left.set_ylabel("silhouette")
    left.set_title("silhouette by k")
    ordered = sorted(profiles, key=lambda p: p["segment_id"])
    right.bar(
        [f"{p['segment_id']}: {p['segment_name']}" for p in ordered], [p["size"] for p in ordered]
    )
    right.set_title("segment sizes")
    right.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    return fig


def train_segmentation(
    config: SegmentationConfig,
    features: DataFrame,
    *,
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
) -> SegmentationResult:
    """Fit the pipeline for every k in range, keep the best silhouette, log it all to MLflow.

    Call after :func:`featurelake.ml.tracking.configure_tracking`.

    Args:
        config: the validated segmentation configuration.
        features: the feature table (key, as-of column and feature columns at least).
        tags: MLflow tags (table path and version, code version...).
        run_name: the MLflow run name.

    Returns:
        The run, the chosen model, k, silhouettes, profiles and names.

    Raises:
        ValueError: fewer rows than the largest k.
    """
    import mlflow

    from featurelake.ml.portable.pyfunc import log_spark_pipeline
    from featurelake.ml.tracking import pip_requirements

    data = features.select(
        config.features.key, config.as_of_column, *config.feature_columns
    ).cache()
    try:
        rows = data.count()
        if rows < config.k.max:
            raise ValueError(f"{rows} rows cannot make {config.k.max} segments (k.max)")
        with mlflow.start_run(run_name=run_name or f"{config.name}-training") as run:
            mlflow.set_tags(
                {
                    **(tags or {}),
                    "featurelake.model": config.name,
                    "featurelake.kind": "segmentation",
                }
            )
            mlflow.log_params(
                {
                    "algorithm": config.algorithm,
                    "k.min": config.k.min,
                    "k.max": config.k.max,
                    "seed": config.seed,
                    "max_iter": config.max_iter,
                    "feature_columns": ",".join(config.feature_columns),
                    "log1p_columns": ",".join(config.log1p_columns),
                    "rows": rows,
                }
            )
            mlflow.log_dict(config.model_dump(mode="json"), "model_config.json")
            silhouettes: dict[int, float] = {}
            best: tuple[float, int, PipelineModel] | None = None
            for k in range(config.k.min, config.k.max + 1):
                model = build_segmentation_pipeline(config, k).fit(data)
                score = silhouette(model.transform(data))
                silhouettes[k] = score
                mlflow.log_metric("silhouette", score, step=k)
                mlflow.log_metric(f"silhouette_k{k}", score)
                log.info("k_evaluated", extra={"fields": {"k": k, "silhouette": score}})
                if best is None or score > best[0]:
                    best = (score, k, model)
            assert best is not None
            score, k, model = best
            assigned = model.transform(data)
            profile_rows = [
                r.asDict() for r in segment_profiles(assigned, config.feature_columns).collect()
            ]
            overall_row = overall_means(data, config.feature_columns).first()
            assert overall_row is not None  # an aggregate without grouping has one row
            overall = overall_row.asDict()
            names = name_segments(profile_rows, overall, config.naming)
            profiles = sorted(
                (
                    {
                        "segment_id": p["segment_id"],
                        "segment_name": names[p["segment_id"]],
                        **{c: v for c, v in p.items() if c != "segment_id"},
                    }
                    for p in profile_rows
                ),
                key=lambda p: p["segment_id"],
            )
            mlflow.log_params({"chosen_k": k})
            mlflow.log_metrics({"chosen_silhouette": score, "segments": len(profiles)})
            mlflow.log_dict(
                {"overall_means": overall, "segments": profiles}, "segment_profiles.json"
            )
            mlflow.log_text(_profiles_csv(profiles, config.feature_columns), "segment_profiles.csv")
            mlflow.log_figure(_profile_figure(silhouettes, profiles), "segments.png")
            # Spark flavour for native scoring, numpy pyfunc for spark_udf and serving.
            example = data.select(*config.feature_columns).limit(5)
            info = log_spark_pipeline(model, example, pip_requirements=pip_requirements())
    finally:
        data.unpersist()
    log.info(
        "segmentation_trained",
        extra={
            "fields": {
                "run_id": run.info.run_id,
                "k": k,
                "silhouette": score,
                "silhouettes": silhouettes,
                "segments": {p["segment_name"]: p["size"] for p in profiles},
            }
        },
    )
    return SegmentationResult(
        run.info.run_id, info.model_uri, model, k, score, silhouettes, profiles, names, rows
    )


def _profiles_csv(profiles: Sequence[Mapping[str, Any]], features: Sequence[str]) -> str:
    header = ["segment_id", "segment_name", "size", *features]
    lines = [",".join(header)]
    for p in profiles:
        lines.append(",".join("" if p.get(h) is None else str(p.get(h)) for h in header))
    return "\n".join(lines) + "\n"
