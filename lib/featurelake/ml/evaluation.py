"""Binary classification metrics, computed in one Spark pass, and the ROC curve figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

_ROC_BINS = 200


@dataclass(frozen=True)
class BinaryMetrics:
    """Held-out metrics at the configured threshold.

    Attributes:
        roc_auc, pr_auc: threshold-free ranking metrics.
        accuracy, precision, recall, f1: at the threshold (the model's ``prediction``).
        tp, fp, tn, fn: the confusion matrix (positive = label 1).
        roc_curve: (threshold, false positive rate, true positive rate) points.
    """

    roc_auc: float
    pr_auc: float
    accuracy: float
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    tn: int
    fn: int
    roc_curve: list[tuple[float, float, float]] = field(default_factory=list, repr=False)

    def as_metrics(self) -> dict[str, float]:
        """The scalar metrics (for MLflow)."""
        return {
            k: float(getattr(self, k))
            for k in (
                "roc_auc",
                "pr_auc",
                "accuracy",
                "precision",
                "recall",
                "f1",
                "tp",
                "fp",
                "tn",
                "fn",
            )
        }


def evaluate_binary(predictions: DataFrame, label: str) -> BinaryMetrics:
    """Evaluate a classifier's output on labelled rows.

    Args:
        predictions: the model's output with ``probability`` and ``prediction`` and the label.
        label: the 0/1 label column.

    Returns:
        The metrics; precision/recall/F1 are 0.0 when undefined (no predicted/actual positives).
    """
    scored = predictions.select(
        F.col(label).cast("double").alias("label"),
        F.col("prediction").cast("double").alias("prediction"),
        F.col("probability"),
        vector_to_array(F.col("probability"))[1].alias("p1"),
    ).cache()
    try:
        evaluator = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="probability")
        roc_auc = evaluator.setMetricName("areaUnderROC").evaluate(scored)
        pr_auc = evaluator.setMetricName("areaUnderPR").evaluate(scored)
        counts = scored.agg(
            F.sum(((F.col("label") == 1) & (F.col("prediction") == 1)).cast("long")).alias("tp"),
            F.sum(((F.col("label") == 0) & (F.col("prediction") == 1)).cast("long")).alias("fp"),
            F.sum(((F.col("label") == 0) & (F.col("prediction") == 0)).cast("long")).alias("tn"),
            F.sum(((F.col("label") == 1) & (F.col("prediction") == 0)).cast("long")).alias("fn"),
        ).first()
        assert counts is not None  # an aggregate without grouping has one row
        bins = (
            scored.groupBy(
                F.least(F.floor(F.col("p1") * _ROC_BINS), F.lit(_ROC_BINS - 1))
                .cast("int")
                .alias("bin")
            )
            .agg(F.sum("label").alias("pos"), F.sum(1 - F.col("label")).alias("neg"))
            .collect()
        )
    finally:
        scored.unpersist()
    tp, fp, tn, fn = (int(counts[k] or 0) for k in ("tp", "fp", "tn", "fn"))
    total = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BinaryMetrics(
        roc_auc=float(roc_auc),
        pr_auc=float(pr_auc),
        accuracy=(tp + tn) / total if total else 0.0,
        precision=precision,
        recall=recall,
        f1=f1,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
        roc_curve=_roc_points({int(r["bin"]): (float(r["pos"]), float(r["neg"])) for r in bins}),
    )


def _roc_points(bins: Mapping[int, tuple[float, float]]) -> list[tuple[float, float, float]]:
    """ROC points from per-bin positive/negative counts, sweeping the threshold downwards."""
    pos_total = sum(p for p, _ in bins.values()) or 1.0
    neg_total = sum(n for _, n in bins.values()) or 1.0
    points = [(1.0, 0.0, 0.0)]
    tp = fp = 0.0
    for b in range(_ROC_BINS - 1, -1, -1):
        pos, neg = bins.get(b, (0.0, 0.0))
        tp, fp = tp + pos, fp + neg
        points.append((b / _ROC_BINS, fp / neg_total, tp / pos_total))
    return points


def roc_figure(curves: Mapping[str, Sequence[tuple[float, float, float]]]) -> Any:
    # A bare Figure with the Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, points in curves.items():
        ax.plot([p[1] for p in points], [p[2] for p in points], label=name)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC curve (held-out)")
    ax.legend(loc="lower right")
    return fig
