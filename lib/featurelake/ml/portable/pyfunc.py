"""One MLflow model, two flavours: Spark ML for native scoring, numpy for everything else.

:func:`log_spark_pipeline` logs a fitted ``PipelineModel`` with MLflow's ``spark`` flavour (what
``mlflow.spark.load_model`` and featurelake's native scoring load) and points the model's
``python_function`` flavour at :func:`_load_pyfunc` here, which evaluates the pipeline's
parameters (``portable_pipeline.json`` beside the Spark model) with numpy. So the very same
registered version - ``models:/credit_default@champion`` - is scored

* natively by Spark: ``mlflow.spark.load_model(uri).transform(df)``;
* without any JVM by ``mlflow.pyfunc.load_model(uri)`` (the serving API) and by
  ``mlflow.pyfunc.spark_udf(spark, uri, result_type="prediction double, probability double")``
  (Python workers score Arrow batches with numpy instead of starting a nested Spark).

Both give the same predictions (tests/test_portable_models.py checks every algorithm the model
configurations offer). The pyfunc output is a frame of ``prediction`` and ``probability`` (of
class 1; null for clustering).

A pipeline with a stage the portable form cannot reproduce is logged with the Spark flavour's own
pyfunc, as before (a warning says which stage).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import pandas as pd

from featurelake.ml.portable.evaluate import SPEC_FORMAT, PortablePipeline

__all__ = [
    "LOADER_MODULE",
    "PORTABLE_FILE",
    "PortablePyfunc",
    "log_spark_pipeline",
    "portable_signature",
]

log = logging.getLogger(__name__)

PORTABLE_FILE = "portable_pipeline.json"
LOADER_MODULE = "featurelake.ml.portable.pyfunc"
FLAVOR = "featurelake_portable"


class PortablePyfunc:
    """What ``mlflow.pyfunc.load_model`` returns for a portable model (via its wrapper)."""

    def __init__(self, pipeline: PortablePipeline) -> None:
        self.pipeline = pipeline

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return self.pipeline.predict(frame)


def _load_pyfunc(data_path: str) -> PortablePyfunc:
    """MLflow's loader entry point: ``data_path`` is the model's ``portable_pipeline.json``."""
    with open(data_path, encoding="utf-8") as handle:
        return PortablePyfunc(PortablePipeline(json.load(handle)))


def portable_signature(input_schema: Any) -> Any:
    """The model signature: every input optional, numbers as doubles, and the two outputs.

    Numbers are declared double because a Spark integer column with nulls reaches a Python
    worker as a nullable integer that MLflow's schema enforcement will not pass as an integer;
    the portable specification keeps each column's real type for its casts.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    def spec(field: Any) -> Any:
        type_name = field.dataType.typeName()
        mlflow_type = {"string": "string", "boolean": "boolean"}.get(type_name, "double")
        return ColSpec(mlflow_type, field.name, required=False)

    return ModelSignature(
        inputs=Schema([spec(f) for f in input_schema.fields]),
        outputs=Schema([ColSpec("double", "prediction"), ColSpec("double", "probability")]),
    )


class _Flavor:
    """A flavour module for ``Model.log``: the Spark flavour plus the portable pyfunc."""

    @staticmethod
    def save_model(
        spark_model: Any,
        path: str,
        mlflow_model: Any = None,
        *,
        portable_spec: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        import mlflow.spark
        from mlflow.models import Model

        mlflow_model = mlflow_model if mlflow_model is not None else Model()
        mlflow.spark.save_model(spark_model, path, mlflow_model=mlflow_model, **kwargs)
        with open(os.path.join(path, PORTABLE_FILE), "w", encoding="utf-8") as handle:
            json.dump(portable_spec, handle)
        spark_pyfunc = mlflow_model.flavors["python_function"]
        mlflow_model.flavors["python_function"] = {
            "loader_module": LOADER_MODULE,
            "data": PORTABLE_FILE,
            **{k: spark_pyfunc[k] for k in ("env", "python_version") if k in spark_pyfunc},
        }
        mlflow_model.flavors[FLAVOR] = {"data": PORTABLE_FILE, "format": SPEC_FORMAT}
        mlflow_model.save(os.path.join(path, "MLmodel"))


def log_spark_pipeline(
    model: Any,
    example: Any,
    *,
    name: str = "model",
    pip_requirements: Sequence[str] | None = None,
) -> Any:
    """Log a fitted Spark pipeline with both flavours (see the module docstring).

    Args:
        model: the fitted ``PipelineModel`` (raw input columns in, ``prediction`` out).
        example: a few rows of the raw input columns (a Spark DataFrame): its schema is the
            model's input schema; its rows are the input example.
        name: the model's name in the run.
        pip_requirements: the model's requirements.

    Returns:
        MLflow's ``ModelInfo`` (``model_uri`` is what registration takes).
    """
    import mlflow
    import mlflow.spark
    from mlflow.models import Model, infer_signature

    from featurelake.ml.portable.convert import UnsupportedStageError, pipeline_spec

    rows = example.toPandas()
    try:
        spec = pipeline_spec(model, example.schema)
    except UnsupportedStageError as exc:
        log.warning("portable_model_skipped", extra={"fields": {"reason": str(exc)}})
        signature = infer_signature(example, model.transform(example).select("prediction"))
        return mlflow.spark.log_model(
            model,
            name,
            signature=signature,
            input_example=rows,
            pip_requirements=list(pip_requirements or []),
        )
    return Model.log(
        artifact_path=None,
        name=name,
        flavor=_Flavor,
        spark_model=model,
        portable_spec=spec,
        signature=portable_signature(example.schema),
        input_example=rows,
        pip_requirements=list(pip_requirements or []),
    )
