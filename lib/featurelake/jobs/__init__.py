"""The jobs: one module each, with ``main(ctx, args)`` and ``add_arguments(parser)``.

The registry maps a job's name (``bronze``, ``full-pipeline``) to its module, imported when
the job runs. ``featurelake <job>`` (:mod:`featurelake.cli`), the spark-submit entry points in
``jobs/`` and the pipeline runner all start jobs through :func:`load_job`.

Example:
    >>> job = load_job("silver")
    >>> job.run(["--table", "transactions"])  # exit code
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from pyspark.sql import SparkSession

from featurelake.core.errors import UserError

__all__ = ["Job", "UnknownJobError", "job_names", "load_job"]

# job name -> module in this package
_MODULES = {
    "generate-data": "generate_data",
    "bronze": "bronze",
    "silver": "silver",
    "gold": "gold",
    "feature-pipeline": "feature_pipeline",
    "features": "features",
    "training-set": "training_set",
    "train-segmentation": "train_segmentation",
    "train-classifier": "train_classifier",
    "retrain-check": "retrain_check",
    "promote": "promote",
    "training-pipeline": "training_pipeline",
    "score": "score",
    "inference-pipeline": "inference_pipeline",
    "materialize": "materialize",
    "stream": "stream",
    "monitor": "monitor",
    "serve": "serve",
    "tables": "tables",
    "full-pipeline": "full_pipeline",
}


class UnknownJobError(UserError):
    """No job has this name."""


@dataclass(frozen=True)
class Job:
    """A job: its name, module, one-line summary and how it runs.

    Attributes:
        name: the job's name (``full-pipeline``).
        module: the module holding ``main`` and ``add_arguments`` (or ``run`` for a job that
            needs no Spark session, like ``serve``).
        summary: the module docstring's first line.
    """

    name: str
    module: ModuleType

    @property
    def summary(self) -> str:
        return (self.module.__doc__ or "").strip().splitlines()[0]

    @property
    def main(self) -> Callable[..., Any]:
        return self.module.main

    @property
    def add_arguments(self) -> Callable[[argparse.ArgumentParser], None] | None:
        return getattr(self.module, "add_arguments", None)

    def run(self, argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
        """Run the job with command-line arguments; its exit code.

        Args:
            argv: the job's arguments (``--env``, ``--conf``... and its own).
            spark: a session to run in (tests, the pipeline); built from settings otherwise.
        """
        own_runner = getattr(self.module, "run", None)
        if own_runner is not None:  # a job without a Spark session
            return int(own_runner(argv))
        from featurelake.core.runner import run_job

        return run_job(
            self.name, self.main, argv=argv, add_arguments=self.add_arguments, spark=spark
        )


def job_names() -> list[str]:
    """Every job's name, in pipeline order."""
    return list(_MODULES)


def load_job(name: str) -> Job:
    """The job called ``name`` (``full-pipeline`` or ``full_pipeline``).

    Raises:
        UnknownJobError: no such job; the message lists the jobs.
    """
    key = name.replace("_", "-")
    if key not in _MODULES:
        raise UnknownJobError(f"unknown job {name!r}; jobs: {', '.join(_MODULES)}")
    return Job(key, importlib.import_module(f"featurelake.jobs.{_MODULES[key]}"))
