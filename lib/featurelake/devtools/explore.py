"""Helpers for exploring gold tables in notebooks.

Unlike the transformations elsewhere in lib/, these run Spark actions and return pandas frames
or matplotlib figures: they are the notebooks' I/O edge, so the notebooks themselves hold no
logic and CI can execute them.

Example:
    >>> ws = connect()
    >>> gold = ws.read("gold", "customer_features")
    >>> describe_features(gold, ["recency_days", "monetary"])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from featurelake.core.config import Settings, load_settings
from featurelake.core.session import build_spark_session
from featurelake.delta import DeltaTables, Lineage

__all__ = [
    "Workspace",
    "connect",
    "describe_features",
    "feature_drift",
    "model_runs",
    "plot_distributions",
    "plot_segment_profiles",
    "segment_profile",
]


@dataclass
class Workspace:
    """A notebook's settings, session and table access."""

    settings: Settings
    spark: SparkSession
    tables: DeltaTables

    def read(self, layer: str, table: str, version: int | None = None) -> DataFrame:
        """Read ``<layer>/<table>`` (optionally as of a version)."""
        return self.tables.read(self.settings.lakehouse.table_path(layer, table), version=version)

    def versions(self, layer: str, table: str) -> list[int]:
        """The table's versions, oldest first."""
        path = self.settings.lakehouse.table_path(layer, table)
        return sorted(int(h["version"]) for h in self.tables.history(path))


def connect(
    conf_dir: str = "conf", env: str | None = None, overrides: Sequence[str] = ()
) -> Workspace:
    """Load the configuration and start (or reuse) the Spark session for a notebook."""
    settings = load_settings(conf_dir, env, overrides)
    spark = build_spark_session("featurelake-notebook", settings.spark, settings.delta)
    tables = DeltaTables.for_settings(spark, settings.delta, Lineage(job="notebook"))
    return Workspace(settings, spark, tables)


def _pandas(df: DataFrame) -> pd.DataFrame:
    """``df.toPandas()``, typed as the pandas frame it is."""
    return cast(pd.DataFrame, df.toPandas())


def describe_features(df: DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """count, mean, stddev, min, quartiles and max of each column (rows: columns)."""
    stats = _pandas(
        df.select(*columns).summary("count", "mean", "stddev", "min", "25%", "50%", "75%", "max")
    ).set_index("summary")
    return stats.apply(pd.to_numeric, errors="coerce").T


def plot_distributions(
    df: DataFrame, columns: Sequence[str], bins: int = 30, sample_rows: int = 100_000, seed: int = 7
) -> Any:
    """Histograms of ``columns`` on a sample of at most ``sample_rows`` rows."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    total = df.count()
    fraction = min(1.0, sample_rows / total) if total else 1.0
    sample = _pandas(df.select(*columns).sample(fraction=fraction, seed=seed))
    cols = min(3, len(columns))
    rows = math.ceil(len(columns) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    for ax, column in zip(axes.flat, columns, strict=False):
        ax.hist(sample[column].dropna(), bins=bins)
        ax.set_title(column)
    for ax in list(axes.flat)[len(columns) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def segment_profile(
    segments: DataFrame, features: DataFrame, key: str, columns: Sequence[str]
) -> pd.DataFrame:
    """Size, share and feature means per segment (segments joined to features on ``key``)."""
    joined = segments.select(key, "segment_id", "segment_name").join(
        features.select(key, *columns), key
    )
    profile = _pandas(
        joined.groupBy("segment_id", "segment_name")
        .agg(F.count(F.lit(1)).alias("size"), *[F.avg(c).alias(c) for c in columns])
        .orderBy("segment_id")
    )
    profile.insert(3, "share", profile["size"] / profile["size"].sum())
    return profile


def plot_segment_profiles(profile: pd.DataFrame, columns: Sequence[str]) -> Any:
    """Each segment's feature means relative to the size-weighted overall mean (1 = average)."""
    import matplotlib

    matplotlib.use("Agg", force=False)

    weights = profile["size"] / profile["size"].sum()
    overall = {c: float((profile[c] * weights).sum()) for c in columns}
    relative = pd.DataFrame({c: profile[c] / overall[c] if overall[c] else 0.0 for c in columns})
    relative.index = profile["segment_name"]
    ax = relative.T.plot.bar(figsize=(10, 4))
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_ylabel("mean / overall mean")
    ax.figure.tight_layout()
    return ax.figure


def feature_drift(
    before: DataFrame, after: DataFrame, column: str, bins: int = 10
) -> tuple[pd.DataFrame, float]:
    """Population stability index (PSI) of ``column`` between two snapshots.

    Bin edges are the ``before`` deciles (exact quantiles would need a sort; Spark's
    approximate quantiles with 0.1% error are plenty for drift). An empty bin counts as
    0.0001 of the rows so the logarithm stays finite. PSI < 0.1 is usually read as stable,
    0.1-0.25 as a shift worth a look, > 0.25 as drift.

    Returns:
        (per-bin table: lower, upper, before share, after share, PSI term; the total PSI).
    """
    qs = [i / bins for i in range(1, bins)]
    edges = sorted(set(before.approxQuantile(column, qs, 0.001)))
    bounds = [-math.inf, *edges, math.inf]

    def shares(df: DataFrame) -> list[float]:
        # bin i holds bounds[i] < x <= bounds[i + 1]; the outermost test is the lowest edge
        bucket = F.lit(len(bounds) - 2)
        for i in range(len(bounds) - 2, 0, -1):
            bucket = F.when(F.col(column) <= bounds[i], F.lit(i - 1)).otherwise(bucket)
        counts: dict[int, int] = dict(
            df.filter(F.col(column).isNotNull()).groupBy(bucket.alias("b")).count().collect()
        )
        total = sum(counts.values()) or 1
        return [counts.get(i, 0) / total for i in range(len(bounds) - 1)]

    b, a = shares(before), shares(after)
    floor = 1e-4
    terms = [
        (max(y, floor) - max(x, floor)) * math.log(max(y, floor) / max(x, floor))
        for x, y in zip(b, a, strict=True)
    ]
    table = pd.DataFrame(
        {"lower": bounds[:-1], "upper": bounds[1:], "before": b, "after": a, "psi": terms}
    )
    return table, float(sum(terms))


def model_runs(settings: Settings, experiment: str | None = None) -> pd.DataFrame:
    """MLflow runs of the experiment with their parameters, metrics and featurelake tags."""
    import mlflow

    from featurelake.ml.tracking import configure_tracking

    target = configure_tracking(settings.mlflow, experiment)
    runs = mlflow.search_runs(
        experiment_ids=[target.experiment_id], order_by=["attributes.start_time DESC"]
    )
    keep = [
        c
        for c in runs.columns
        if c.startswith(("metrics.", "params.algorithm", "tags.featurelake", "tags.mlflow.runName"))
        or c in ("run_id", "start_time", "status")
    ]
    return runs[keep]
