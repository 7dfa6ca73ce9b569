"""Feature selection before the search: univariate, correlation and importance steps.

Every statistic comes from the training rows only (never the held-out ones), so selection does
not leak the test split. The steps of a model's ``selection`` section run in this order, each on
the features the previous one kept; features listed in ``keep`` are never dropped:

1. ``univariate``: each feature's association with the label - |Pearson correlation| for a
   numeric feature (rows where it is not null), Cramer's V for a categorical one (null is a
   category of its own) - must reach ``min_score``; then at most ``max_features``, best first.
2. ``correlation``: of two numeric features whose |Pearson correlation| (after median
   imputation) exceeds ``max_abs``, the one with the lower univariate score is dropped (ties:
   the one declared later), pairs taken from the most correlated down.
3. ``importance``: a random forest on the remaining features; a feature whose share of the
   importance is below ``min_importance`` is dropped.

The decisions (:func:`choose_univariate`, :func:`choose_uncorrelated`,
:func:`choose_important`) are plain Python over the statistics, so they are tested with
hand-worked numbers; :func:`select_features` computes the statistics with Spark and applies
them.

Example:
    >>> result = select_features(config, train_rows)
    >>> result.selected, result.dropped["bill_amt_2"]
    (['limit_bal', ...], '|r| = 0.97 with bill_amt_1 (univariate score 0.010 < 0.012)')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.core.errors import DataError
from featurelake.ml.config import ClassificationConfig, SelectionConfig

__all__ = [
    "SelectionResult",
    "choose_important",
    "choose_uncorrelated",
    "choose_univariate",
    "cramers_v",
    "select_features",
]

Decision = tuple[list[str], dict[str, str]]


@dataclass(frozen=True)
class SelectionResult:
    """What selection chose and why.

    Attributes:
        selected: the features kept, in declared order.
        dropped: feature -> the reason it was dropped.
        scores: every declared feature's univariate score.
        importances: the importance shares of the features the importance step saw.
        steps: the steps that ran, in order.
    """

    selected: list[str]
    dropped: dict[str, str]
    scores: dict[str, float]
    importances: dict[str, float] = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "selected": self.selected,
            "dropped": self.dropped,
            "univariate_scores": self.scores,
            "importance_shares": self.importances,
        }


# --------------------------------------------------------------------------------------------
# Decisions (plain Python)
# --------------------------------------------------------------------------------------------


def cramers_v(counts: Mapping[Any, tuple[int, int]]) -> float:
    """Cramer's V of a category x binary-label table: sqrt(chi2 / n).

    Args:
        counts: category -> (rows, rows with label 1).

    Returns:
        V in [0, 1]; 0 when the label or the feature takes a single value.
    """
    n = sum(rows for rows, _ in counts.values())
    positives = sum(pos for _, pos in counts.values())
    if n == 0 or positives in (0, n) or len(counts) < 2:
        return 0.0
    rate = positives / n
    # For a 2 x k table, chi2 / n = sum_c n_c (p_c - p)^2 / (n p (1 - p)).
    between = sum(rows * (pos / rows - rate) ** 2 for rows, pos in counts.values() if rows)
    return math.sqrt(between / (n * rate * (1 - rate)))


def choose_univariate(
    candidates: Sequence[str],
    scores: Mapping[str, float],
    keep: Sequence[str],
    min_score: float,
    max_features: int | None,
) -> Decision:
    """Keep features scoring at least ``min_score``, then the ``max_features`` best.

    Returns:
        (kept, in ``candidates`` order; dropped feature -> reason).
    """
    dropped: dict[str, str] = {}
    passing = []
    for feature in candidates:
        if feature not in keep and scores[feature] < min_score:
            dropped[feature] = f"univariate score {scores[feature]:.4f} < min_score {min_score:.4f}"
        else:
            passing.append(feature)
    if max_features is not None:
        order = {f: i for i, f in enumerate(candidates)}
        ranked = sorted(passing, key=lambda f: (f not in keep, -scores[f], order[f]))
        for rank, feature in enumerate(ranked, start=1):
            if rank > max_features and feature not in keep:
                dropped[feature] = (
                    f"univariate rank {rank} (score {scores[feature]:.4f}) "
                    f"beyond max_features {max_features}"
                )
    return [f for f in candidates if f not in dropped], dropped


def choose_uncorrelated(
    candidates: Sequence[str],
    correlations: Mapping[tuple[str, str], float],
    scores: Mapping[str, float],
    keep: Sequence[str],
    max_abs: float,
) -> Decision:
    """Drop one feature of each pair with |r| > ``max_abs``, most correlated pairs first.

    Args:
        candidates: the features in play, in declared order.
        correlations: (a, b) -> Pearson r for pairs of numeric candidates (either order).
        scores: univariate scores: the lower-scoring feature of a pair goes.
        keep: features never dropped (a pair of two kept features stays).
        max_abs: the threshold.

    Returns:
        (kept, in ``candidates`` order; dropped feature -> reason).
    """
    order = {f: i for i, f in enumerate(candidates)}
    pairs = sorted(
        (
            (abs(r), a, b)
            for (a, b), r in correlations.items()
            if a in order and b in order and a != b and not math.isnan(r)
        ),
        key=lambda p: (-p[0], order[p[1]], order[p[2]]),
    )
    dropped: dict[str, str] = {}
    for size, a, b in pairs:
        if size <= max_abs or a in dropped or b in dropped:
            continue
        first, second = sorted((a, b), key=lambda f: order[f])
        # the lower score goes; on a tie, the one declared later
        loser = second if scores[first] >= scores[second] else first
        winner = first if loser == second else second
        if loser in keep:
            loser, winner = winner, loser
            if loser in keep:
                continue
        dropped[loser] = (
            f"|r| = {size:.4f} > max_abs {max_abs:.4f} with {winner} "
            f"(univariate score {scores[loser]:.4f} vs {scores[winner]:.4f})"
        )
    return [f for f in candidates if f not in dropped], dropped


def choose_important(
    candidates: Sequence[str],
    shares: Mapping[str, float],
    keep: Sequence[str],
    min_importance: float,
) -> Decision:
    """Keep features whose importance share reaches ``min_importance``.

    Returns:
        (kept, in ``candidates`` order; dropped feature -> reason).
    """
    dropped = {
        f: f"importance share {shares.get(f, 0.0):.4f} < min_importance {min_importance:.4f}"
        for f in candidates
        if f not in keep and shares.get(f, 0.0) < min_importance
    }
    return [f for f in candidates if f not in dropped], dropped


# --------------------------------------------------------------------------------------------
# Statistics (Spark, on the training rows)
# --------------------------------------------------------------------------------------------


def _univariate_scores(train: DataFrame, config: ClassificationConfig) -> dict[str, float]:
    """|r| of each numeric feature and Cramer's V of each categorical one with the label."""
    label = F.col(config.label).cast("double")
    scores: dict[str, float] = {}
    if config.numeric_features:
        row = train.agg(
            *[
                F.corr(F.col(c).cast("double"), label).alias(f"r{i}")
                for i, c in enumerate(config.numeric_features)
            ]
        ).first()
        assert row is not None  # an aggregate without grouping has one row
        for i, column in enumerate(config.numeric_features):
            value = row[f"r{i}"]
            scores[column] = 0.0 if value is None or math.isnan(value) else abs(float(value))
    if config.categorical_features:
        # One pass for every categorical column: (column, value) pairs exploded, then counted.
        pairs = F.explode(
            F.array(
                *[
                    F.struct(
                        F.lit(c).alias("column"),
                        F.coalesce(F.col(c).cast("string"), F.lit("\u0000null")).alias("value"),
                    )
                    for c in config.categorical_features
                ]
            )
        )
        counted = (
            train.select(pairs.alias("pair"), label.alias("y"))
            .groupBy("pair.column", "pair.value")
            .agg(F.count(F.lit(1)).alias("rows"), F.sum("y").alias("positives"))
            .collect()
        )
        tables: dict[str, dict[str, tuple[int, int]]] = {}
        for r in counted:
            tables.setdefault(r["column"], {})[r["value"]] = (
                int(r["rows"]),
                int(r["positives"] or 0),
            )
        for column in config.categorical_features:
            scores[column] = cramers_v(tables.get(column, {}))
    return scores


