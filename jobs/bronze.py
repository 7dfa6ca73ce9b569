"""Bronze ingest: new raw files of each declared source into append-only Delta tables.

    ./spark-submit.sh bronze                      # every source in conf/sources/
    ./spark-submit.sh bronze --source online_retail

Per source: list the files matching its glob, compare them with ``bronze/_ingested_files``,
read only new (and, per ``on_changed_file``, changed) files, keep every line, add lineage, and
append them to ``bronze/<source>`` in one commit; then record the files in the ledger. Sources
are ingested concurrently (up to ``spark.concurrent_tables``). A run with no new files writes
nothing. A run that died between the two commits is repaired by the next run from the bronze
commit's metadata before it plans anything.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from featurelake.bronze import (
    BATCH_ID,
    INGESTED_FILES_SCHEMA,
    INGESTED_FILES_TABLE,
    RESCUED_DATA,
    SOURCE_FILE,
    IngestPlan,
    LandedFile,
    list_landed_files,
    plan_ingest,
    read_source_rows,
    with_lineage,
)
from featurelake.concurrency import run_concurrently
from featurelake.runner import JobContext, run_job
from featurelake.sources import SourceSpec, load_sources
from pyspark.sql import Column, Observation
from pyspark.sql import functions as F

log = logging.getLogger("featurelake.jobs.bronze")

_FILES_META = "bronze_files"
# Up to this many files per batch, rows per file are counted while the batch is written (two
# aggregates per file in one observation); a larger batch is read back once and grouped.
_OBSERVED_FILES_MAX = 64
_LEDGER_LOCK = threading.Lock()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", action="append", default=None, metavar="NAME",
                        help="ingest only this source (repeatable; default: all declared)")


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    sources = load_sources(ctx.settings)
    names = args.source or sorted(sources)
    unknown = [n for n in names if n not in sources]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; declared in "
                         f"{ctx.settings.conf_path('sources')}: {sorted(sources)}")
    ledger_path = ctx.path("bronze", INGESTED_FILES_TABLE)

    def ingest_source(name: str) -> None:
        spec = sources[name]
        recover_unrecorded_batches(ctx, spec, ledger_path)
        ledger = read_ledger(ctx, ledger_path, spec.name)
        files = list_landed_files(spec, ctx.settings.lakehouse.landing)
        plan = plan_ingest(spec, files, ledger)
        ctx.summary[f"{name}.files_found"] = len(files)
        ctx.summary[f"{name}.files_new"] = len(plan.new)
        ctx.summary[f"{name}.files_changed_reingested"] = len(plan.changed)
        ctx.summary[f"{name}.files_changed_skipped"] = len(plan.skipped)
        ctx.summary[f"{name}.files_unchanged"] = len(plan.unchanged)
        rows, rescued = ingest(ctx, spec, plan, ledger_path)
        ctx.summary[f"{name}.rows_ingested"] = rows
        ctx.summary[f"{name}.rows_rescued"] = rescued

    # Sources are independent (own table, own ledger rows): ingested concurrently.
    run_concurrently([functools.partial(ingest_source, name) for name in names],
                     ctx.settings.spark.concurrent_tables)


def read_ledger(ctx: JobContext, ledger_path: str, source: str) -> list[dict[str, Any]]:
    """The ledger rows of one source (small: one row per ingested file)."""
    if not ctx.tables.exists(ledger_path):
        return []
    # Timestamps travel as epoch microseconds: collect() would render them in the driver's
    # local time zone.
    rows = (
        ctx.tables.read(ledger_path)
        .where(F.col("source") == source)
        .withColumns({"modified_at": F.unix_micros("modified_at"),
                      "ingested_at": F.unix_micros("ingested_at")})
        .collect()
    )
    return [{**row.asDict(), "modified_at": _from_micros(row["modified_at"]),
             "ingested_at": _from_micros(row["ingested_at"])} for row in rows]


def _from_micros(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value // 1_000_000, timezone.utc).replace(
        microsecond=value % 1_000_000)


def ingest(
    ctx: JobContext, spec: SourceSpec, plan: IngestPlan, ledger_path: str
) -> tuple[int, int]:
    """Append the plan's files to bronze in one commit, then record them in the ledger.

    Returns:
        (rows ingested, rows with ``_rescued_data``).
    """
    now = datetime.now(timezone.utc)
    batch_id = f"{spec.name}-{now.strftime('%Y%m%dT%H%M%SZ')}-{ctx.run_id}"
    table = ctx.path("bronze", spec.name)
    counts: dict[str, tuple[int, int]] = {}
    if plan.to_ingest:
        raw = read_source_rows(ctx.spark, spec, [f.path for f in plan.to_ingest])
        bronze = raw.transform(with_lineage, spec=spec, batch_id=batch_id, ingested_at=now)
        files_meta = [
            {"path": f.path, "size": f.size, "modified_at": f.modified_at.isoformat(),
             "sha256": f.sha256, "status": plan.statuses[f.path]} for f in plan.to_ingest
        ]
        paths = [f.path for f in plan.to_ingest]
        observation = None
        if len(paths) <= _OBSERVED_FILES_MAX:
            observation = Observation(f"bronze-{batch_id}")
            bronze = bronze.observe(observation, *per_file_counts(paths))
        result = ctx.tables.write(bronze, table, mode="append",
                                  metadata={"source": spec.name, "batch_id": batch_id,
                                            _FILES_META: files_meta})
        counts = observed_counts(observation, paths) if observation is not None else {}
        if sum(c[0] for c in counts.values()) != result.rows_written:
            # many files, or counts that do not add up: read the batch back
            counts = batch_counts(ctx, table, batch_id)
    entries = [
        _ledger_row(spec.name, f, batch_id, counts.get(f.path, (0, 0))[0],
                    plan.statuses[f.path], now)
        for f in plan.to_ingest + plan.skipped
    ]
    if entries:
        with _LEDGER_LOCK:  # sources ingested concurrently share the ledger (and its creation)
            ctx.tables.append_rows(entries, INGESTED_FILES_SCHEMA, ledger_path,
                                   metadata={"source": spec.name, "batch_id": batch_id})
    for landed in plan.skipped:
        log.warning("changed_file_skipped", extra={"fields": {"source": spec.name,
                                                               "path": landed.path}})
    rows = sum(c[0] for c in counts.values())
    rescued = sum(c[1] for c in counts.values())
    log.info("source_ingested", extra={"fields": {
        "source": spec.name, "batch_id": batch_id, "files": len(plan.to_ingest),
        "rows": rows, "rows_rescued": rescued,
        "rows_per_file": {path: c[0] for path, c in counts.items()}}})
    return rows, rescued


def per_file_counts(paths: list[str]) -> list[Column]:
    """Aggregates for an observation: rows and rescued rows of each file, by position."""
    aggregates = []
    for i, path in enumerate(paths):
        here = F.col(SOURCE_FILE) == F.lit(path)
        aggregates.append(F.count_if(here).alias(f"rows_{i}"))
        aggregates.append(F.count_if(here & F.col(RESCUED_DATA).isNotNull()).alias(f"rescued_{i}"))
    return aggregates


def observed_counts(observation: Observation, paths: list[str]) -> dict[str, tuple[int, int]]:
    """Rows and rescued rows per file, as measured while the batch was written."""
    measured = observation.get
    return {path: (int(measured[f"rows_{i}"]), int(measured[f"rescued_{i}"]))
            for i, path in enumerate(paths)}


def batch_counts(ctx: JobContext, table: str, batch_id: str) -> dict[str, tuple[int, int]]:
    """Rows and rescued rows per source file of one batch, read back from the committed table."""
    rows = (
        ctx.tables.read(table, record=False)
        .where(F.col(BATCH_ID) == batch_id)
        .groupBy(SOURCE_FILE)
        .agg(F.count(F.lit(1)).alias("rows"),
             F.count(F.col(RESCUED_DATA)).alias("rescued"))
        .collect()
    )
    return {r[SOURCE_FILE]: (int(r["rows"]), int(r["rescued"])) for r in rows}


def recover_unrecorded_batches(ctx: JobContext, spec: SourceSpec, ledger_path: str) -> None:
    """Record in the ledger the files of bronze commits that never reached it.

    The bronze append and the ledger append are two commits; a run killed between them left
    rows in bronze that the ledger does not know, and the next run would ingest those files
    again. The bronze commit carries its batch id and file list, so the ledger is completed
    from it before planning.
    """
    table = ctx.path("bronze", spec.name)
    if not ctx.tables.exists(table):
        return
    recorded = {r["batch_id"] for r in read_ledger(ctx, ledger_path, spec.name)}
    missing = []
    for entry in ctx.tables.history(table):
        batch = _meta(entry, "batch_id")
        files = _meta(entry, _FILES_META)
        if batch and files and batch not in recorded:
            missing.append((batch, files, int(entry["timestamp"])))
    for batch, files, millis in missing:
        counts = batch_counts(ctx, table, batch)
        at = datetime.fromtimestamp(millis / 1000, timezone.utc)
        entries = [
            _ledger_row(spec.name, LandedFile(f["path"], int(f["size"]),
                                              datetime.fromisoformat(f["modified_at"]),
                                              f["sha256"]),
                        batch, counts.get(f["path"], (0, 0))[0], f["status"], at)
            for f in files
        ]
        with _LEDGER_LOCK:
            ctx.tables.append_rows(entries, INGESTED_FILES_SCHEMA, ledger_path,
                                   metadata={"source": spec.name, "batch_id": batch,
                                             "recovered": True})
        log.warning("ledger_recovered", extra={"fields": {"source": spec.name, "batch_id": batch,
                                                          "files": len(entries)}})


def _meta(entry: Mapping[str, Any], key: str) -> Any:
    value = entry.get(f"featurelake.{key}")
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def _ledger_row(
    source: str, landed: LandedFile, batch_id: str, rows: int, status: str, at: datetime
) -> tuple[Any, ...]:
    return (source, landed.path, landed.size, landed.modified_at, landed.sha256, batch_id,
            rows, status, at)


if __name__ == "__main__":
    sys.exit(run_job("bronze", main, add_arguments=add_arguments))
