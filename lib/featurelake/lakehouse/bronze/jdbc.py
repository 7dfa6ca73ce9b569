"""JDBC sources: a database table read incrementally by a cursor column into bronze.

Each run reads the rows whose cursor (``jdbc.cursor``: ``updated_at``, an increasing id) is
past the last committed high-water mark, with Spark's JDBC reader:

1. **plan**: one query asks the database for the cursor's maximum past the mark (and, for a
   partitioned read without declared bounds, the partition column's minimum and maximum);
   nothing past the mark means nothing to do;
2. **read**: ``mark < cursor <= maximum``, optionally as ``num_partitions`` parallel queries
   split on an integer column. The upper bound fixed at planning keeps the partitions'
   queries consistent with each other: a row changed while they run has a cursor above it and
   is read by the next run;
3. **commit**: the rows are appended to ``bronze/<source>`` in one commit that carries the
   source's claim and, in its metadata, the cursor range; the ledger entry (``path``
   ``jdbc:<table>``, ``cursor_from``, ``cursor_to``) then claims that bronze version. The next
   run starts from the latest ``cursor_to`` in the ledger, after completing the ledger from the
   bronze commits if a run was killed between the two commits. So a crash never skips or
   doubles rows: the rows and the mark they move to are one commit.

Every declared column is read as the text the driver gives for it (``ResultSet.getString``):
bronze holds strings, silver parses them. Rows whose cursor is null are never read.

Limit: the cursor must grow in commit order. A transaction that commits a cursor value below
one another run already read (a long transaction stamping ``updated_at`` at its start; ids
from a sequence committed out of order) is missed. Stamp the cursor at commit (a trigger) or
read a replica with a delay.

Credentials come from the environment variables the declaration names; they are handed to the
driver only, and error messages are built from the database's SQLSTATE and first message line,
never from the options.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType

from featurelake.core.errors import DataError, FeaturelakeError, TransientError, UserError
from featurelake.core.runner import JobContext
from featurelake.delta import AppTransaction
from featurelake.lakehouse.bronze.batches import (
    BatchEntry,
    append_batch,
    new_batch_id,
    record_in_ledger,
)
from featurelake.lakehouse.bronze.schema import RESCUED_DATA, SOURCE_FILE
from featurelake.lakehouse.connectors import JdbcOptions
from featurelake.lakehouse.sources import SourceSpec

__all__ = [
    "JdbcIncrement",
    "increment_query",
    "ingest_jdbc_increment",
    "jdbc_failure",
    "jdbc_source_path",
    "last_cursor",
    "plan_query",
    "sql_string_literal",
]

log = logging.getLogger(__name__)

_INCREMENT_ALIAS = "featurelake_increment"
_PARTITION_ALIAS = "featurelake_partition"
_HIGH = "featurelake_high"
_PARTITION_LOW = "featurelake_partition_low"
_PARTITION_HIGH = "featurelake_partition_high"


@dataclass(frozen=True)
class JdbcIncrement:
    """The rows one run reads: ``low < cursor <= high``.

    Attributes:
        low: the last committed high-water mark (exclusive); None on the first run.
        high: the cursor's maximum past ``low`` when the run planned; None: nothing new.
        partition_bounds: the partition column's (min, max) over the rows past ``low``, or
            the declared bounds; None without partitioning (or without rows).
    """

    low: str | None
    high: str | None
    partition_bounds: tuple[int, int] | None = None


def jdbc_source_path(options: JdbcOptions) -> str:
    """The ``_source_file`` of a JDBC source's rows and its ledger path: ``jdbc:<table>``."""
    return f"jdbc:{options.table}"


def last_cursor(ledger: Sequence[Mapping[str, Any]]) -> str | None:
    """The high-water mark of the latest committed increment in a source's ledger rows."""
    committed = [r for r in ledger if r.get("cursor_to") is not None and r["status"] != "failed"]
    if not committed:
        return None
    latest = max(
        committed,
        key=lambda r: (
            r["ingested_at"] or datetime.min.replace(tzinfo=timezone.utc),
            r["batch_id"],
        ),
    )
    return str(latest["cursor_to"])