def _numeric_correlations(train: DataFrame, columns: Sequence[str]) -> dict[tuple[str, str], float]:
    """Pearson r of every pair of ``columns`` after median imputation (one pass)."""
    from pyspark.ml.feature import Imputer, VectorAssembler
    from pyspark.ml.stat import Correlation

    if len(columns) < 2:
        return {}
    imputed = [f"{c}__imputed" for c in columns]
    frame = Imputer(inputCols=list(columns), outputCols=imputed, strategy="median").fit(train)
    vectors = VectorAssembler(inputCols=imputed, outputCol="_corr_vector").transform(
        frame.transform(train.select(*columns))
    )
    row = Correlation.corr(vectors, "_corr_vector").first()
    assert row is not None
    matrix = row[0].toArray()
    return {
        (a, b): float(matrix[i][j])
        for i, a in enumerate(columns)
        for j, b in enumerate(columns)
        if i < j
    }


def _importance_shares(
    train: DataFrame, config: ClassificationConfig, features: Sequence[str], use_weights: bool
) -> dict[str, float]:
    """Importance shares of a random forest fitted on ``features`` of the training rows."""
    from pyspark.ml.classification import RandomForestClassifier

    from featurelake.ml.classification import (
        RAW_FEATURES_COL,
        WEIGHT_COL,
        build_preprocessing,
    )
    from featurelake.ml.importance import model_importances, vector_slots

    assert config.selection is not None and config.selection.importance is not None
    spec = config.selection.importance
    narrowed = config.with_features(features)
    vectors = build_preprocessing(narrowed).fit(train).transform(train)
    estimator = RandomForestClassifier(
        featuresCol=RAW_FEATURES_COL,
        labelCol=config.label,
        numTrees=spec.num_trees,
        maxDepth=spec.max_depth,
        seed=config.split.seed,
    )
    if use_weights:
        estimator.setWeightCol(WEIGHT_COL)
    forest = estimator.fit(vectors)
    slots = vector_slots(vectors.schema[RAW_FEATURES_COL])
    return {i.feature: i.share for i in model_importances(forest, slots, list(features))}


