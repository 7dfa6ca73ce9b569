"""What the native backend needs around delta-spark: the JVM view, its errors, SQL text."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pyspark.sql import SparkSession

from featurelake.delta.errors import (
    AlreadyCommittedError,
    ConcurrentWriteError,
    ConstraintViolationError,
    SchemaMismatchError,
    TableIOError,
)
from featurelake.delta.model import (
    AppTransaction,
)

__all__ = [
    "CONFLICTS",
    "SESSION_METADATA_LOCK",
    "conflicts",
    "first_line",
    "jvm",
    "native_delta_available",
    "not_available",
    "sql_literal",
    "sql_path",
    "tokens",
]

# Conflicts delta-spark reports (io.delta.exceptions.*, error classes DELTA_CONCURRENT_*...):
# a concurrent commit won.
CONFLICTS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DELTA_CONCURRENT_",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
)
# MERGE takes its commit metadata from a session setting: one MERGE at a time sets it.
SESSION_METADATA_LOCK = threading.Lock()


def jvm(spark: SparkSession) -> Any:
    """The session's JVM view (delta-spark's log and snapshots have no Python API)."""
    view = spark.sparkContext._jvm  # noqa: SLF001
    assert view is not None, "the Spark session is stopped"
    return view


def native_delta_available(spark: SparkSession) -> bool:
    """True when delta-spark's JVM classes are loaded in this session."""
    try:
        view = jvm(spark)  # the only way to probe the classpath
        view.java.lang.Class.forName(
            "io.delta.tables.DeltaTable", False, view.Thread.currentThread().getContextClassLoader()
        )
        return True
    except Exception:  # noqa: BLE001 - any failure means the classes are not usable
        return False


@contextlib.contextmanager
def conflicts(path: str, txn: AppTransaction | None) -> Iterator[None]:
    """Turn delta-spark's exceptions into the table layer's errors."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - py4j and pyspark wrap the JVM exception
        text = f"{type(exc).__name__}: {exc}"
        concurrent_claim = "ConcurrentTransactionException" in text or (
            "DELTA_CONCURRENT_TRANSACTION" in text
        )
        if concurrent_claim and txn is not None:
            raise AlreadyCommittedError(
                f"{path}: a concurrent writer claimed {txn.app_id} first; nothing of this "
                "write was committed"
            ) from exc
        if any(name in text for name in CONFLICTS):
            raise ConcurrentWriteError(
                f"{path}: a concurrent commit conflicted with this write; nothing was "
                f"committed (retry the job): {first_line(exc)}"
            ) from exc
        # before the constraints: this message also says "condition or constraint"
        if (
            "DELTA_REPLACE_WHERE_MISMATCH" in text
            or "does not conform to partial table overwrite" in text
        ):
            raise ValueError(
                f"{path}: rows outside the partition being replaced: {first_line(exc)}"
            ) from exc
        if "DELTA_VIOLATE_CONSTRAINT" in text or "CHECK constraint" in text:
            raise ConstraintViolationError(
                f"{path}: rows break a CHECK constraint of the table; nothing was committed: "
                f"{first_line(exc)}"
            ) from exc
        if "DELTA_FAILED_TO_MERGE_FIELDS" in text or "schema mismatch" in text.lower():
            raise SchemaMismatchError(f"cannot write to {path}: {first_line(exc)}") from exc
        raise


def tokens(expression: str) -> str:
    return "".join(expression.split())


def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0][:400] if lines else type(exc).__name__


def sql_path(path: str) -> str:
    """The path as the inside of a ``delta.`...``` identifier.

    Delta's SQL takes a path identifier only when it is absolute (``./lakehouse/...`` reads as
    a table name): a local path without a scheme is made absolute first.
    """
    if "://" not in path and not path.startswith("file:"):
        path = os.path.abspath(path)
    return path.replace("`", "``")


def sql_literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, datetime):
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    return "'" + str(value).replace("'", "''") + "'"


def not_available(reason: str) -> TableIOError:
    """The error for ``backend: native`` without delta-spark on the classpath."""
    return TableIOError(
        f"delta.backend is 'native' but delta-spark's classes are not on the classpath "
        f"({reason}); start through ./spark-submit.sh or build_spark_session (they fetch the "
        "jar), or start Spark with --packages io.delta:delta-spark_<spark>_2.13:<version>, "
        "or use 'auto'"
    )
