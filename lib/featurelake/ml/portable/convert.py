"""A fitted Spark ML ``PipelineModel`` as a JSON-able specification of its parameters.

:func:`pipeline_spec` reads each stage's fitted parameters - imputer surrogates, indexer labels,
encoder sizes, scaler statistics, coefficients, every tree's nodes, cluster centres, mixture
components - into plain lists and numbers that :class:`~.evaluate.PortablePipeline` applies with
numpy. Trees and the bisecting k-means hierarchy are not exposed by pyspark's API, so those
stages are written with Spark's own ML writer to a temporary folder and their node tables read
back (a few small Parquet files, once at training time).

Supported stages: the ones featurelake's model configurations build (``Imputer``,
``StringIndexer``, ``OneHotEncoder``, ``VectorAssembler``, ``StandardScaler``,
``LogisticRegression`` (binary), ``RandomForestClassifier``, ``GBTClassifier``, ``KMeans``,
``BisectingKMeans``, ``GaussianMixture``, and the segmentation pipeline's ``log1p``
``SQLTransformer``). Anything else raises :class:`UnsupportedStageError`, and the model is then
logged with its Spark flavour only.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.ml import PipelineModel, Transformer
from pyspark.sql import SparkSession
from pyspark.sql.types import StructType

from featurelake.ml.portable.evaluate import SPEC_FORMAT

__all__ = ["UnsupportedStageError", "pipeline_spec"]

_LOG1P_TERM = re.compile(
    r"ln\(1 \+ greatest\(CAST\(`(?P<source>[^`]+)` AS DOUBLE\), 0\.0\)\) AS `(?P<target>[^`]+)`"
)


class UnsupportedStageError(ValueError):
    """A pipeline stage (or a setting of one) the portable form cannot reproduce."""


def _stages(model: Transformer) -> list[Transformer]:
    if isinstance(model, PipelineModel):
        return [s for stage in model.stages for s in _stages(stage)]
    return [model]


def _param(stage: Transformer, name: str) -> Any:
    return stage.getOrDefault(stage.getParam(name))


def _log1p(stage: Transformer) -> dict[str, Any]:
    statement = " ".join(_param(stage, "statement").split())
    match = re.fullmatch(r"SELECT \*, (?P<terms>.+) FROM __THIS__", statement)
    terms = match.group("terms").split(", ln(") if match else []
    parsed = [_LOG1P_TERM.fullmatch(t if i == 0 else f"ln({t}") for i, t in enumerate(terms)]
    if not match or not parsed or not all(parsed):
        raise UnsupportedStageError(
            f"SQLTransformer {statement!r}: only the segmentation pipeline's "
            "ln(1 + greatest(CAST(x AS DOUBLE), 0.0)) columns can be made portable"
        )
    return {
        "type": "log1p",
        "inputs": [m.group("source") for m in parsed if m],
        "outputs": [m.group("target") for m in parsed if m],
    }


def _in_out(stage: Transformer) -> tuple[list[str], list[str]]:
    if stage.isSet(stage.getParam("inputCols")):
        return list(_param(stage, "inputCols")), list(_param(stage, "outputCols"))
    return [_param(stage, "inputCol")], [_param(stage, "outputCol")]


def _read_saved(
    spark: SparkSession, stage: Any, folder: str, data: str = "data"
) -> list[dict[str, Any]]:
    """Save ``stage`` with Spark's ML writer; the rows of its ``data`` table as dicts."""
    path = f"{folder}/{stage.uid}"
    stage.write().overwrite().save(path)
    rows = spark.read.parquet(f"{path}/{data}").collect()
    return [r.asDict(recursive=True) for r in rows]


def _vector_values(value: Any) -> list[float]:
    if hasattr(value, "toArray"):
        return [float(v) for v in value.toArray()]
    # A VectorUDT read back without its type: (type, size, indices, values); type 1 is dense.
    if value["type"] == 1:
        return [float(v) for v in value["values"]]
    dense = [0.0] * int(value["size"])
    for i, v in zip(value["indices"], value["values"], strict=True):
        dense[int(i)] = float(v)
    return dense


