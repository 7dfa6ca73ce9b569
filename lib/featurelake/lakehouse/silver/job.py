"""The silver job's body: build every table, judge and reconcile, then commit in order."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from pyspark.sql import DataFrame

from featurelake.core.concurrency import run_concurrently
from featurelake.core.config import Settings
from featurelake.core.errors import DataError, UserError
from featurelake.core.runner import JobContext
from featurelake.delta import DeltaTables, StagedWrite, TableNotFoundError
from featurelake.lakehouse.pii import (
    load_pii_key,
)
from featurelake.lakehouse.silver.counts import (
    METRICS_SCHEMA,
    METRICS_TABLE,
    SilverCounts,
    fatal_examples,
    fatal_failures,
    quality_metric_rows,
)
from featurelake.lakehouse.silver.pairs import _PAIR_BRONZE, _PAIR_RUN
from featurelake.lakehouse.silver.spec import SilverTableSpec, load_table_specs, silver_constraints
from featurelake.lakehouse.silver.transform import SilverPlan, build_silver

log = logging.getLogger(__name__)


def _select(
    specs: dict[str, SilverTableSpec], names: Sequence[str] | None
) -> list[SilverTableSpec]:
    if not names:
        return list(specs.values())
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise UserError(f"unknown silver table(s) {unknown}; declared: {sorted(specs)}")
    return [specs[n] for n in names]


def _streaming_tables(ctx: JobContext, specs: dict[str, SilverTableSpec]) -> set[str]:
    """Names of the silver tables fed by a streaming source (the stream job writes them)."""
    from featurelake.lakehouse.sources import load_sources

    streaming = {name for name, source in load_sources(ctx.settings).items() if source.is_streaming}
    return {spec.name for spec in specs.values() if spec.source in streaming}


def read_references(
    tables: DeltaTables, settings: Settings, spec: SilverTableSpec
) -> dict[str, DataFrame]:
    """The tables the declaration's ``in_reference`` rules check against, at their latest version.

    Raises:
        DataError: a reference table does not exist.
    """
    references = {}
    for name in spec.references:
        layer, table = name.split("/")
        path = settings.lakehouse.table_path(layer, table)
        try:
            references[name] = tables.read(path)
        except TableNotFoundError as exc:
            raise missing_reference(spec, name, path) from exc
    return references


def missing_reference(spec: SilverTableSpec, name: str, path: str) -> DataError:
    """The error for an ``in_reference`` rule whose table ``name`` is not at ``path``."""
    return DataError(
        f"silver table {spec.name}: its in_reference rules need {name}, which does not "
        f"exist at {path}"
    )


def _utc(value: datetime) -> datetime:
    return (
        value.replace(tzinfo=timezone.utc)
        if value.tzinfo is None
        else value.astimezone(timezone.utc)
    )


def _reconciliation_error(
    spec: SilverTableSpec, bronze_rows: int, counts: SilverCounts, silver: int, quarantine: int
) -> str:
    return (
        f"silver table {spec.name}: counts do not reconcile: bronze rows read {bronze_rows}, "
        f"classified {counts.rows_in} = silver {counts.rows_out} + quarantined "
        f"{counts.rows_quarantined} + duplicates {counts.rows_deduplicated}; files written hold "
        f"{silver} silver and {quarantine} quarantine rows; nothing was committed"
    )


def _fail_message(spec: SilverTableSpec, plan: SilverPlan, counts: SilverCounts) -> str | None:
    broken = fatal_failures(counts)
    if not broken:
        return None
    parts = []
    for rule, n, detail in broken:
        query = fatal_examples(plan, spec, rule)
        if query is not None:
            detail = "e.g. " + ", ".join(repr(r["example"]) for r in query.collect())
        parts.append(f"rule {rule} (severity fail) broken by {n} row(s): {detail}")
    return f"silver table {spec.name}: " + "; ".join(parts)


def _replace_metrics(
    ctx: JobContext, spec: SilverTableSpec, rows: list[dict[str, Any]], bronze_version: int
) -> None:
    """Record this run's metrics in place of those of earlier runs over the same bronze version.

    One commit: the earlier runs' rows of this table are replaced by this run's (the rows
    written are this run's only).
    """
    path = ctx.path("ops", METRICS_TABLE)
    meta = {"silver_table": spec.name, "bronze_version": str(bronze_version)}
    history = ctx.tables.history(path) if ctx.tables.exists(path) else []
    stale = sorted(
        {
            entry["featurelake.run_id"]
            for entry in history
            if entry.get("featurelake.silver_table") == spec.name
            and entry.get("featurelake.bronze_version") == str(bronze_version)
            and entry.get("featurelake.run_id") != ctx.run_id
        }
    )
    if not stale:  # the first metrics, or none of an earlier run to replace
        ctx.tables.append_rows(rows, METRICS_SCHEMA, path, metadata=meta)
        return
    where = {"table": [spec.name], "run_id": [*stale, ctx.run_id]}
    ctx.tables.replace_rows(rows, METRICS_SCHEMA, path, where, metadata=meta)
    log.info("quality_metrics_replaced", extra={"fields": {"table": spec.name, "runs": stale}})


def run_silver(
    ctx: JobContext, tables: Sequence[str] | None = None, as_of: datetime | None = None
) -> dict[str, dict[str, Any]]:
    """Rebuild silver tables and their quarantines from all of bronze; record quality metrics.

    The body of the ``silver`` job and of ``feature-pipeline``. Full rebuild (overwrite) each
    run: dedup keeps the latest record per key across *all* batches, so it must see them all,
    and an overwrite from the same bronze snapshot gives the same rows - idempotent by
    construction.

    Per table, silver and quarantine files are written but not committed (one pass over the
    bronze rows each; every count is measured during these two passes); tables are built
    concurrently, up to ``spark.concurrent_tables`` at a time. Then ``fail`` rules and
    checks of every selected table are judged and the counts reconciled - bronze rows read
    (from the Delta log) = silver + quarantined + duplicates, and the staged files hold
    exactly the counted rows. Only when every table passes is anything committed; otherwise
    the staged files are removed. Metrics of an earlier run of a table over the same bronze
    version are replaced.

    Args:
        ctx: the job context.
        tables: silver table names (default: every declaration in ``conf/<silver.tables_dir>``).
        as_of: "now" for ``not_future`` rules (default: ``silver.as_of``, else the run start).

    Returns:
        Per table: bronze rows, silver rows, quarantined, duplicates removed, reconciled, rows
        per quarantine rule, warnings, silver version (also in ``ctx.summary["silver"]``).

    Raises:
        DataError: a ``fail`` rule or check broke (nothing committed), a bronze table is
            missing, or the counts do not reconcile.
        ConfigError: an invalid declaration. PiiKeyError: the PII key variable is unset.
    """
    settings = ctx.settings.silver
    declared = load_table_specs(ctx.settings.conf_path(settings.tables_dir))
    streamed = _streaming_tables(ctx, declared)
    if tables:
        named = sorted(streamed & set(tables))
        if named:
            raise UserError(
                f"silver table(s) {named} are fed by a streaming source: the stream job writes "
                "them (./spark-submit.sh stream)"
            )
    specs = _select({n: s for n, s in declared.items() if n not in streamed}, tables)
    started = datetime.now(timezone.utc)
    as_of = _utc(as_of or settings.as_of or started)
    needs_key = any(p.action == "hash" for spec in specs for p in spec.pii)
    key_file = settings.pii_key_file
    if key_file and not os.path.isabs(key_file):
        key_file = os.path.join(ctx.settings.lakehouse.root, key_file)
    pii_key = load_pii_key(settings.pii_key_env, key_file) if needs_key else None

    # Phase 1: build, write uncommitted, count and judge every table (tables concurrently).
    staged: list[StagedWrite] = []

    def stage_table(spec: SilverTableSpec) -> tuple[Any, ...]:
        # Each table's commits name only the bronze table it was built from.
        with ctx.tables.lineage.scope():
            return _stage_table(spec)

    def _stage_table(spec: SilverTableSpec) -> tuple[Any, ...]:
        silver_path = ctx.path("silver", spec.name)
        if ctx.tables.exists(silver_path):  # rules dropped from the declaration stop holding
            ctx.tables.set_constraints(silver_path, silver_constraints(spec), drop_only=True)
        bronze_path = ctx.path("bronze", spec.source)
        try:
            bronze = ctx.tables.read(bronze_path)
        except TableNotFoundError as exc:
            raise DataError(
                f"silver table {spec.name}: bronze table {spec.source} not found at "
                f"{bronze_path}; run the bronze job first"
            ) from exc
        bronze_version = ctx.tables.lineage.reads[bronze_path]
        bronze_rows = ctx.tables.row_count(bronze_path, bronze_version)  # from the log's stats
        plan = build_silver(
            bronze,
            spec,
            as_of=as_of,
            run_id=ctx.run_id,
            quarantined_at=started,
            pii_key=pii_key,
            observe=True,
            references=read_references(ctx.tables, ctx.settings, spec),
        )
        pair = {_PAIR_RUN: ctx.run_id, _PAIR_BRONZE: str(bronze_version)}
        silver_write = ctx.tables.stage(
            plan.silver,
            ctx.path("silver", spec.name),
            "overwrite",
            overwrite_schema=True,
            metadata=pair,
            constraints=silver_constraints(spec),
        )
        staged.append(silver_write)
        quarantine_write = ctx.tables.stage(
            plan.quarantine,
            ctx.path("silver", spec.quarantine_name),
            "overwrite",
            overwrite_schema=True,
            metadata=pair,
        )
        staged.append(quarantine_write)
        counts = plan.counts(spec)
        message = _fail_message(spec, plan, counts)
        if message:
            raise DataError(message + "; nothing was committed")
        if (
            (bronze_rows >= 0 and counts.rows_in != bronze_rows)
            or not counts.reconciles
            or (silver_write.rows, quarantine_write.rows)
            != (counts.rows_out, counts.rows_quarantined)
        ):
            raise DataError(
                _reconciliation_error(
                    spec, bronze_rows, counts, silver_write.rows, quarantine_write.rows
                )
            )
        _log_warnings(spec, counts)
        return spec, counts, bronze_version, silver_write, quarantine_write

    try:
        built = run_concurrently(
            [functools.partial(stage_table, spec) for spec in specs],
            ctx.settings.spark.concurrent_tables,
        )

        # Phase 2: the metrics, then the quarantine, then silver - the commit that publishes
        # the run. A run killed before it leaves silver as it was, paired with the quarantine
        # version of its own run (read_silver_pair finds it); a published silver always has
        # its quarantine and its metrics.
        reports = {}
        for spec, counts, bronze_version, silver_write, quarantine_write in built:
            rows = quality_metric_rows(spec, counts, run_id=ctx.run_id, measured_at=started)
            with ctx.tables.lineage.scope():  # the metrics came from this table's bronze
                ctx.tables.lineage.record_read(ctx.path("bronze", spec.source), bronze_version)
                _replace_metrics(ctx, spec, rows, bronze_version)
            quarantined = ctx.tables.commit(quarantine_write)
            written = ctx.tables.commit(silver_write)
            ctx.tables.set_constraints(ctx.path("silver", spec.name), silver_constraints(spec))
            report = {
                "bronze_rows": counts.rows_in,
                "silver_rows": written.rows_written,
                "quarantined": quarantined.rows_written,
                "duplicates_removed": counts.rows_deduplicated,
                "reconciled": counts.rows_in
                == written.rows_written + quarantined.rows_written + counts.rows_deduplicated,
                "quarantined_by_rule": {
                    rule: n
                    for (rule, sev), n in counts.rule_failures.items()
                    if sev == "drop" and n
                },
                "warnings": {
                    rule: n
                    for (rule, sev), n in counts.rule_failures.items()
                    if sev == "warn" and n
                },
                "silver_version": written.version,
            }
            reports[spec.name] = report
            log.info("silver_table_built", extra={"fields": {"table": spec.name, **report}})
        ctx.summary["as_of"] = as_of.isoformat()
        ctx.summary["silver"] = reports
        return reports
    finally:
        for write in staged:
            ctx.tables.abort(write)  # a no-op for the committed ones


def _log_warnings(spec: SilverTableSpec, counts: SilverCounts) -> None:
    for (rule, severity), n in counts.rule_failures.items():
        if severity == "warn" and n:
            log.warning(
                "expectation_warning",
                extra={"fields": {"table": spec.name, "rule": rule, "rows": n}},
            )
    for check in counts.checks:
        if check.severity == "warn" and not check.passed:
            log.warning(
                "table_check_warning",
                extra={"fields": {"table": spec.name, "rule": check.rule, "detail": check.detail}},
            )
