"""The bronze ingest of one source: plan against the ledger, read, append in one claimed
commit, record the files; recover a ledger a killed run left behind.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import Column, Observation
from pyspark.sql import functions as F

from featurelake.core.runner import JobContext
from featurelake.delta import AlreadyCommittedError, AppTransaction, ConcurrentWriteError
from featurelake.lakehouse.bronze import (
    BATCH_ID,
    ERROR_PREVIEW,
    INGESTED_FILES_SCHEMA,
    RESCUED_DATA,
    SOURCE_FILE,
    IngestPlan,
    LandedFile,
    list_landed_files,
    plan_ingest,
    read_source_rows,
    unreadable_reason,
    with_lineage,
)
from featurelake.lakehouse.sources import SourceSpec

log = logging.getLogger(__name__)


_FILES_META = "bronze_files"


# Up to this many files per batch, rows per file are counted while the batch is written (two
# aggregates per file in one observation); a larger batch is read back once and grouped.
_OBSERVED_FILES_MAX = 64


_LEDGER_LOCK = threading.Lock()


# Plans made again after losing a claim to a concurrent run, before giving up.
_CLAIM_ATTEMPTS = 5


def unreadable_summary(unreadable: Mapping[str, Mapping[str, str]]) -> str:
    """One line: how many files could not be read, the first few with their reasons."""
    items = [
        (source, path, reason)
        for source, files in sorted(unreadable.items())
        for path, reason in sorted(files.items())
    ]
    shown = "; ".join(f"{path}: {reason}" for _, path, reason in items[:3])
    more = f" (and {len(items) - 3} more)" if len(items) > 3 else ""
    sources = ", ".join(sorted(unreadable))
    return (
        f"{len(items)} file(s) of source(s) {sources} could not be read and were recorded "
        f"as failed in the ingest ledger; the other files were ingested: {shown}{more}. "
        "Replace or remove them, or set on_unreadable_file: skip"
    )


def ingest_with_claim(ctx: JobContext, spec: SourceSpec, ledger_path: str) -> dict[str, str]:
    """Plan and ingest one source; plan again when a concurrent run claimed the table first.

    Returns:
        The files of this run that could not be read, with their reasons.

    Raises:
        ConcurrentWriteError: the claim was lost ``_CLAIM_ATTEMPTS`` times in a row.
    """
    table = ctx.path("bronze", spec.name)
    name = spec.name
    for attempt in range(1, _CLAIM_ATTEMPTS + 1):
        # The version first: a commit landing after it makes this run's claim fail, whatever
        # the ledger read next says.
        base = ctx.tables.version(table) if ctx.tables.exists(table) else -1
        recover_unrecorded_batches(ctx, spec, ledger_path)
        ledger = read_ledger(ctx, ledger_path, spec.name)
        files = list_landed_files(spec, ctx.settings.lakehouse.landing)
        plan = plan_ingest(spec, files, ledger)
        claim = AppTransaction(bronze_claim_id(spec.name), base + 1)
        try:
            rows, rescued, failed = ingest(ctx, spec, plan, ledger_path, claim, ledger)
        except ConcurrentWriteError as exc:
            log.warning(
                "bronze_claim_lost",
                extra={
                    "fields": {
                        "source": name,
                        "attempt": attempt,
                        "planned_from_version": base,
                        "error": str(exc),
                    }
                },
            )
            continue
        ctx.summary[f"{name}.files_found"] = len(files)
        ctx.summary[f"{name}.files_new"] = len(plan.new) - len(
            [f for f in plan.new if f.path in failed]
        )
        ctx.summary[f"{name}.files_changed_reingested"] = len(plan.changed) - len(
            [f for f in plan.changed if f.path in failed]
        )
        ctx.summary[f"{name}.files_changed_skipped"] = len(plan.skipped)
        ctx.summary[f"{name}.files_unchanged"] = len(plan.unchanged)
        ctx.summary[f"{name}.files_failed"] = len(failed)
        ctx.summary[f"{name}.rows_ingested"] = rows
        ctx.summary[f"{name}.rows_rescued"] = rescued
        return failed
    raise ConcurrentWriteError(
        f"bronze {name}: concurrent runs claimed {table} first {_CLAIM_ATTEMPTS} times in a "
        "row; nothing of this run was committed for this source (run it again)"
    )


def bronze_claim_id(source: str) -> str:
    """The application id claimed by each bronze commit of ``source``."""
    return f"featurelake.bronze.{source}"


def ledger_claim_id(source: str) -> str:
    """The application id claimed by the ledger entries of ``source``'s bronze commits."""
    return f"featurelake.ledger.{source}"


