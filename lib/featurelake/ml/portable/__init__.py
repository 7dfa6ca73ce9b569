"""Spark ML pipelines that score in plain Python: numpy over the fitted parameters.

Modules:
    convert: a fitted ``PipelineModel`` -> a JSON specification of its stages (needs Spark).
    evaluate: :class:`PortablePipeline`, the specification applied to pandas rows with numpy
        (no pyspark import, no JVM).
    pyfunc: logging a pipeline with MLflow's ``spark`` flavour plus a ``python_function``
        flavour that loads the portable form; the loader MLflow calls.

Why numpy over the parameters rather than ONNX: docs/MODELS.md ("Scoring without a JVM").
"""