def _trees(rows: Sequence[Mapping[str, Any]], *, classes: int | None) -> list[dict[str, Any]]:
    """Node tables (``treeID``, ``nodeData``) as one node list per tree."""
    by_tree: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        node = row["nodeData"]
        split = node["split"]
        leaf = node["leftChild"] < 0
        if classes is None:
            value: Any = float(node["prediction"])
        else:
            # RandomForestClassificationModel: each tree votes its leaf's class frequencies.
            stats = [float(s) for s in node["impurityStats"]][:classes]
            total = sum(stats)
            value = [s / total for s in stats] if total != 0 else [0.0] * classes
        entry: dict[str, Any] = {
            "id": int(node["id"]),
            "left": int(node["leftChild"]),
            "right": int(node["rightChild"]),
            "value": value,
        }
        if not leaf:
            entry["feature"] = int(split["featureIndex"])
            if int(split["numCategories"]) < 0:
                entry["threshold"] = float(split["leftCategoriesOrThreshold"][0])
            else:
                entry["left_categories"] = [float(c) for c in split["leftCategoriesOrThreshold"]]
        by_tree.setdefault(int(row.get("treeID", 0)), []).append(entry)
    trees = []
    for tree_id in sorted(by_tree):
        nodes = sorted(by_tree[tree_id], key=lambda n: n["id"])
        children = {c for n in nodes for c in (n["left"], n["right"]) if c >= 0}
        root = next(n["id"] for n in nodes if n["id"] not in children)
        trees.append({"root": root, "depth": _depth(nodes, root), "nodes": nodes})
    return trees


def _depth(nodes: Sequence[Mapping[str, Any]], root: int) -> int:
    by_id = {n["id"]: n for n in nodes}
    deepest, stack = 0, [(root, 0)]
    while stack:
        node_id, depth = stack.pop()
        node = by_id[node_id]
        deepest = max(deepest, depth)
        if node["left"] >= 0:
            stack += [(node["left"], depth + 1), (node["right"], depth + 1)]
    return deepest


def _thresholds(stage: Transformer) -> list[float] | None:
    param = stage.getParam("thresholds")
    return [float(t) for t in stage.getOrDefault(param)] if stage.isDefined(param) else None