def read_ledger(ctx: JobContext, ledger_path: str, source: str) -> list[dict[str, Any]]:
    """The ledger rows of one source (small: one row per ingested file)."""
    if not ctx.tables.exists(ledger_path):
        return []
    # Timestamps travel as epoch microseconds: collect() would render them in the driver's
    # local time zone.
    rows = (
        ctx.tables.read(ledger_path)
        .where(F.col("source") == source)
        .withColumns(
            {
                "modified_at": F.unix_micros("modified_at"),
                "ingested_at": F.unix_micros("ingested_at"),
            }
        )
        .collect()
    )
    return [
        {
            **row.asDict(),
            "modified_at": _from_micros(row["modified_at"]),
            "ingested_at": _from_micros(row["ingested_at"]),
        }
        for row in rows
    ]


def _from_micros(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value // 1_000_000, timezone.utc).replace(
        microsecond=value % 1_000_000
    )


def ingest(
    ctx: JobContext,
    spec: SourceSpec,
    plan: IngestPlan,
    ledger_path: str,
    claim: AppTransaction,
    ledger: list[dict[str, Any]],
) -> tuple[int, int, dict[str, str]]:
    """Append the plan's readable files to bronze in one commit, then record them in the ledger.

    Args:
        ctx: the job context.
        spec: the source.
        plan: what to ingest.
        ledger_path: the ingest ledger.
        claim: committed with the bronze rows (see :func:`ingest_with_claim`).
        ledger: the source's ledger rows the plan was made from.

    Returns:
        (rows ingested, rows with ``_rescued_data``, unreadable files with their reasons).

    Raises:
        ConcurrentWriteError: the claim was lost; nothing was committed.
    """
    now = datetime.now(timezone.utc)
    batch_id = f"{spec.name}-{now.strftime('%Y%m%dT%H%M%SZ')}-{ctx.run_id}"
    table = ctx.path("bronze", spec.name)
    counts: dict[str, tuple[int, int]] = {}
    failed = find_unreadable(plan.to_ingest, spec)
    readable = [f for f in plan.to_ingest if f.path not in failed]
    committed_version = None
    if readable:
        raw = read_source_rows(ctx.spark, spec, [f.path for f in readable])
        bronze = raw.transform(with_lineage, spec=spec, batch_id=batch_id, ingested_at=now)
        files_meta = [
            {
                "path": f.path,
                "size": f.size,
                "modified_at": f.modified_at.isoformat(),
                "sha256": f.sha256,
                "status": plan.statuses[f.path],
            }
            for f in readable
        ]
        paths = [f.path for f in readable]
        observation = None
        if len(paths) <= _OBSERVED_FILES_MAX:
            observation = Observation(f"bronze-{batch_id}")
            bronze = bronze.observe(observation, *per_file_counts(paths))
        result = ctx.tables.write(
            bronze,
            table,
            mode="append",
            metadata={"source": spec.name, "batch_id": batch_id, _FILES_META: files_meta},
            txn=claim,
        )
        committed_version = result.version
        counts = observed_counts(observation, paths) if observation is not None else {}
        if sum(c[0] for c in counts.values()) != result.rows_written:
            # many files, or counts that do not add up: read the batch back
            counts = batch_counts(ctx, table, batch_id)
    entries = [
        _ledger_row(
            spec.name, f, batch_id, counts.get(f.path, (0, 0))[0], plan.statuses[f.path], now
        )
        for f in readable + list(plan.skipped)
    ]
    entries += [
        _ledger_row(spec.name, f, batch_id, 0, "failed", now, failed[f.path])
        for f in plan.to_ingest
        if f.path in failed and not _failed_before(f, failed[f.path], ledger)
    ]
    if entries:
        record_in_ledger(ctx, spec.name, ledger_path, entries, batch_id, committed_version)
    for landed in plan.skipped:
        log.warning(
            "changed_file_skipped", extra={"fields": {"source": spec.name, "path": landed.path}}
        )
    rows = sum(c[0] for c in counts.values())
    rescued = sum(c[1] for c in counts.values())
    log.info(
        "source_ingested",
        extra={
            "fields": {
                "source": spec.name,
                "batch_id": batch_id,
                "files": len(readable),
                "files_failed": len(failed),
                "rows": rows,
                "rows_rescued": rescued,
                "rows_per_file": {path: c[0] for path, c in counts.items()},
            }
        },
    )
    return rows, rescued, failed


