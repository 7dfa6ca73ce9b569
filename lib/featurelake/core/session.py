"""The one place a SparkSession is built, and how driver-side values are handed to Spark.

``local_frame`` builds small frames through Arrow; ``run_constant`` gives a run's own time to
a query without compiling it into the query's generated code.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from pyspark import SparkConf
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from featurelake.core.config import DeltaSettings, SparkSettings

__all__ = ["PACKAGES_KEY", "arrow_rows", "build_spark_session", "local_frame", "run_constant"]

log = logging.getLogger(__name__)

# Maven coordinates (comma-separated) in the spark settings' conf, fetched before the JVM starts.
PACKAGES_KEY = "spark.jars.packages"
_CLASSPATH_KEYS = frozenset({PACKAGES_KEY, "spark.jars"})


def build_spark_session(
    app_name: str, settings: SparkSettings, delta: DeltaSettings | None = None
) -> SparkSession:
    """Build (or return the running) SparkSession for a job.

    The master comes from ``spark-submit --master`` when it set one; otherwise from
    ``settings.master``. The session time zone is UTC and Parquet timestamps are written as
    microseconds so that every Delta reader (delta-rs, polars, duckdb) can read them.

    In a plain Python process (tests, notebooks, ``featurelake <job>``) that starts the JVM
    itself, delta-spark's jars are resolved from the local cache or Maven Central
    (:mod:`featurelake.core.jvm_packages`) unless ``delta.backend`` is ``delta-rs``; when they
    cannot be had, one warning says why and the tables use delta-rs. The Maven coordinates in
    ``settings.conf["spark.jars.packages"]`` (where the configuration check puts the JDBC
    drivers of declared sources) are resolved the same way, ahead of the JVM; packages that
    cannot be had are left out with one warning (a JDBC source then fails saying why). Under
    ``spark-submit`` the JVM is already running: ``spark-submit.sh`` resolved them.

    Args:
        app_name: shown in the Spark UI and logs; the job name.
        settings: the validated ``spark`` section of the configuration.
        delta: the ``delta`` section; None starts Spark without delta-spark.

    Returns:
        The SparkSession.
    """
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit the driver attaches to a running JVM gateway whose master came from
    # --master; only a plain Python process (tests, notebooks) takes settings.master.
    starts_jvm = "PYSPARK_GATEWAY_PORT" not in os.environ and not SparkConf().contains(
        "spark.master"
    )
    if starts_jvm and SparkSession.getActiveSession() is None:
        builder = _with_jvm_packages(builder, delta, settings.conf)
    if starts_jvm:
        builder = builder.master(settings.master)
        # Python workers must run this interpreter (with pandas, mlflow...), not whatever
        # `python3` is on PATH. PySpark reads only the environment variable for this (not
        # spark.pyspark.python), so it is set here, once, when the session is built;
        # spark-submit.sh sets it itself for submitted jobs.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    options = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions),
        "spark.ui.enabled": str(settings.ui_enabled).lower(),
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.sources.partitionOverwriteMode": "static",
        # Spark's _SUCCESS marker is not a data file; Delta's log is the commit record.
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.sql.adaptive.enabled": "true",
        # wide silver/gold plans would otherwise log a truncation warning on every job
        "spark.sql.debug.maxToStringFields": "500",
        # Constraint propagation substitutes every alias of a wide silver plan (25 parsed
        # columns, each cleaned, parsed, normalised and checked) into the filters it infers:
        # the optimizer then needs gigabytes and minutes. It only adds inferred filters (such as
        # IS NOT NULL on join keys); results are the same without it.
        "spark.sql.constraintPropagation.enabled": "false",
        # PySpark's DataFrame debugging records the Python call site of every Column and
        # DataFrame call, at the price of two extra JVM round trips per call: building one
        # silver table's plan (thousands of calls) spent more than a second there. Our errors
        # name the table and rule themselves; set it back to true in spark.conf to debug.
        "spark.python.sql.dataFrameDebugging.enabled": "false",
        # Spark keeps the classes it generates and compiles for a plan, and reuses them when a
        # later job generates the same code. One bronze -> silver -> gold run generates about
        # 140 classes, more than the default 100 of this cache: a driver running the jobs
        # again (full-pipeline, notebooks, the bench) compiled them all every time (1.5 s a
        # run at 1M transactions; 0.65 s with this, what is left being plans whose literals,
        # such as the run's as-of time, change).
        "spark.sql.codegen.cache.maxEntries": "1000",
        # HotSpot does not compile a method of more than 8,000 bytes of bytecode; it runs it
        # interpreted. Spark's default limit lets whole-stage code reach 65,535 bytes, and the
        # credit clients' silver stages (25 columns parsed, normalised and checked) generate
        # methods of 19,000 and 31,000 bytes. At HotSpot's limit Spark generates those stages'
        # code per operator instead, as Spark's configuration guide suggests for HotSpot:
        # writing that silver table took 0.65 s against 0.86 s, and its quarantine 0.40 s
        # against 0.54 s. Stages of smaller methods are not affected.
        "spark.sql.codegen.hugeMethodLimit": "8000",
        "spark.driver.extraJavaOptions": "-Dlog4j2.level=WARN",
        # decode() knows only the Unicode charsets and ISO-8859-1 unless Java's are allowed: a
        # source's fallback_encoding may be windows-1252.
        "spark.sql.legacy.javaCharsets": "true",
        # featurelake draws its own progress line (featurelake.core.console), on a terminal only
        "spark.ui.showConsoleProgress": "false",
        # delta-spark rebuilds a table's state from its log in a stage of this many tasks
        # (default 50) for every snapshot it loads, and lists a table's folders for VACUUM
        # with up to this many tasks (default 10,000): on small tables and few cores that
        # scheduling is nearly all of the time (a VACUUM of a three-file table: minutes).
        "spark.databricks.delta.snapshotPartitions": str(settings.shuffle_partitions),
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(
            max(8, settings.shuffle_partitions)
        ),
        # delta-spark leaves out a commit that adds and removes nothing (an empty quarantine
        # overwritten by an empty one): every featurelake write is a commit, since its
        # metadata (the run, the bronze version a silver pair was built from) is the record.
        "spark.databricks.delta.skipRecordingEmptyCommits": "false",
    }
    # The classpath is decided above, before the JVM starts; a running JVM ignores it.
    options.update({k: v for k, v in settings.conf.items() if k not in _CLASSPATH_KEYS})
    for key, value in options.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    _remember_jvm_functions()
    return spark


def _with_jvm_packages(
    builder: SparkSession.Builder, delta: DeltaSettings | None, conf: Mapping[str, str]
) -> Any:
    """Put delta-spark and the configured packages on the classpath of the JVM about to start.

    delta-spark's jars come when ``delta`` is given and its backend is not ``delta-rs``; the
    coordinates of ``spark.jars.packages`` are resolved by featurelake (cache, timeouts) rather
    than by Spark inside the JVM, and ``spark.jars`` is kept. Either set of packages that
    cannot be had is left out with one warning saying why.
    """
    from featurelake.core.jvm_packages import DELTA_SPARK_CONF, delta_coordinates, resolve_packages

    jars = [j.strip() for j in conf.get("spark.jars", "").split(",") if j.strip()]
    if delta is not None and delta.backend != "delta-rs":
        found = resolve_packages(delta_coordinates())
        if found.ok:
            jars += found.jars
            for key, value in DELTA_SPARK_CONF.items():
                builder = builder.config(key, value)
        else:
            log.warning(
                "native_delta_unavailable",
                extra={"fields": {"reason": found.reason, "using": "delta-rs"}},
            )
    packages = [c.strip() for c in conf.get(PACKAGES_KEY, "").split(",") if c.strip()]
    if packages:
        try:
            resolved = resolve_packages(packages)
            reason = resolved.reason
        except ValueError as exc:  # not group:artifact:version
            reason = str(exc)
        if reason is None:
            jars += resolved.jars
        else:
            log.warning(
                "jvm_packages_unavailable",
                extra={"fields": {"packages": packages, "reason": reason}},
            )
    if jars:
        builder = builder.config("spark.jars", ",".join(dict.fromkeys(jars)))
    return builder


def _remember_jvm_functions() -> None:
    """Make PySpark look up each JVM function (``F.col``, ``F.when``...) once per gateway.

    Every ``pyspark.sql.functions`` call finds its JVM function by two reflection round trips
    (the class ``org.apache.spark.sql.functions``, then the method) before the one that calls
    it, and PySpark keeps neither. Building one silver table's plan makes hundreds of these
    calls: at 1M transactions the credit clients' plan sent 5,566 commands to the JVM, 2,625
    of them such look-ups (0.14 s). The looked-up method is the same for the life of the
    gateway, so it is kept here, per gateway, in place of PySpark's look-up. Does nothing
    when PySpark has no such look-up (another version): plans are then built as before.
    """
    from pyspark.sql.functions import builtin

    lookup = getattr(builtin, "_get_jvm_function", None)
    if lookup is None or getattr(lookup, "remembers", False):
        return
    known: dict[str, tuple[Any, Any]] = {}

    def remembered(name: str, sc: Any) -> Any:
        entry = known.get(name)
        if entry is None or entry[0] is not sc._jvm:  # a new gateway: look up again
            entry = known[name] = (sc._jvm, lookup(name, sc))
        return entry[1]

    remembered.remembers = True  # type: ignore[attr-defined]
    builtin._get_jvm_function = remembered


def local_frame(
    spark: SparkSession,
    rows: Sequence[Sequence[Any] | Mapping[str, Any]],
    schema: T.StructType | str,
) -> DataFrame:
    """A small DataFrame built on the driver (ledger entries, metrics, metadata, as-of points).

    ``spark.createDataFrame(list_of_rows)`` ships pickled rows to Python workers, and starting
    them is the slowest part of a small write: 2.9 s for the first such frame of a job here,
    against 0.3 s for one Arrow table, which the JVM reads directly; that is what this builds.

    Args:
        spark: the session that owns the result.
        rows: tuples in schema order, or mappings by field name (missing keys are null).
        schema: the frame's schema (a ``StructType`` or a DDL string).

    Returns:
        The frame, with exactly ``schema``. Timestamps are instants: aware datetimes are
        converted to UTC, naive ones are taken as UTC (the session time zone).

    Raises:
        TypeError: a row is neither a sequence nor a mapping, or has the wrong length, or the
            schema holds a type this does not convert (maps, structs).
        ValueError: a non-nullable field holds None.
    """
    table, struct = arrow_rows(rows, schema)
    return spark.createDataFrame(table, struct)


def run_constant(value: datetime) -> Column:
    """``value`` as a timestamp column, kept out of the code Spark generates for the query.

    For a run's own times (ingested at, as of, quarantined at). Spark writes a timestamp
    literal into the Java source of each stage that uses it, so the same query with a new
    run time compiles new classes, and the JIT starts them cold; in a driver that runs the
    jobs again (``full-pipeline``, a notebook, the bench) silver took 11.0 s a run at 1M
    transactions that way, against 8.5 s with the same classes reused. Here the value sits
    in a one-element array, which the generated code reads from its references; the index,
    always 1, depends on the partition id only so that the optimiser cannot fold the lookup
    back into a literal (which also makes the column non-deterministic to the optimiser:
    use it in projections, not in join keys or grouping keys).

    Args:
        value: the instant; naive values are taken as UTC (the session time zone; PySpark
            would read a naive literal in the Python process's local zone).

    Returns:
        A timestamp column equal to ``value`` on every row.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return F.element_at(F.array(F.lit(value)), F.spark_partition_id() * 0 + 1)


def arrow_rows(
    rows: Sequence[Sequence[Any] | Mapping[str, Any]], schema: T.StructType | str
) -> tuple[Any, T.StructType]:
    """The rows as a ``pyarrow.Table`` of the Spark schema, and that schema as a ``StructType``.

    The conversion behind :func:`local_frame` (same arguments, rules and errors); Spark types
    map to Arrow as Spark itself maps them (timestamps: microseconds, UTC).
    """
    import pyarrow as pa

    struct = schema if isinstance(schema, T.StructType) else T.DataType.fromDDL(schema)
    if not isinstance(struct, T.StructType):
        raise TypeError(f"schema must describe a struct, got {schema!r}")
    names = struct.fieldNames()
    columns: list[list[Any]] = [[] for _ in names]
    for row in rows:
        if hasattr(row, "asDict"):  # a pyspark Row: by field name
            row = row.asDict()
        if isinstance(row, Mapping):
            values = [row.get(name) for name in names]
        elif isinstance(row, Sequence) and not isinstance(row, str):
            if len(row) != len(names):
                raise TypeError(f"row {row!r} has {len(row)} values; the schema has {names}")
            values = list(row)
        else:
            raise TypeError(f"row {row!r} is neither a sequence nor a mapping")
        for column, value in zip(columns, values, strict=True):
            column.append(value)
    for column, f in zip(columns, struct.fields, strict=True):
        if not f.nullable and any(v is None for v in column):
            raise ValueError(f"field {f.name} is not nullable, but a row holds None")
    arrays = [
        pa.array([_arrow_value(v, f.dataType) for v in column], type=_arrow_type(f.dataType))
        for column, f in zip(columns, struct.fields, strict=True)
    ]
    table = pa.Table.from_arrays(
        arrays,
        schema=pa.schema(
            [pa.field(f.name, _arrow_type(f.dataType), f.nullable) for f in struct.fields]
        ),
    )
    return table, struct


def _arrow_type(dtype: T.DataType) -> Any:
    import pyarrow as pa

    simple = {
        T.StringType: pa.string(),
        T.LongType: pa.int64(),
        T.IntegerType: pa.int32(),
        T.ShortType: pa.int16(),
        T.ByteType: pa.int8(),
        T.DoubleType: pa.float64(),
        T.FloatType: pa.float32(),
        T.BooleanType: pa.bool_(),
        T.DateType: pa.date32(),
        T.BinaryType: pa.binary(),
        T.TimestampType: pa.timestamp("us", tz="UTC"),
        T.TimestampNTZType: pa.timestamp("us"),
    }
    for spark_type, arrow_type in simple.items():
        if isinstance(dtype, spark_type):
            return arrow_type
    if isinstance(dtype, T.DecimalType):
        return pa.decimal128(dtype.precision, dtype.scale)
    if isinstance(dtype, T.ArrayType):
        return pa.list_(_arrow_type(dtype.elementType))
    raise TypeError(f"local_frame does not support the type {dtype.simpleString()}")


def _arrow_value(value: Any, dtype: T.DataType) -> Any:
    if isinstance(dtype, T.TimestampType) and isinstance(value, datetime) and value.tzinfo:
        return value.astimezone(timezone.utc)
    return value