def select_features(
    config: ClassificationConfig, train: DataFrame, *, use_weights: bool = False
) -> SelectionResult:
    """Run the configured selection steps on the training rows.

    Args:
        config: the model configuration (with a ``selection`` section).
        train: the labelled training rows (feature columns, the label; ``_weight`` when
            ``use_weights``).
        use_weights: fit the importance step's forest with the class weights.

    Returns:
        The selected features (declared order), the dropped ones with reasons, the scores.

    Raises:
        DataError: every feature was dropped.
    """
    selection: SelectionConfig | None = config.selection
    if selection is None:
        return SelectionResult(list(config.feature_columns), {}, {})
    keep = list(selection.keep)
    scores = _univariate_scores(train, config)
    candidates = list(config.feature_columns)
    dropped: dict[str, str] = {}
    steps: list[str] = []
    shares: dict[str, float] = {}
    if selection.univariate is not None:
        steps.append("univariate")
        candidates, out = choose_univariate(
            candidates,
            scores,
            keep,
            selection.univariate.min_score,
            selection.univariate.max_features,
        )
        dropped.update(out)
    if selection.correlation is not None:
        steps.append("correlation")
        numeric = [c for c in candidates if c in config.numeric_features]
        candidates, out = choose_uncorrelated(
            candidates,
            _numeric_correlations(train, numeric),
            scores,
            keep,
            selection.correlation.max_abs,
        )
        dropped.update(out)
    if selection.importance is not None and candidates:
        steps.append("importance")
        shares = _importance_shares(train, config, candidates, use_weights)
        candidates, out = choose_important(
            candidates, shares, keep, selection.importance.min_importance
        )
        dropped.update(out)
    if not candidates:
        raise DataError(
            f"{config.name}: feature selection dropped every feature ({dropped}); "
            "loosen the thresholds of `selection` or list features under `keep`"
        )
    return SelectionResult(candidates, dropped, scores, shares, steps)