def sql_string_literal(value: str) -> str:
    """``value`` as an SQL string literal; the database casts it to the cursor column's type.

    Raises:
        DataError: the value holds a backslash or a control character (some databases read
            a backslash in a literal as an escape; a cursor value never needs one).
    """
    if "\\" in value or any(ord(c) < 32 for c in value):
        raise DataError(f"cursor value {value!r} cannot be written as a plain SQL literal")
    return "'" + value.replace("'", "''") + "'"


def _cursor_condition(cursor: str, low: str | None, high: str | None) -> str:
    conditions = [f"{cursor} IS NOT NULL"]
    if low is not None:
        conditions.append(f"{cursor} > {sql_string_literal(low)}")
    if high is not None:
        conditions.append(f"{cursor} <= {sql_string_literal(high)}")
    return " AND ".join(conditions)


def plan_query(options: JdbcOptions, low: str | None, quote: Callable[[str], str]) -> str:
    """The subquery asking for the cursor's maximum past ``low`` (and the partition bounds).

    Args:
        options: the source's ``jdbc`` section.
        low: the last committed high-water mark, or None.
        quote: quotes an identifier for the database (Spark's dialect for the URL).

    Returns:
        ``(SELECT MAX(cursor) AS featurelake_high[, MIN(p)..., MAX(p)...] FROM t WHERE ...) a``.
    """
    cursor = quote(options.cursor)
    columns = [f"MAX({cursor}) AS {_HIGH}"]
    partitioning = options.partitioning
    if partitioning is not None and partitioning.lower_bound is None:
        column = quote(partitioning.column)
        columns += [f"MIN({column}) AS {_PARTITION_LOW}", f"MAX({column}) AS {_PARTITION_HIGH}"]
    where = _cursor_condition(cursor, low, None)
    return f"(SELECT {', '.join(columns)} FROM {options.table} WHERE {where}) featurelake_plan"


def increment_query(
    options: JdbcOptions,
    columns: Sequence[str],
    increment: JdbcIncrement,
    quote: Callable[[str], str],
) -> str:
    """The subquery reading one increment's declared columns (and the partition column).

    Args:
        options: the source's ``jdbc`` section.
        columns: the declared column names.
        increment: the cursor range.
        quote: quotes an identifier for the database.

    Returns:
        ``(SELECT cols[, p AS featurelake_partition] FROM t WHERE low < c <= high) alias``.
    """
    selected = [quote(c) for c in columns]
    if options.partitioning is not None:
        selected.append(f"{quote(options.partitioning.column)} AS {_PARTITION_ALIAS}")
    where = _cursor_condition(quote(options.cursor), increment.low, increment.high)
    return f"(SELECT {', '.join(selected)} FROM {options.table} WHERE {where}) {_INCREMENT_ALIAS}"


def connection_options(spec: SourceSpec) -> tuple[dict[str, str], list[str]]:
    """Spark's JDBC options for the source, with the credentials read from the environment.

    Returns:
        (the options, the secrets in them: never to be shown).

    Raises:
        UserError: a variable the declaration names is not set (the message names it).
    """
    options = _jdbc(spec)
    user = os.environ.get(options.user_env)
    if not user:
        raise UserError(
            f"source {spec.name}: environment variable {options.user_env} (jdbc.user_env) "
            "is not set"
        )
    connection = {
        **options.properties,
        "url": options.url,
        "driver": options.driver_class,
        "user": user,
        "fetchsize": str(options.fetch_size),
    }
    secrets = []
    if options.password_env is not None:
        password = os.environ.get(options.password_env)
        if password is None:
            raise UserError(
                f"source {spec.name}: environment variable {options.password_env} "
                "(jdbc.password_env) is not set"
            )
        connection["password"] = password
        secrets.append(password)
    return connection, [s for s in secrets if s]


def _jdbc(spec: SourceSpec) -> JdbcOptions:
    if spec.jdbc is None:
        raise UserError(f"source {spec.name} is a {spec.format} source, not jdbc")
    return spec.jdbc


