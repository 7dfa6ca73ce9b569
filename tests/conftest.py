"""Shared fixtures: one local Spark session for the whole test run."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from featurelake.core.config import DeltaSettings, SparkSettings
from featurelake.core.jvm_packages import kafka_coordinates
from featurelake.core.session import build_spark_session
from featurelake.lakehouse.connectors import POSTGRESQL_DRIVER_PACKAGE
from pyspark.sql import SparkSession

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"

# In a pytest-xdist worker, __main__ is the bootstrap code the worker was started with (no
# __spec__, no __file__). pyspark.sql.connect takes such a process for a doctest run and calls
# sys.exit(0) on import when Spark Connect's optional packages are absent - which MLflow's Spark
# flavour imports when it saves a model. Name the worker's __main__ as a script's would be.
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = "<pytest worker>"


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    # Jobs run by the tests log JSON lines on stderr (tests read them); the human console has
    # its own tests.
    os.environ.setdefault("FEATURELAKE_LOG_FORMAT", "json")
    session = build_spark_session(
        "featurelake-tests",
        SparkSettings(
            master="local[2]",
            shuffle_partitions=2,
            log_level="ERROR",
            conf={
                "spark.default.parallelism": "2",
                "spark.sql.adaptive.coalescePartitions.enabled": "true",
                # the JDBC source tests' driver and Spark's Kafka connector for the streaming
                # tests (fetched once into the jar cache; without them they skip, saying why)
                "spark.jars.packages": ",".join([POSTGRESQL_DRIVER_PACKAGE, *kafka_coordinates()]),
            },
        ),
        DeltaSettings(),
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets in ../shared/data; tests using them skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


# The test files that take longest in all (minutes each on two cores), slowest first. Under
# `./test.sh` each file runs whole in one of two workers, handed out in collection order as
# workers free up: starting with these, the workers end together instead of one running a long
# file alone at the end.
_LONGEST_FILES = (
    "test_streaming.py",
    "test_segmentation.py",
    "test_monitoring_job.py",
    "test_classification.py",
    "test_silver.py",
    "test_spark_submit.py",
    "test_bronze_jdbc.py",
    "test_scoring.py",
    "test_bronze.py",
    "test_fuzz_silver.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the longest test files first (a stable sort: the order within a file is kept)."""
    rank = {name: index for index, name in enumerate(_LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
