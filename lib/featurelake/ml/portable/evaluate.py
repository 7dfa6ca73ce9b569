"""Evaluate a fitted Spark ML pipeline's parameters with numpy: no JVM, no Spark.

:class:`PortablePipeline` takes the specification :mod:`.convert` extracted from a fitted
``PipelineModel`` (a JSON-able dict) and applies its stages to a pandas frame of raw input
columns, in the same order and with the same arithmetic as Spark's own ``transform``:

* ``log1p`` - the segmentation pipeline's ``SQLTransformer``: ``ln(1 + greatest(x, 0))``, where
  a null ``x`` gives 0 (Spark's ``greatest`` skips nulls);
* ``imputer`` - null or NaN becomes the fitted surrogate, cast back to the column's type (an
  integer column's median is truncated, as Spark's ``cast`` does);
* ``string_indexer`` - values as Spark casts them to strings; unseen values and nulls go to the
  extra bucket (``handleInvalid: keep``);
* ``one_hot`` - Spark's category sizes, ``dropLast`` and ``handleInvalid`` rules;
* ``assembler`` - columns concatenated into one matrix (dense; the values are the same);
* ``scaler`` - ``(x - mean) * (1 / std)`` with a zero std giving 0, as Spark multiplies;
* ``logistic_regression``, ``random_forest``, ``gbt`` - margins, per-tree class frequencies summed
  tree by tree, GBT's ``1 / (1 + exp(2 m))``, and Spark's threshold rules for the prediction;
* ``kmeans``, ``bisecting_kmeans`` - Spark's squared distance (its fast norm formula where its
  precision bound allows it, else the exact one), ties to the lower index;
* ``gaussian_mixture`` - ``EPSILON + w_i * pdf_i(x)`` normalised, the pdf from the covariance's
  eigen-decomposition (pseudo-inverse) as Spark's ``MultivariateGaussian`` computes it.

Null and NaN inputs are not distinguished here (pandas holds both as NaN); both are treated as
SQL nulls. The ``score`` job quarantines rows with a null or NaN feature before any model sees
them.

This module imports only numpy and pandas, so a serving process or a Python worker loads it
without pyspark.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["SPEC_FORMAT", "PortablePipeline", "UnsupportedSpecError"]

SPEC_FORMAT = "featurelake.portable-pipeline/1"

# Spark's MLUtils.EPSILON: the machine epsilon it computes by halving.
_EPSILON = float(np.finfo(np.float64).eps)
# Spark's fastSquaredDistance precision.
_PRECISION = 1e-6
_INTEGRAL = {"byte", "short", "integer", "int", "long", "bigint", "tinyint", "smallint"}
_FLOATS = {"double", "float"}


class UnsupportedSpecError(ValueError):
    """A specification of another format version, or with a stage this module cannot apply."""


Columns = dict[str, np.ndarray]


def _numeric(values: pd.Series | Sequence[Any]) -> np.ndarray:
    if isinstance(values, pd.Series):
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.fromiter(
        (np.nan if v is None else float(v) for v in values), dtype=np.float64, count=len(values)
    )


def _items(values: pd.Series | Sequence[Any]) -> list[Any]:
    return values.tolist() if isinstance(values, pd.Series) else list(values)


def _java_double_text(value: float) -> str:
    # Java's Double.toString, which Spark's cast to string uses: plain between 1e-3 and 1e7,
    # else d.dddE±n, always with a fractional part.
    if value == 0.0 or (1e-3 <= abs(value) < 1e7):
        text = repr(float(value))
        return text if "e" not in text else format(float(value), "f")
    if np.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    mantissa, exponent = np.format_float_scientific(value, unique=True, trim="0").split("e")
    if mantissa.endswith("."):
        mantissa += "0"
    return f"{mantissa}E{int(exponent)}"


def _as_text(values: pd.Series | Sequence[Any], spark_type: str) -> np.ndarray:
    """Values as Spark's ``CAST(x AS STRING)`` writes them; None for nulls."""
    out = np.empty(len(values), dtype=object)
    if spark_type in _INTEGRAL:
        numbers = _numeric(values)
        for i, v in enumerate(numbers):
            out[i] = None if np.isnan(v) else str(int(v))
    elif spark_type in _FLOATS:
        numbers = _numeric(values)
        for i, v in enumerate(numbers):
            out[i] = None if np.isnan(v) else ("NaN" if np.isnan(v) else _java_double_text(v))
    elif spark_type == "boolean":
        for i, v in enumerate(_items(values)):
            out[i] = None if v is None or v is pd.NA or v != v else ("true" if v else "false")
    else:
        for i, v in enumerate(_items(values)):
            out[i] = (
                None if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v)
            )
    return out