def _dialect_quote(spark: SparkSession, url: str) -> Callable[[str], str]:
    """Spark's identifier quoting for the database of ``url`` (``"x"`` for PostgreSQL)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    dialect = jvm.org.apache.spark.sql.jdbc.JdbcDialects.get(url)
    return lambda name: str(dialect.quoteIdentifier(name))


def plan_increment(
    spark: SparkSession, spec: SourceSpec, connection: Mapping[str, str], low: str | None
) -> JdbcIncrement:
    """Ask the database how far the cursor goes past ``low`` (one small query)."""
    options = _jdbc(spec)
    quote = _dialect_quote(spark, options.url)
    names = [_HIGH]
    if options.partitioning is not None and options.partitioning.lower_bound is None:
        names += [_PARTITION_LOW, _PARTITION_HIGH]
    row = (
        spark.read.format("jdbc")
        .options(**connection)
        .option("dbtable", plan_query(options, low, quote))
        .option("customSchema", ", ".join(f"{n} STRING" for n in names))
        .load()
        .collect()[0]
    )
    high = row[_HIGH]
    bounds = None
    partitioning = options.partitioning
    if partitioning is not None and high is not None:
        if partitioning.lower_bound is not None and partitioning.upper_bound is not None:
            bounds = (partitioning.lower_bound, partitioning.upper_bound)
        elif row[_PARTITION_LOW] is not None:
            bounds = (int(Decimal(row[_PARTITION_LOW])), int(Decimal(row[_PARTITION_HIGH])))
    return JdbcIncrement(low=low, high=high, partition_bounds=bounds)


def read_increment(
    spark: SparkSession,
    spec: SourceSpec,
    connection: Mapping[str, str],
    increment: JdbcIncrement,
) -> DataFrame:
    """The increment's rows as bronze parses them: declared columns as strings, no rescue.

    Returns:
        The declared columns (the driver's text of each value), ``_rescued_data`` (null) and
        ``_source_file`` (``jdbc:<table>``).
    """
    options = _jdbc(spec)
    quote = _dialect_quote(spark, options.url)
    reader = (
        spark.read.format("jdbc")
        .options(**connection)
        .option("dbtable", increment_query(options, spec.column_names, increment, quote))
        # Strings from the driver: Spark calls getString for every declared column.
        .option("customSchema", ", ".join(f"`{c}` STRING" for c in spec.column_names))
    )
    bounds, partitioning = increment.partition_bounds, options.partitioning
    if partitioning is not None and bounds is not None and bounds[0] < bounds[1]:
        reader = reader.options(
            partitionColumn=_PARTITION_ALIAS,
            lowerBound=str(bounds[0]),
            upperBound=str(bounds[1]),
            numPartitions=str(partitioning.num_partitions),
        )
    return reader.load().select(
        *[F.col(f"`{c}`") for c in spec.column_names],
        F.lit(None).cast(StringType()).alias(RESCUED_DATA),
        F.lit(jdbc_source_path(options)).alias(SOURCE_FILE),
    )


def ingest_jdbc_increment(
    ctx: JobContext,
    spec: SourceSpec,
    ledger: list[dict[str, Any]],
    ledger_path: str,
    claim: AppTransaction,
) -> dict[str, Any]:
    """Read the rows past the source's high-water mark and append them in one claimed commit.

    Args:
        ctx: the job context.
        spec: a ``jdbc`` source.
        ledger: the source's ledger rows (after recovery).
        ledger_path: the ingest ledger.
        claim: committed with the rows.

    Returns:
        The run summary's fields for the source.

    Raises:
        UserError: credentials refused or unset, an unknown table or column, an unreachable
            database, a driver that could not be had (one line; exit code 2).
        TransientError: the database was busy or shutting down.
        ConcurrentWriteError: the claim was lost; nothing was committed.
    """
    options = _jdbc(spec)
    connection, secrets = connection_options(spec)
    low = last_cursor(ledger)
    now = datetime.now(timezone.utc)
    batch_id = new_batch_id(spec.name, now, ctx.run_id)
    entry = None
    try:
        increment = plan_increment(ctx.spark, spec, connection, low)
        if increment.high is not None:
            entry = BatchEntry(
                path=jdbc_source_path(options),
                size=None,
                modified_at=now,
                sha256=None,
                status="ingested",
                cursor_from=low,
                cursor_to=increment.high,
            )
            version, counts = append_batch(
                ctx,
                spec,
                read_increment(ctx.spark, spec, connection, increment),
                [entry],
                batch_id=batch_id,
                ingested_at=now,
                claim=claim,
            )
    except FeaturelakeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a database's refusal becomes one line
        failure = jdbc_failure(spec, exc, secrets)
        if failure is None:
            raise
        raise failure from None
    name = spec.name
    if entry is None:
        log.info(
            "source_up_to_date",
            extra={"fields": {"source": name, "table": options.table, "cursor": low}},
        )
        return {f"{name}.rows_ingested": 0, f"{name}.cursor_from": low, f"{name}.cursor_to": low}
    rows = sum(c[0] for c in counts.values())
    record_in_ledger(
        ctx, name, ledger_path, [entry.ledger_row(name, batch_id, rows, now)], batch_id, version
    )
    log.info(
        "source_ingested",
        extra={
            "fields": {
                "source": name,
                "batch_id": batch_id,
                "table": options.table,
                "rows": rows,
                "cursor_from": low,
                "cursor_to": entry.cursor_to,
            }
        },
    )
    return {
        f"{name}.rows_ingested": rows,
        f"{name}.rows_rescued": 0,
        f"{name}.cursor_from": low,
        f"{name}.cursor_to": entry.cursor_to,
    }


def _java_causes(exc: BaseException) -> list[tuple[str, str | None, str]]:
    """(class name, SQLSTATE or None, message) of the Java exception behind ``exc`` and its
    causes, outermost first; empty when ``exc`` did not come from the JVM."""
    throwable = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    chain: list[tuple[str, str | None, str]] = []
    while throwable is not None and len(chain) < 20:
        name = str(throwable.getClass().getName())
        state = None
        if "SQL" in name or "SQLException" in name:
            try:
                state = throwable.getSQLState()
            except Exception:  # noqa: BLE001 - not an SQLException after all
                state = None
        chain.append((name, str(state) if state else None, str(throwable.getMessage() or "")))
        throwable = throwable.getCause()
    return chain


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def jdbc_failure(
    spec: SourceSpec, exc: BaseException, secrets: Sequence[str] = ()
) -> FeaturelakeError | None:
    """The one-line error for a database's refusal, or None when ``exc`` is not one.

    The message names the source, the URL (which holds no credentials) and the table, and
    quotes the SQLSTATE and the first line of the database's message. Credentials classes
    (SQLSTATE 28), unknown objects (3D, 3F, 42) and connection failures (08) are user errors
    (exit 2); a busy or restarting database (40, 53, 57) is transient (exit 75); anything else
    the database refused is a data error.

    Args:
        spec: the source.
        exc: what Spark raised.
        secrets: values never to appear in the message (the password).
    """
    options = _jdbc(spec)
    chain = _java_causes(exc)
    where = f"source {spec.name} ({options.url}, table {options.table})"
    missing_class = next((m for n, _, m in chain if n.endswith("ClassNotFoundException")), None)
    if missing_class is not None and options.driver_class in missing_class:
        return UserError(f"{where}: {_driver_unavailable(options)}")
    sql = next(((s, m) for _, s, m in chain if s), None)
    if sql is None:
        return None
    state, message = sql
    root_name, _, root_message = chain[-1]
    detail = _first_line(message)
    if state.startswith("08") and root_message and root_message not in detail:
        detail += f" ({root_name.rsplit('.', 1)[-1]}: {_first_line(root_message)})"
    for secret in secrets:
        detail = detail.replace(secret, "***")
    text = f"{detail} (SQLSTATE {state})"
    if state.startswith("28"):
        variables = options.user_env + (f"/{options.password_env}" if options.password_env else "")
        return UserError(f"{where}: the database refused the credentials in {variables}: {text}")
    if state.startswith("08"):
        return UserError(f"{where}: cannot connect: {text}")
    if state[:2] in ("3D", "3F", "42"):
        return UserError(f"{where}: {text}; check jdbc.table, jdbc.cursor and the columns")
    if state[:2] in ("40", "53", "57"):
        return TransientError(f"{where}: the database is busy or restarting: {text}")
    return DataError(f"{where}: the database refused the read: {text}")


def _driver_unavailable(options: JdbcOptions) -> str:
    """Why the driver class is missing: its jar could not be had, or the session lacks it."""
    from featurelake.core.jvm_packages import resolve_packages

    coordinates = options.driver_coordinates
    found = resolve_packages([coordinates])
    if not found.ok:
        return f"JDBC driver {options.driver_class} unavailable: {coordinates}: {found.reason}"
    return (
        f"JDBC driver {options.driver_class} is not on this Spark session's classpath "
        f"(start the job with ./spark-submit.sh or featurelake, which add {coordinates})"
    )
