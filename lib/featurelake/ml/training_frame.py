"""A classifier's training frame: features joined with labels, a hash split, folds, weights.

:func:`prepare_training_frame` builds it with the ``with_*`` steps here; :func:`label_coverage`
and :func:`holdout` read it. :mod:`featurelake.ml.classification` trains on it and re-exports
these names.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from featurelake.ml.config import ClassificationConfig

__all__ = [
    "FOLD_COL",
    "SPLIT_COL",
    "WEIGHT_COL",
    "balanced_weights",
    "holdout",
    "label_coverage",
    "prepare_training_frame",
    "with_class_weight",
    "with_hash_fold",
    "with_hash_split",
]

SPLIT_COL = "_split"
FOLD_COL = "_fold"
WEIGHT_COL = "_weight"
_BUCKETS = 10_000


def _key_hash(key: str, seed: int) -> Column:
    # The key as text, so an int and a long key hash alike.
    return F.xxhash64(F.col(key).cast("string"), F.lit(seed))


def with_hash_split(
    df: DataFrame, key: str, test_fraction: float, seed: int, column: str = SPLIT_COL
) -> DataFrame:
    """Add ``column`` = ``"test"`` for about ``test_fraction`` of the keys, else ``"train"``.

    The side depends only on the key and the seed, never on row order or partitioning.

    Args:
        df: rows with the key column.
        key: the entity key.
        test_fraction: share of keys held out, in (0, 1).
        seed: seeds the hash.
        column: the output column.

    Returns:
        ``df`` with the split column.
    """
    bucket = F.pmod(_key_hash(key, seed), F.lit(_BUCKETS))
    cut = int(round(test_fraction * _BUCKETS))
    return df.withColumn(column, F.when(bucket < cut, F.lit("test")).otherwise(F.lit("train")))


def with_hash_fold(
    df: DataFrame, key: str, folds: int, seed: int, column: str = FOLD_COL
) -> DataFrame:
    """Add ``column``: the cross-validation fold (0..folds-1) from a hash of the key.

    A different hash seed from the split, so folds are independent of the held-out side.
    """
    return df.withColumn(column, F.pmod(_key_hash(key, seed + 1), F.lit(folds)).cast("int"))


def with_class_weight(
    df: DataFrame, label: str, weights: Mapping[int, float], column: str = WEIGHT_COL
) -> DataFrame:
    """Add ``column``: the weight of each row's class (1.0 for a class not in ``weights``)."""
    weight: Column = F.lit(1.0)
    for value, w in sorted(weights.items()):
        weight = F.when(F.col(label) == F.lit(value), F.lit(float(w))).otherwise(weight)
    return df.withColumn(column, weight.cast("double"))


def balanced_weights(class_counts: Mapping[int, int]) -> dict[int, float]:
    """n / (k * n_class) for each class: every class carries the same total weight.

    Raises:
        ValueError: fewer than two classes have rows.
    """
    present = {c: n for c, n in class_counts.items() if n > 0}
    if len(present) < 2:
        raise ValueError(
            f"need rows of two classes to weight them, got counts {dict(class_counts)}"
        )
    total = sum(present.values())
    return {c: total / (len(present) * n) for c, n in present.items()}


def prepare_training_frame(
    features: DataFrame, labels: DataFrame, config: ClassificationConfig
) -> DataFrame:
    """Join features with labels on the key; add the split and fold columns.

    Rows whose label is missing are kept with a null label (count them with
    :func:`label_coverage`; training uses only labelled rows).

    Returns:
        key, the feature columns, the label, ``_split`` and ``_fold``.
    """
    key = config.features.key
    labelled = labels.select(
        F.col(config.labels.key).alias(key), F.col(config.label).alias(config.label)
    )
    return (
        features.select(key, *config.feature_columns)
        .join(labelled, on=key, how="left")
        .transform(with_hash_split, key, config.split.test_fraction, config.split.seed)
        .transform(with_hash_fold, key, config.search.folds, config.split.seed)
    )


def label_coverage(data: DataFrame, label: str) -> dict[str, int]:
    """Counts of rows with and without a label in a :func:`prepare_training_frame` output."""
    row = data.agg(
        F.count(F.lit(1)).alias("rows"),
        F.sum(F.col(label).isNull().cast("long")).alias("unlabelled"),
    ).first()
    assert row is not None
    return {"rows": int(row["rows"]), "rows_without_label": int(row["unlabelled"] or 0)}


def holdout(data: DataFrame, label: str) -> DataFrame:
    """The labelled held-out rows of a :func:`prepare_training_frame` output."""
    return data.filter((F.col(SPLIT_COL) == "test") & F.col(label).isNotNull())
