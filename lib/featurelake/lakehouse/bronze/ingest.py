"""The bronze ingest of one source: plan against the ledger, read, append in one claimed
commit, record in the ledger; recover a ledger a killed run left behind.

Files are planned here (new and changed files of the landing folder); a JDBC increment and
HTTP pages by :mod:`~featurelake.lakehouse.bronze.jdbc` and
:mod:`~featurelake.lakehouse.bronze.http_json`. Every kind goes through the same claim, the same
commit metadata and the same ledger (:mod:`~featurelake.lakehouse.bronze.batches`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

from featurelake.core.runner import JobContext
from featurelake.delta import AppTransaction, ConcurrentWriteError
from featurelake.lakehouse.bronze import (
    IngestPlan,
    LandedFile,
    list_landed_files,
    plan_ingest,
    read_source_rows,
    unreadable_reason,
)
from featurelake.lakehouse.bronze.batches import (
    ENTRIES_META,
    BatchEntry,
    append_batch,
    batch_counts,
    bronze_claim_id,
    new_batch_id,
    read_ledger,
    record_in_ledger,
)
from featurelake.lakehouse.bronze.http_json import ingest_http_pages
from featurelake.lakehouse.bronze.jdbc import ingest_jdbc_increment
from featurelake.lakehouse.sources import SourceSpec

log = logging.getLogger(__name__)


# Up to this many files per batch, rows per file are counted while the batch is written (two
# aggregates per file in one observation); a larger batch is read back once and grouped.
_OBSERVED_FILES_MAX = 64


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
        claim = AppTransaction(bronze_claim_id(spec.name), base + 1)
        try:
            if spec.format == "jdbc":
                ctx.summary.update(ingest_jdbc_increment(ctx, spec, ledger, ledger_path, claim))
                return {}
            if spec.format == "http_json":
                ctx.summary.update(ingest_http_pages(ctx, spec, ledger, ledger_path, claim))
                return {}
            files = list_landed_files(spec, ctx.settings.lakehouse.landing)
            plan = plan_ingest(spec, files, ledger)
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
    batch_id = new_batch_id(spec.name, now, ctx.run_id)
    counts: dict[str, tuple[int, int]] = {}
    failed = find_unreadable(plan.to_ingest, spec)
    readable = [f for f in plan.to_ingest if f.path not in failed]
    committed_version = None
    if readable:
        committed_version, counts = append_batch(
            ctx,
            spec,
            read_source_rows(ctx.spark, spec, [f.path for f in readable]),
            [_entry(f, plan.statuses[f.path]) for f in readable],
            batch_id=batch_id,
            ingested_at=now,
            claim=claim,
            observe_up_to=_OBSERVED_FILES_MAX,
        )
    entries = [
        _entry(f, plan.statuses[f.path]).ledger_row(
            spec.name, batch_id, counts.get(f.path, (0, 0))[0], now
        )
        for f in readable + list(plan.skipped)
    ]
    entries += [
        _entry(f, "failed").ledger_row(spec.name, batch_id, 0, now, error=failed[f.path])
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
        files = _meta(entry, ENTRIES_META)
        if batch and files and batch not in recorded:
            missing.append((int(entry["version"]), batch, files, int(entry["timestamp"])))
    # Oldest first: each batch's ledger entries claim its bronze version, which must grow.
    for version, batch, files, millis in sorted(missing, key=lambda m: m[0]):
        counts = batch_counts(ctx, table, batch)
        at = datetime.fromtimestamp(millis / 1000, timezone.utc)
        entries = [
            BatchEntry.from_metadata(f).ledger_row(
                spec.name, batch, counts.get(f["path"], (0, 0))[0], at
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


def _entry(landed: LandedFile, status: str) -> BatchEntry:
    return BatchEntry(landed.path, landed.size, landed.modified_at, landed.sha256, status)
