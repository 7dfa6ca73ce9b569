"""A write that hangs in its last task, for killing a job after data files, before the commit.

    python tests/slow_write.py BACKEND TABLE_PATH

Appends ids 100..103 (one per partition) to the table with featurelake's table I/O; the task
of id 103 sleeps for ten minutes, so the other three tasks' data files are on disk while the
commit has not happened. The test kills this process group then. Used by test_table_io.py.
"""

from __future__ import annotations

import sys
import time

from featurelake.core.config import DeltaSettings, SparkSettings
from featurelake.core.session import build_spark_session
from featurelake.delta import DeltaTables
from pyspark.sql import functions as F


def _slow_last(value: int) -> int:
    if value == 103:
        time.sleep(600)
    return value


def main() -> None:
    backend, path = sys.argv[1], sys.argv[2]
    spark = build_spark_session(
        "slow-write",
        SparkSettings(master="local[2]", shuffle_partitions=2, log_level="ERROR"),
        DeltaSettings(backend=backend),
    )
    slow = F.udf(_slow_last, "long")
    rows = spark.range(100, 104, numPartitions=4).select(slow("id").alias("k"))
    DeltaTables(spark, backend=backend).write(rows, path, "append")


if __name__ == "__main__":
    main()