def _tree_arrays(trees: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Every tree's nodes in one set of arrays; a leaf points to itself."""
    feature, threshold, left, right, leaf, categorical, masks = [], [], [], [], [], [], []
    values: list[Any] = []
    roots: list[int] = []
    depth = 0
    offset = 0
    for tree in trees:
        nodes = tree["nodes"]
        index = {n["id"]: offset + i for i, n in enumerate(nodes)}
        roots.append(index[tree["root"]])
        depth = max(depth, int(tree["depth"]))
        for n in nodes:
            here = index[n["id"]]
            is_leaf = n["left"] < 0
            leaf.append(is_leaf)
            values.append(n["value"])
            if is_leaf:
                feature.append(0)
                threshold.append(0.0)
                left.append(here)
                right.append(here)
                categorical.append(False)
                masks.append(0)
                continue
            feature.append(int(n["feature"]))
            left.append(index[n["left"]])
            right.append(index[n["right"]])
            if n.get("left_categories") is None:
                threshold.append(float(n["threshold"]))
                categorical.append(False)
                masks.append(0)
            else:
                cats = [int(c) for c in n["left_categories"]]
                if any(c < 0 or c > 62 for c in cats):
                    raise UnsupportedSpecError("categorical splits over more than 63 categories")
                threshold.append(0.0)
                categorical.append(True)
                masks.append(sum(1 << c for c in cats))
        offset += len(nodes)
    return {
        "feature": np.asarray(feature, dtype=np.int64),
        "threshold": np.asarray(threshold, dtype=np.float64),
        "left": np.asarray(left, dtype=np.int64),
        "right": np.asarray(right, dtype=np.int64),
        "leaf": np.asarray(leaf, dtype=bool),
        "categorical": np.asarray(categorical, dtype=bool),
        "mask": np.asarray(masks, dtype=np.int64),
        "values": np.asarray(values, dtype=np.float64),
        "roots": np.asarray(roots, dtype=np.int64),
        "depth": np.asarray(depth),
    }


def _leaves(x: np.ndarray, t: Mapping[str, np.ndarray]) -> np.ndarray:
    """The leaf each row reaches in each tree: shape (rows, trees)."""
    nodes = np.broadcast_to(t["roots"], (x.shape[0], t["roots"].size)).copy()
    has_categorical = bool(t["categorical"].any())
    for _ in range(int(t["depth"]) + 1):
        if t["leaf"][nodes].all():
            break
        value = np.take_along_axis(x, t["feature"][nodes], axis=1)
        # Spark: a continuous split goes left when value <= threshold; a categorical one when
        # the value is one of the left categories.
        go_left = value <= t["threshold"][nodes]
        if has_categorical:
            category = np.clip(np.nan_to_num(value, nan=63.0), 0, 63).astype(np.int64)
            in_left = ((t["mask"][nodes] >> category) & 1).astype(bool) & (category == value)
            go_left = np.where(t["categorical"][nodes], in_left, go_left)
        nodes = np.where(go_left, t["left"][nodes], t["right"][nodes])
    return nodes


def _fast_squared_distances(
    x: np.ndarray, centers: np.ndarray, center_norms: np.ndarray
) -> np.ndarray:
    """Spark's ``fastSquaredDistance`` from every row to every center: shape (rows, centers)."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    out = np.empty((x.shape[0], centers.shape[0]), dtype=np.float64)
    for j in range(centers.shape[0]):
        c, cn = centers[j], center_norms[j]
        sum_squared = cn * cn + norms * norms
        norm_diff = cn - norms
        bound = 2.0 * _EPSILON * sum_squared / (norm_diff * norm_diff + _EPSILON)
        fast = sum_squared - 2.0 * (x @ c)
        exact = ((x - c) ** 2).sum(axis=1)
        out[:, j] = np.where(bound < _PRECISION, fast, exact)
    return out


class PortablePipeline:
    """A fitted Spark ML pipeline, evaluated with numpy.

    Args:
        spec: the specification from :func:`featurelake.ml.portable.convert.pipeline_spec`.

    Raises:
        UnsupportedSpecError: another format version, or an unknown stage.

    Example:
        >>> model = PortablePipeline(spec)
        >>> model.predict(pd.DataFrame({"x1": [0.2], "x2": [0.9]}))
           prediction  probability
        0         1.0     0.8123...
    """

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if spec.get("format") != SPEC_FORMAT:
            raise UnsupportedSpecError(
                f"specification format {spec.get('format')!r}; this featurelake reads "
                f"{SPEC_FORMAT!r}"
            )
        self.spec = spec
        self.kind: str = spec["kind"]
        self.inputs: list[dict[str, str]] = list(spec["inputs"])
        self._types = {c["name"]: c["type"] for c in self.inputs}
        self._stages = [self._prepare(dict(s)) for s in spec["stages"]]

    @property
    def input_columns(self) -> list[str]:
        return [c["name"] for c in self.inputs]

    def _prepare(self, stage: dict[str, Any]) -> dict[str, Any]:
        kind = stage["type"]
        if kind in ("random_forest", "gbt"):
            stage["arrays"] = _tree_arrays(stage["trees"])
            stage["weights"] = np.asarray(stage.get("tree_weights") or [], dtype=np.float64)
        elif kind in ("kmeans", "bisecting_kmeans"):
            for key in ("centers",):
                if key in stage:
                    stage[key] = np.asarray(stage[key], dtype=np.float64)
            if kind == "bisecting_kmeans":
                for node in stage["nodes"]:
                    node["center"] = np.asarray(node["center"], dtype=np.float64)
        elif kind == "gaussian_mixture":
            stage["_gaussians"] = [self._gaussian(g) for g in stage["gaussians"]]
        elif kind == "logistic_regression":
            stage["coefficients"] = np.asarray(stage["coefficients"], dtype=np.float64)
        elif kind == "scaler":
            stage["scale"] = np.asarray(stage["scale"], dtype=np.float64)
            if stage.get("mean") is not None:
                stage["mean"] = np.asarray(stage["mean"], dtype=np.float64)
        elif kind not in ("log1p", "imputer", "string_indexer", "one_hot", "assembler"):
            raise UnsupportedSpecError(f"unknown stage type {kind!r}")
        return stage

    @staticmethod
    def _gaussian(g: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, float]:
        mean = np.asarray(g["mean"], dtype=np.float64)
        cov = np.asarray(g["cov"], dtype=np.float64)
        # Spark's MultivariateGaussian: pseudo-inverse square root of the covariance from its
        # eigen-decomposition, eigenvalues at or below tol ignored.
        eigenvalues, vectors = np.linalg.eigh(cov)
        tol = _EPSILON * float(eigenvalues.max()) * eigenvalues.size
        kept = eigenvalues > tol
        log_pseudo_det = float(np.log(eigenvalues[kept]).sum())
        inv_sqrt = np.where(kept, np.sqrt(1.0 / np.where(kept, eigenvalues, 1.0)), 0.0)
        root_sigma_inv = inv_sqrt[:, None] * vectors.T
        u = -0.5 * (mean.size * np.log(2.0 * np.pi) + log_pseudo_det)
        return root_sigma_inv, root_sigma_inv @ mean, u

    # ---------------------------------------------------------------------------------------

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Score raw input rows.

        Args:
            frame: one column per input (see :attr:`input_columns`); other columns are ignored.

        Returns:
            ``prediction`` (float) and ``probability`` (of class 1; NaN for clustering), one
            row per input row, with the input's index.

        Raises:
            KeyError: an input column is missing.
        """
        prediction, probability = self.predict_columns(frame, len(frame))
        return pd.DataFrame(
            {"prediction": prediction, "probability": probability}, index=frame.index
        )

    def predict_columns(
        self, columns: Mapping[str, Any] | pd.DataFrame, rows: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score ``rows`` rows given as columns (lists or Series; None for a null).

        The serving path: no pandas frame is built for a handful of rows.

        Returns:
            (prediction, probability) arrays.

        Raises:
            KeyError: an input column is missing.
        """
        present = list(columns.keys())
        missing = [c for c in self.input_columns if c not in present]
        if missing:
            raise KeyError(f"missing input columns {missing}; present: {present}")
        cols: dict[str, Any] = {}
        for name, spark_type in self._types.items():
            if spark_type in _INTEGRAL or spark_type in _FLOATS:
                cols[name] = _numeric(columns[name])
            else:
                cols[name] = columns[name]
        prediction = np.full(rows, np.nan)
        probability = np.full(rows, np.nan)
        for stage in self._stages:
            out = getattr(self, f"_{stage['type']}")(stage, cols, rows)
            if out is not None:
                prediction, probability = out
        return prediction, probability

    # --- feature stages ------------------------------------------------------------------------

    def _log1p(self, stage: Mapping[str, Any], cols: dict[str, Any], n: int) -> None:
        for source, target in zip(stage["inputs"], stage["outputs"], strict=True):
            x = np.asarray(cols[source], dtype=np.float64)
            # greatest(null, 0.0) is 0.0 in Spark SQL: a null becomes ln(1) = 0.
            cols[target] = np.log(1.0 + np.maximum(np.nan_to_num(x, nan=0.0), 0.0))

    def _imputer(self, stage: Mapping[str, Any], cols: dict[str, Any], n: int) -> None:
        for source, target, surrogate, spark_type in zip(
            stage["inputs"], stage["outputs"], stage["surrogates"], stage["types"], strict=True
        ):
            x = np.asarray(cols[source], dtype=np.float64)
            missing = np.isnan(x)
            if stage.get("missing_value") is not None and not np.isnan(stage["missing_value"]):
                missing |= x == float(stage["missing_value"])
            filled = np.where(missing, float(surrogate), x)
            # ImputerModel casts the result back to the input column's type.
            if spark_type in _INTEGRAL:
                filled = np.trunc(filled)
            elif spark_type == "float":
                filled = filled.astype(np.float32).astype(np.float64)
            cols[target] = filled

    def _string_indexer(self, stage: Mapping[str, Any], cols: dict[str, Any], n: int) -> None:
        for source, target, labels in zip(
            stage["inputs"], stage["outputs"], stage["labels"], strict=True
        ):
            spark_type = stage["types"][source]
            lookup = {label: float(i) for i, label in enumerate(labels)}
            unseen = float(len(labels))
            if spark_type in _INTEGRAL or spark_type in _FLOATS:
                # Numbers: each distinct value written as text once, then broadcast back.
                x = np.asarray(cols[source], dtype=np.float64)
                index = np.full(n, unseen)
                present = ~np.isnan(x)
                distinct, inverse = np.unique(x[present], return_inverse=True)
                texts = _as_text(list(distinct), spark_type)
                index[present] = np.asarray(
                    [lookup.get(t, unseen) for t in texts], dtype=np.float64
                )[inverse]
                unknown = [t for t in texts if t not in lookup]
            else:
                texts = _as_text(cols[source], spark_type)
                index = np.fromiter(
                    (lookup.get(t, unseen) if t is not None else unseen for t in texts),
                    dtype=np.float64,
                    count=n,
                )
                unknown = [t for t in texts if t not in lookup]
                if any(t is None for t in texts):
                    unknown.append(None)
            if stage["handle_invalid"] != "keep" and (unknown or (index == unseen).any()):
                raise ValueError(
                    f"{source}: a value was not seen in training (or is null) and the "
                    f"indexer's handleInvalid is {stage['handle_invalid']!r}"
                )
            cols[target] = index

    def _one_hot(self, stage: Mapping[str, Any], cols: dict[str, Any], n: int) -> None:
        keep = stage["handle_invalid"] == "keep"
        drop_last = stage["drop_last"]
        for source, target, category_size in zip(
            stage["inputs"], stage["outputs"], stage["category_sizes"], strict=True
        ):
            if not drop_last and keep:
                size = category_size + 1
            elif drop_last and not keep:
                size = category_size - 1
            else:
                size = category_size
            label = np.asarray(cols[source], dtype=np.float64)
            valid = (label >= 0) & (label < category_size)
            if not keep and not valid.all():
                raise ValueError(f"{source}: category index outside 0..{category_size - 1}")
            index = np.where(valid, label, float(category_size)).astype(np.int64)
            matrix = np.zeros((n, size), dtype=np.float64)
            rows = np.nonzero(index < size)[0]
            matrix[rows, index[rows]] = 1.0
            cols[target] = matrix

    def _assembler(self, stage: Mapping[str, Any], cols: dict[str, Any], n: int) -> None:
        parts = []
        for source in stage["inputs"]:
            value = np.asarray(cols[source], dtype=np.float64)
            parts.append(value.reshape(n, -1) if value.ndim > 1 else value.reshape(n, 1))
        cols[stage["output"]] = np.hstack(parts) if parts else np.zeros((n, 0))

    def _scaler(self, stage: Mapping[str, Any], cols: dict[str, Any], n: int) -> None:
        x = np.asarray(cols[stage["input"]], dtype=np.float64)
        if stage.get("mean") is not None:
            x = x - stage["mean"]
        cols[stage["output"]] = x * stage["scale"]

    # --- models -------------------------------------------------------------------------------

    @staticmethod
    def _by_thresholds(probabilities: np.ndarray, thresholds: Sequence[float] | None) -> np.ndarray:
        """ProbabilisticClassificationModel.probability2prediction: argmax of p_i / t_i."""
        if not thresholds:
            return np.argmax(probabilities, axis=1).astype(np.float64)
        t = np.asarray(thresholds, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = probabilities / t
        best = np.full(probabilities.shape[0], -np.inf)
        winner = np.zeros(probabilities.shape[0])
        for i in range(probabilities.shape[1]):
            better = scaled[:, i] > best
            winner = np.where(better, float(i), winner)
            best = np.where(better, scaled[:, i], best)
        return winner

    def _logistic_regression(
        self, stage: Mapping[str, Any], cols: dict[str, Any], n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(cols[stage["features"]], dtype=np.float64)
        margin = x @ stage["coefficients"] + float(stage["intercept"])
        with np.errstate(over="ignore"):  # exp overflows to inf: P = 0, as in Java
            probability = 1.0 / (1.0 + np.exp(-margin))
        # LogisticRegressionModel (binary): 1 when P(1) > threshold.
        prediction = (probability > float(stage["threshold"])).astype(np.float64)
        return prediction, probability

    def _random_forest(
        self, stage: Mapping[str, Any], cols: dict[str, Any], n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(cols[stage["features"]], dtype=np.float64)
        t = stage["arrays"]
        leaves = _leaves(x, t)
        # Each leaf's value is its class frequencies (counts / their sum), summed tree by tree
        # in Spark's order, then normalised.
        votes = np.zeros((n, stage["num_classes"]), dtype=np.float64)
        for j in range(leaves.shape[1]):
            votes += t["values"][leaves[:, j]]
        total = votes[:, 0].copy()
        for i in range(1, votes.shape[1]):
            total += votes[:, i]
        probabilities = votes / total[:, None]
        prediction = self._by_thresholds(probabilities, stage.get("thresholds"))
        return prediction, probabilities[:, 1]

    def _gbt(
        self, stage: Mapping[str, Any], cols: dict[str, Any], n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(cols[stage["features"]], dtype=np.float64)
        t = stage["arrays"]
        leaves = _leaves(x, t)
        margin = np.zeros(n, dtype=np.float64)
        for j in range(leaves.shape[1]):
            margin += stage["weights"][j] * t["values"][leaves[:, j]]
        # GBTClassificationModel: rawPrediction (-m, m); p0 = 1 / (1 + exp(2m)), p1 = 1 - p0.
        with np.errstate(over="ignore"):
            p0 = 1.0 / (1.0 + np.exp(-2.0 * -margin))
        p1 = 1.0 - p0
        if stage.get("thresholds"):
            prediction = self._by_thresholds(np.column_stack([p0, p1]), stage["thresholds"])
        else:
            prediction = (margin > 0.0).astype(np.float64)
        return prediction, p1

    def _kmeans(
        self, stage: Mapping[str, Any], cols: dict[str, Any], n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(cols[stage["features"]], dtype=np.float64)
        centers = stage["centers"]
        distances = _fast_squared_distances(x, centers, np.sqrt((centers**2).sum(axis=1)))
        return np.argmin(distances, axis=1).astype(np.float64), np.full(n, np.nan)

    def _bisecting_kmeans(
        self, stage: Mapping[str, Any], cols: dict[str, Any], n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(cols[stage["features"]], dtype=np.float64)
        nodes = {node["index"]: node for node in stage["nodes"]}
        current = np.full(n, stage["root"], dtype=np.int64)
        # Down the tree: at each inner node the child with the smaller cost (first on a tie).
        while True:
            inner = [i for i in np.unique(current) if nodes[int(i)]["children"]]
            if not inner:
                break
            for index in inner:
                rows = np.nonzero(current == index)[0]
                children = nodes[int(index)]["children"]
                centers = np.vstack([nodes[c]["center"] for c in children])
                norms = np.asarray([nodes[c]["norm"] for c in children], dtype=np.float64)
                cost = _fast_squared_distances(x[rows], centers, norms)
                current[rows] = np.asarray(children, dtype=np.int64)[np.argmin(cost, axis=1)]
        leaf_ids = np.asarray([nodes[int(i)]["leaf_id"] for i in current], dtype=np.float64)
        return leaf_ids, np.full(n, np.nan)

    def _gaussian_mixture(
        self, stage: Mapping[str, Any], cols: dict[str, Any], n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(cols[stage["features"]], dtype=np.float64)
        weights = stage["weights"]
        p = np.empty((n, len(weights)), dtype=np.float64)
        for i, (root_sigma_inv, root_sigma_inv_mu, u) in enumerate(stage["_gaussians"]):
            v = x @ root_sigma_inv.T - root_sigma_inv_mu
            logpdf = u - 0.5 * np.einsum("ij,ij->i", v, v)
            with np.errstate(over="ignore", under="ignore"):
                p[:, i] = _EPSILON + float(weights[i]) * np.exp(logpdf)
        total = p[:, 0].copy()
        for i in range(1, p.shape[1]):
            total += p[:, i]
        p /= total[:, None]
        return np.argmax(p, axis=1).astype(np.float64), np.full(n, np.nan)