def find_unreadable(files: Sequence[LandedFile], spec: SourceSpec) -> dict[str, str]:
    """The files Spark could not read to their end, with the reason (checked concurrently)."""
    if not files:
        return {}
    with ThreadPoolExecutor(max_workers=min(4, len(files))) as pool:  # zlib frees the GIL
        reasons = list(pool.map(lambda f: unreadable_reason(f.path, spec.format), files))
    return {f.path: reason for f, reason in zip(files, reasons, strict=True) if reason}


def _failed_before(landed: LandedFile, reason: str, ledger: list[dict[str, Any]]) -> bool:
    """True when the ledger's latest entry for the file records this same failure."""
    entries = [r for r in ledger if r["path"] == landed.path]
    if not entries:
        return False
    latest = max(
        entries, key=lambda r: r["ingested_at"] or datetime.min.replace(tzinfo=timezone.utc)
    )
    return (
        latest["status"] == "failed"
        and latest["size"] == landed.size
        and latest.get("sha256") == landed.sha256
        and latest.get("error") == reason
    )


def record_in_ledger(
    ctx: JobContext,
    source: str,
    ledger_path: str,
    entries: list[tuple[Any, ...]],
    batch_id: str,
    bronze_version: int | None,
    recovered: bool = False,
) -> None:
    """Append ledger entries; those of a bronze commit claim its version, so they land once.

    A concurrent run that recovered the same commit (it saw the bronze commit before this run
    wrote the ledger) has recorded these entries already: that is not an error.
    """
    txn = (
        AppTransaction(ledger_claim_id(source), bronze_version)
        if bronze_version is not None
        else None
    )
    metadata: dict[str, Any] = {"source": source, "batch_id": batch_id}
    if recovered:
        metadata["recovered"] = True
    try:
        with _LEDGER_LOCK:  # sources ingested concurrently share the ledger (and its creation)
            ctx.tables.append_rows(
                entries,
                INGESTED_FILES_SCHEMA,
                ledger_path,
                metadata=metadata,
                schema_evolution=True,
                txn=txn,
            )
    except AlreadyCommittedError:
        log.info(
            "ledger_already_recorded",
            extra={
                "fields": {"source": source, "batch_id": batch_id, "bronze_version": bronze_version}
            },
        )


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
    return {
        path: (int(measured[f"rows_{i}"]), int(measured[f"rescued_{i}"]))
        for i, path in enumerate(paths)
    }


def batch_counts(ctx: JobContext, table: str, batch_id: str) -> dict[str, tuple[int, int]]:
    """Rows and rescued rows per source file of one batch, read back from the committed table."""
    rows = (
        ctx.tables.read(table, record=False)
        .where(F.col(BATCH_ID) == batch_id)
        .groupBy(SOURCE_FILE)
        .agg(F.count(F.lit(1)).alias("rows"), F.count(F.col(RESCUED_DATA)).alias("rescued"))
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
            missing.append((int(entry["version"]), batch, files, int(entry["timestamp"])))
    # Oldest first: each batch's ledger entries claim its bronze version, which must grow.
    for version, batch, files, millis in sorted(missing, key=lambda m: m[0]):
        counts = batch_counts(ctx, table, batch)
        at = datetime.fromtimestamp(millis / 1000, timezone.utc)
        entries = [
            _ledger_row(
                spec.name,
                LandedFile(
                    f["path"], int(f["size"]), datetime.fromisoformat(f["modified_at"]), f["sha256"]
                ),
                batch,
                counts.get(f["path"], (0, 0))[0],
                f["status"],
                at,
            )
            for f in files
        ]
        record_in_ledger(ctx, spec.name, ledger_path, entries, batch, version, recovered=True)
        log.warning(
            "ledger_recovered",
            extra={"fields": {"source": spec.name, "batch_id": batch, "files": len(entries)}},
        )


def _meta(entry: Mapping[str, Any], key: str) -> Any:
    value = entry.get(f"featurelake.{key}")
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def _ledger_row(
    source: str,
    landed: LandedFile,
    batch_id: str,
    rows: int,
    status: str,
    at: datetime,
    error: str | None = None,
) -> tuple[Any, ...]:
    if error is not None and len(error) > ERROR_PREVIEW:
        error = error[:ERROR_PREVIEW] + "..."
    return (
        source,
        landed.path,
        landed.size,
        landed.modified_at,
        landed.sha256,
        batch_id,
        rows,
        status,
        at,
        error,
    )
