"""HTTP JSON sources: the pages of a paginated API into bronze, every record once.

A run fetches every page on the driver (:mod:`~featurelake.lakehouse.bronze.http_pages`:
pagination, retries, rate limit, timeouts), then:

* a page whose URL and body equal a page already in the ledger is left out (a rerun over an
  unchanged API writes nothing); the others are ``ingested`` (new URL) or ``reingested``
  (same URL, new body);
* each page's body is split into its records with Spark's JSON parser, and each record is
  parsed as a JSON line of a file is (:func:`~featurelake.lakehouse.bronze.parse_json_lines`):
  declared keys as strings, a record that is not an object or has undeclared keys kept whole
  in ``_rescued_data``. A body that is not JSON with the records array is one row with the
  whole body in ``_rescued_data``: nothing received is lost;
* every row's ``_source_file`` is its page: ``<url>#page=<n>``; the ledger has one entry per
  page with that path, the body's size and SHA-256, and ``modified_at`` = when it was fetched;
* the rows are appended in one commit with the source's claim, then the ledger entries claim
  that bronze version, as for files. A page that stays unavailable fails the run before
  anything is committed.

Retried requests never add rows: only the body of the request that succeeded is kept.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from featurelake.core.errors import UserError
from featurelake.core.runner import JobContext
from featurelake.core.session import local_frame
from featurelake.delta import AppTransaction
from featurelake.lakehouse.bronze.batches import (
    BatchEntry,
    append_batch,
    new_batch_id,
    record_in_ledger,
)
from featurelake.lakehouse.bronze.http_pages import FetchedPage, fetch_pages, request_headers
from featurelake.lakehouse.bronze.parsing import parse_json_lines
from featurelake.lakehouse.bronze.schema import RESCUED_DATA, SOURCE_FILE
from featurelake.lakehouse.connectors import HttpJsonOptions
from featurelake.lakehouse.sources import SourceSpec

__all__ = ["ingest_http_pages", "pages_frame", "parse_json_pages", "plan_pages"]

log = logging.getLogger(__name__)

_PAGES_SCHEMA = StructType(
    [StructField(SOURCE_FILE, StringType()), StructField("body", StringType())]
)


def _options(spec: SourceSpec) -> HttpJsonOptions:
    if spec.http_json is None:
        raise UserError(f"source {spec.name} is a {spec.format} source, not http_json")
    return spec.http_json


def plan_pages(
    pages: Sequence[FetchedPage], ledger: Sequence[dict[str, Any]]
) -> tuple[list[FetchedPage], list[FetchedPage], dict[str, str]]:
    """Which fetched pages to ingest: those whose URL and body are not in the ledger yet.

    Args:
        pages: the pages of this run.
        ledger: the source's ledger rows.

    Returns:
        (pages to ingest, pages left out as unchanged, page path -> ``ingested`` or
        ``reingested``).
    """
    latest: dict[str, dict[str, Any]] = {}
    for row in ledger:
        if row.get("status") == "failed":
            continue
        known = latest.get(row["path"])
        if known is None or _ledger_order(row) > _ledger_order(known):
            latest[row["path"]] = row
    to_ingest, unchanged, statuses = [], [], {}
    for page in pages:
        known = latest.get(page.path)
        if known is not None and known.get("sha256") == page.sha256:
            unchanged.append(page)
            continue
        to_ingest.append(page)
        statuses[page.path] = "ingested" if known is None else "reingested"
    return to_ingest, unchanged, statuses


#: The raw pages of an ``http_json`` source: ``bronze/<source>_pages``, one row per distinct
#: body of a page (its URL, number, when it was fetched, SHA-256 and the body as received).
PAGES_SUFFIX = "_pages"
RAW_PAGES_SCHEMA = StructType(
    [
        StructField(SOURCE_FILE, StringType()),
        StructField("url", StringType()),
        StructField("page", LongType()),
        StructField("fetched_at", TimestampType()),
        StructField("sha256", StringType()),
        StructField("body", BinaryType()),
        StructField("_batch_id", StringType()),
    ]
)


def keep_raw_pages(
    ctx: JobContext, source: str, pages: Sequence[FetchedPage], batch_id: str
) -> None:
    """Keep each page's body as received in ``bronze/<source>_pages``, before the records.

    A page's row is keyed by its path and SHA-256: a rerun after a crash replaces the same
    bodies (never a second copy), and a page whose body changed adds its new body beside the
    old one, as bronze keeps both versions of its records.
    """
    rows = [(p.path, p.url, p.number, p.fetched_at, p.sha256, p.body, batch_id) for p in pages]
    ctx.tables.replace_rows(
        rows,
        RAW_PAGES_SCHEMA,
        ctx.path("bronze", source + PAGES_SUFFIX),
        {SOURCE_FILE: [p.path for p in pages], "sha256": [p.sha256 for p in pages]},
        metadata={"featurelake.source": source},
    )


def _ledger_order(row: dict[str, Any]) -> tuple[datetime, str]:
    at = row.get("ingested_at") or datetime.min.replace(tzinfo=timezone.utc)
    return at, row.get("batch_id") or ""


def pages_frame(spark: SparkSession, pages: Sequence[FetchedPage]) -> DataFrame:
    """The pages as rows: ``_source_file`` (the page's path) and ``body`` (text)."""
    return local_frame(
        spark,
        [(p.path, p.body.decode("utf-8", errors="replace")) for p in pages],
        _PAGES_SCHEMA,
    )


def _records_schema(records_path: str) -> ArrayType | StructType:
    """A JSON schema reaching the records array as ``array<string>`` (each record's text)."""
    schema: ArrayType | StructType = ArrayType(StringType())
    for key in reversed([k for k in records_path.split(".") if k]):
        schema = StructType([StructField(key, schema)])
    return schema


def _records_column(body: Column, records_path: str) -> Column:
    parsed = F.from_json(body, _records_schema(records_path), {"mode": "PERMISSIVE"})
    for key in [k for k in records_path.split(".") if k]:
        parsed = parsed.getField(key)
    return parsed


def parse_json_pages(pages: DataFrame, *, spec: SourceSpec, records_path: str) -> DataFrame:
    """Split page bodies into records and parse each as bronze parses a JSON line.

    Args:
        pages: ``_source_file`` and ``body`` (:func:`pages_frame`).
        spec: the source declaration (its columns).
        records_path: dotted path of the records array in a body; empty: the body is the array.

    Returns:
        The declared columns (strings), ``_rescued_data`` and ``_source_file``: one row per
        record, and one row holding the whole body for a page without a records array.
    """
    split = pages.withColumn("_records", _records_column(F.col("body"), records_path))
    records = split.where(F.col("_records").isNotNull()).select(
        F.explode("_records").alias("value"), F.col(SOURCE_FILE)
    )
    parsed = records.transform(parse_json_lines, spec=spec)
    whole = split.where(F.col("_records").isNull()).select(
        *[F.lit(None).cast(StringType()).alias(c) for c in spec.column_names],
        F.col("body").alias(RESCUED_DATA),
        F.col(SOURCE_FILE),
    )
    return reduce(DataFrame.unionByName, [parsed, whole])


def ingest_http_pages(
    ctx: JobContext,
    spec: SourceSpec,
    ledger: list[dict[str, Any]],
    ledger_path: str,
    claim: AppTransaction,
) -> dict[str, Any]:
    """Fetch every page, append the new and changed ones in one claimed commit, record them.

    Args:
        ctx: the job context.
        spec: an ``http_json`` source.
        ledger: the source's ledger rows (after recovery).
        ledger_path: the ingest ledger.
        claim: committed with the rows.

    Returns:
        The run summary's fields for the source.

    Raises:
        PageUnavailableError: a page stayed unavailable after the retries (exit code 75);
            nothing was committed.
        UserError: an unset header variable, a 4xx answer (exit code 2).
        DataError: the pagination cannot go on (exit code 2).
        ConcurrentWriteError: the claim was lost; nothing was committed.
    """
    options = _options(spec)
    headers, _ = request_headers(spec.name, options)
    pages, stats = fetch_pages(spec.name, options, headers)
    to_ingest, unchanged, statuses = plan_pages(pages, ledger)
    name = spec.name
    summary: dict[str, Any] = {
        f"{name}.pages_fetched": len(pages),
        f"{name}.pages_unchanged": len(unchanged),
        f"{name}.requests": stats.requests,
        f"{name}.retries": stats.retries,
        f"{name}.rows_ingested": 0,
        f"{name}.rows_rescued": 0,
    }
    if stats.failures:
        summary[f"{name}.failed_requests"] = dict(sorted(stats.failures.items()))
    if not to_ingest:
        log.info("source_up_to_date", extra={"fields": {"source": name, "pages": len(pages)}})
        return summary
    now = datetime.now(timezone.utc)
    batch_id = new_batch_id(name, now, ctx.run_id)
    entries = [
        BatchEntry(p.path, len(p.body), p.fetched_at, p.sha256, statuses[p.path]) for p in to_ingest
    ]
    keep_raw_pages(ctx, name, to_ingest, batch_id)
    rows = pages_frame(ctx.spark, to_ingest).transform(
        parse_json_pages, spec=spec, records_path=options.records
    )
    version, counts = append_batch(
        ctx, spec, rows, entries, batch_id=batch_id, ingested_at=now, claim=claim
    )
    record_in_ledger(
        ctx,
        name,
        ledger_path,
        [e.ledger_row(name, batch_id, counts.get(e.path, (0, 0))[0], now) for e in entries],
        batch_id,
        version,
    )
    written = sum(c[0] for c in counts.values())
    rescued = sum(c[1] for c in counts.values())
    log.info(
        "source_ingested",
        extra={
            "fields": {
                "source": name,
                "batch_id": batch_id,
                "pages": len(to_ingest),
                "rows": written,
                "rows_rescued": rescued,
                "requests": stats.requests,
                "retries": stats.retries,
            }
        },
    )
    summary.update({f"{name}.rows_ingested": written, f"{name}.rows_rescued": rescued})
    summary[f"{name}.pages_ingested"] = len(to_ingest)
    return summary
