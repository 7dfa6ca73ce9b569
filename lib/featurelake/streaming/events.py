"""Reading a streaming source's events, and the pure steps from raw events to bronze rows."""

from __future__ import annotations

import os
from datetime import datetime

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from featurelake.core.errors import UserError
from featurelake.core.session import run_constant
from featurelake.lakehouse.bronze.parsing import (
    parse_json_lines,
    source_file_from_uri,
    with_decoded_lines,
    with_lineage,
)
from featurelake.lakehouse.bronze.schema import SOURCE_FILE
from featurelake.lakehouse.sources import SourceSpec

__all__ = [
    "PRODUCED_AT",
    "Transport",
    "as_bronze_rows",
    "is_late",
    "late_events",
    "on_time_events",
    "read_event_lines",
]

Transport = str  # "kafka" | "files"

#: When an event entered the transport: the Kafka record's timestamp, the file's modification
#: time. Carried next to each raw line (not into silver).
PRODUCED_AT = "_produced_at"


def read_event_lines(
    spark: SparkSession, spec: SourceSpec, transport: Transport, landing: str
) -> DataFrame:
    """A streaming DataFrame of the source's raw events: one row per message or file line.

    Args:
        spark: the session.
        spec: a streaming source (``stream:`` section).
        transport: ``kafka`` (the declared topic) or ``files`` (new files matching ``path``
            under ``landing``; JSON lines, compressed or not).
        landing: the landing folder (``lakehouse.landing``).

    Returns:
        ``value`` (the raw text), ``_source_file`` (``kafka:<topic>/<partition>@<offset>`` or
        the file's path) and ``_produced_at``.

    Raises:
        UserError: the source is not a streaming source, or has no Kafka topic.
    """
    stream = spec.stream
    if stream is None:
        raise UserError(f"source {spec.name} has no stream: section; it is not a streaming source")
    if transport == "kafka":
        kafka = stream.kafka
        if kafka is None:
            raise UserError(f"source {spec.name} declares no kafka: topic")
        reader = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", kafka.bootstrap_servers)
            .option("subscribe", kafka.topic)
            .option("startingOffsets", kafka.starting_offsets)
            # A topic deleted or truncated under a running query loses events: stop, say so.
            .option("failOnDataLoss", "true")
        )
        if kafka.max_offsets_per_trigger:
            reader = reader.option("maxOffsetsPerTrigger", str(kafka.max_offsets_per_trigger))
        for key, value in kafka.options.items():
            reader = reader.option(key if key.startswith("kafka.") else f"kafka.{key}", value)
        return reader.load().select(
            F.col("value").cast("string").alias("value"),
            F.concat(
                F.lit("kafka:"),
                F.col("topic"),
                F.lit("/"),
                F.col("partition").cast("string"),
                F.lit("@"),
                F.col("offset").cast("string"),
            ).alias(SOURCE_FILE),
            F.col("timestamp").alias(PRODUCED_AT),
        )
    if transport == "files":
        pattern = spec.resolve_glob(landing)
        os.makedirs(os.path.dirname(pattern), exist_ok=True)
        reader = spark.readStream.format("text")
        if stream.files.max_files_per_trigger:
            reader = reader.option("maxFilesPerTrigger", str(stream.files.max_files_per_trigger))
        return reader.load(pattern).select(
            F.col("value"),
            source_file_from_uri("_metadata.file_path"),
            F.col("_metadata.file_modification_time").alias(PRODUCED_AT),
        )
    raise UserError(f"unknown transport {transport!r}; expected kafka or files")


def as_bronze_rows(
    lines: DataFrame, *, spec: SourceSpec, batch_id: str, ingested_at: datetime
) -> DataFrame:
    """Raw event lines as bronze rows: the batch bronze job's own parser and lineage.

    A line that is not one JSON object of the declared keys keeps its text in
    ``_rescued_data`` (silver quarantines it as ``malformed_line``); every value is a string
    (silver parses and checks it).

    Args:
        lines: ``value`` and ``_source_file`` (:func:`read_event_lines`, one micro-batch).
        spec: the source declaration.
        batch_id: the bronze ``_batch_id`` of these rows.
        ingested_at: the micro-batch's time.

    Returns:
        Rows with the bronze schema of ``spec``.
    """
    return (
        lines.transform(with_decoded_lines, fallback=spec.options.fallback_encoding)
        .transform(parse_json_lines, spec=spec)
        .transform(with_lineage, spec=spec, batch_id=batch_id, ingested_at=ingested_at)
    )


def is_late(event_time: str, watermark: datetime | None) -> Column:
    """True where the row's ``event_time`` is at or before ``watermark`` (never null).

    Spark's rule for its own state; no row is late when ``watermark`` is None.
    """
    if watermark is None:
        return F.lit(False)
    return F.coalesce(F.col(f"`{event_time}`") <= run_constant(watermark), F.lit(False))


def late_events(silver: DataFrame, event_time: str, watermark: datetime | None) -> DataFrame:
    """The rows whose event time is at or before ``watermark`` (none when it is None)."""
    return silver.where(is_late(event_time, watermark))


def on_time_events(silver: DataFrame, event_time: str, watermark: datetime | None) -> DataFrame:
    """The rows after ``watermark`` (all when it is None)."""
    return silver.where(~is_late(event_time, watermark))