def _bisecting(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    # Leaves carry the cluster index (0..k-1), inner nodes negative ids.
    nodes: list[dict[str, Any]] = [
        {
            "index": int(r["index"]),
            "center": _vector_values(r["center"]),
            "norm": float(r["norm"]),
            "children": [int(c) for c in r["children"]],
        }
        for r in rows
    ]
    children = {c for n in nodes for c in n["children"]}
    root = next(n["index"] for n in nodes if n["index"] not in children)
    for n in nodes:
        n["leaf_id"] = n["index"] if not n["children"] else -1
    return {"root": root, "nodes": nodes}


def _stage_spec(
    spark: SparkSession, stage: Any, types: dict[str, str], folder: str
) -> dict[str, Any]:
    name = type(stage).__name__
    if name == "SQLTransformer":
        spec = _log1p(stage)
        types.update({c: "double" for c in spec["outputs"]})
        return spec
    if name == "ImputerModel":
        inputs, outputs = _in_out(stage)
        row = stage.surrogateDF.collect()[0].asDict()
        missing = float(_param(stage, "missingValue"))
        out_types = [types.get(c, "double") for c in inputs]
        types.update(dict(zip(outputs, out_types, strict=True)))
        return {
            "type": "imputer",
            "inputs": inputs,
            "outputs": outputs,
            "surrogates": [float(row[c]) for c in inputs],
            "types": out_types,
            "missing_value": None if missing != missing else missing,
        }
    if name == "StringIndexerModel":
        inputs, outputs = _in_out(stage)
        types.update({c: "double" for c in outputs})
        return {
            "type": "string_indexer",
            "inputs": inputs,
            "outputs": outputs,
            "labels": [list(labels) for labels in stage.labelsArray],
            "types": {c: types.get(c, "string") for c in inputs},
            "handle_invalid": _param(stage, "handleInvalid"),
        }
    if name == "OneHotEncoderModel":
        inputs, outputs = _in_out(stage)
        return {
            "type": "one_hot",
            "inputs": inputs,
            "outputs": outputs,
            "category_sizes": [int(s) for s in stage.categorySizes],
            "drop_last": bool(_param(stage, "dropLast")),
            "handle_invalid": _param(stage, "handleInvalid"),
        }
    if name == "VectorAssembler":
        return {
            "type": "assembler",
            "inputs": list(_param(stage, "inputCols")),
            "output": _param(stage, "outputCol"),
        }
    if name == "StandardScalerModel":
        with_mean = bool(_param(stage, "withMean"))
        with_std = bool(_param(stage, "withStd"))
        std = [float(v) for v in stage.std.toArray()]
        return {
            "type": "scaler",
            "input": _param(stage, "inputCol"),
            "output": _param(stage, "outputCol"),
            "mean": [float(v) for v in stage.mean.toArray()] if with_mean else None,
            # Spark multiplies by 1/std (0 where std is 0); without withStd the factor is 1.
            "scale": [(1.0 / s if s != 0 else 0.0) if with_std else 1.0 for s in std],
        }
    if name == "LogisticRegressionModel":
        if stage.numClasses != 2:
            raise UnsupportedStageError("only binary logistic regression can be made portable")
        return {
            "type": "logistic_regression",
            "features": _param(stage, "featuresCol"),
            "coefficients": [float(v) for v in stage.coefficients.toArray()],
            "intercept": float(stage.intercept),
            # pyspark's getThreshold: 1 / (1 + t0 / t1) when thresholds are set, as Scala's.
            "threshold": float(stage.getThreshold()),
        }
    if name == "RandomForestClassificationModel":
        return {
            "type": "random_forest",
            "features": _param(stage, "featuresCol"),
            "num_classes": int(stage.numClasses),
            "thresholds": _thresholds(stage),
            "trees": _trees(_read_saved(spark, stage, folder), classes=int(stage.numClasses)),
        }
    if name == "GBTClassificationModel":
        return {
            "type": "gbt",
            "features": _param(stage, "featuresCol"),
            "thresholds": _thresholds(stage),
            "tree_weights": [float(w) for w in stage.treeWeights],
            "trees": _trees(_read_saved(spark, stage, folder), classes=None),
        }
    if name == "KMeansModel":
        if _param(stage, "distanceMeasure") != "euclidean":
            raise UnsupportedStageError("only euclidean k-means can be made portable")
        return {
            "type": "kmeans",
            "features": _param(stage, "featuresCol"),
            "centers": [[float(v) for v in c] for c in stage.clusterCenters()],
        }
    if name == "BisectingKMeansModel":
        if _param(stage, "distanceMeasure") != "euclidean":
            raise UnsupportedStageError("only euclidean bisecting k-means can be made portable")
        return {
            "type": "bisecting_kmeans",
            "features": _param(stage, "featuresCol"),
            # The wrapped RDD-based model keeps its tree in data/data.
            **_bisecting(_read_saved(spark, stage, folder, "data/data")),
        }
    if name == "GaussianMixtureModel":
        return {
            "type": "gaussian_mixture",
            "features": _param(stage, "featuresCol"),
            "weights": [float(w) for w in stage.weights],
            "gaussians": [
                {"mean": [float(v) for v in row["mean"]], "cov": row["cov"].toArray().tolist()}
                for row in stage.gaussiansDF.collect()
            ],
        }
    raise UnsupportedStageError(f"stage {name} cannot be made portable")


_CLUSTERING = {"kmeans", "bisecting_kmeans", "gaussian_mixture"}


def pipeline_spec(model: Transformer, input_schema: StructType) -> dict[str, Any]:
    """The portable specification of a fitted pipeline.

    Args:
        model: a fitted ``PipelineModel`` (nested pipelines are flattened) or a single model.
        input_schema: the raw input columns the pipeline is applied to (names and Spark types;
            the types decide how categorical values are written as strings and how imputed
            integers are cast).

    Returns:
        A JSON-able dict: ``format``, ``kind`` (``classification`` or ``clustering``),
        ``inputs`` (name and type of each raw column) and ``stages``.

    Raises:
        UnsupportedStageError: a stage or setting the portable form cannot reproduce.
    """
    spark = SparkSession.getActiveSession()
    if spark is None:
        raise RuntimeError("pipeline_spec needs an active Spark session (tree stages are read)")
    types = {f.name: f.dataType.typeName() for f in input_schema.fields}
    inputs = [{"name": f.name, "type": types[f.name]} for f in input_schema.fields]
    folder = tempfile.mkdtemp(prefix="featurelake-portable-")
    try:
        stages = [_stage_spec(spark, s, types, folder) for s in _stages(model)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    final = stages[-1]["type"] if stages else None
    if final not in _CLUSTERING | {"logistic_regression", "random_forest", "gbt"}:
        raise UnsupportedStageError(f"the pipeline must end in a model, not {final!r}")
    return {
        "format": SPEC_FORMAT,
        "kind": "clustering" if final in _CLUSTERING else "classification",
        "inputs": inputs,
        "stages": stages,
    }
