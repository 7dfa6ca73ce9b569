"""Gold assembly: silver frames in, gold frames out, plus the gold run used by the jobs.

The pure part (configuration, snapshot ranges, :func:`build_credit_gold`,
:func:`build_customer_gold`) only composes the feature library in
:mod:`~featurelake.lakehouse.feature_library`. :func:`run_gold` is the I/O edge of the ``gold`` and
``feature-pipeline`` jobs: it reads silver through ``ctx.tables``, calls the pure part and
writes each gold table together with its feature metadata (``gold/_feature_metadata`` rows and
commit metadata naming the preprocessing configuration).

Tables written (docs/CONTRACTS.md): ``gold/credit_features``, ``gold/credit_labels``,
``gold/customer_features_daily`` (partitioned by ``as_of_date``; a run replaces the dates it
computed), ``gold/customer_features`` (the latest snapshot) and ``gold/_feature_metadata``.
"""

from __future__ import annotations

import argparse
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.core.concurrency import run_concurrently
from featurelake.core.config import load_yaml_file, parse_model
from featurelake.core.errors import UserError
from featurelake.lakehouse.feature_library.credit import (
    build_credit_features,
    select_credit_features,
    select_credit_labels,
)
from featurelake.lakehouse.feature_library.customers import (
    as_of_points,
    as_of_timestamps,
    as_utc,
    build_customer_features,
    end_of_day,
)
from featurelake.lakehouse.feature_library.metadata import (
    FEATURE_METADATA_SCHEMA,
    FeatureSpec,
    credit_feature_specs,
    credit_label_specs,
    customer_feature_specs,
    describe_columns,
    feature_metadata_rows,
)

if TYPE_CHECKING:
    from featurelake.core.runner import JobContext

__all__ = [
    "GOLD_CONFIG_FILE",
    "GoldConfig",
    "GoldRunOptions",
    "add_gold_arguments",
    "build_credit_gold",
    "build_customer_gold",
    "gold_options_from_args",
    "load_gold_config",
    "parse_as_of",
    "resolve_snapshot_range",
    "run_gold",
]

log = logging.getLogger(__name__)

#: The preprocessing configuration file, relative to the configuration directory.
GOLD_CONFIG_FILE = "features_gold.yaml"
PARTS = ("credit", "customers")
#: ``--only windowed``: the windowed (streaming) views' tables recomputed in one batch from
#: their events - the same rows the stream job keeps up to date (not part of a default run:
#: the stream job owns those tables).
WINDOWED = "windowed"
_METADATA_LOCK = threading.Lock()  # serialises appends to gold/_feature_metadata


# --------------------------------------------------------------------------------------------
# Configuration (conf/features_gold.yaml)
# --------------------------------------------------------------------------------------------


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreditGoldConfig(_Frozen):
    """Credit feature preprocessing."""

    age_bin_edges: tuple[int, ...] = Field(min_length=1)
    zero_bill_pay_ratio: float

    @field_validator("age_bin_edges")
    @classmethod
    def _increasing(cls, edges: tuple[int, ...]) -> tuple[int, ...]:
        if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise ValueError(f"must be strictly increasing, got {list(edges)}")
        return edges


class CustomerGoldConfig(_Frozen):
    """Customer feature preprocessing."""

    rfm_quantiles: int = Field(ge=1)
    windows_days: tuple[int, ...] = Field(min_length=1)

    @field_validator("windows_days")
    @classmethod
    def _positive_unique(cls, windows: tuple[int, ...]) -> tuple[int, ...]:
        if any(w <= 0 for w in windows) or len(set(windows)) != len(windows):
            raise ValueError(f"must be distinct positive numbers of days, got {list(windows)}")
        return windows


class SnapshotConfig(_Frozen):
    """Which as-of dates the daily snapshot table gets."""

    daily: bool = True
    start: date | None = None
    end: date | None = None
    cadence_days: int = Field(default=1, ge=1)


class GoldConfig(_Frozen):
    """The whole gold preprocessing configuration."""

    credit: CreditGoldConfig
    customers: CustomerGoldConfig
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)


def load_gold_config(path: str | Path) -> GoldConfig:
    """Read and validate ``conf/features_gold.yaml``.

    Raises:
        ConfigError: the file is missing or invalid; the message names the file and key.
    """
    return parse_model(GoldConfig, load_yaml_file(path), str(path))


# --------------------------------------------------------------------------------------------
# Pure assembly
# --------------------------------------------------------------------------------------------


def build_credit_gold(clients: DataFrame, config: CreditGoldConfig) -> tuple[DataFrame, DataFrame]:
    """``gold/credit_features`` and ``gold/credit_labels`` from ``silver/credit_clients``.

    Args:
        clients: the silver credit clients.
        config: credit preprocessing.

    Returns:
        (features without the label, labels keyed by ``id``).

    Raises:
        MissingColumnsError: a silver column is missing.
    """
    features = build_credit_features(
        clients, age_bin_edges=config.age_bin_edges, zero_bill_pay_ratio=config.zero_bill_pay_ratio
    )
    return select_credit_features(features), select_credit_labels(clients)


def build_customer_gold(
    transactions: DataFrame, points: DataFrame, config: CustomerGoldConfig
) -> DataFrame:
    """Customer features for every as-of point (:mod:`~.feature_library.customers`).

    Raises:
        MissingColumnsError: a silver column is missing.
    """
    return build_customer_features(
        transactions, points, windows=config.windows_days, rfm_quantiles=config.rfm_quantiles
    )


def resolve_snapshot_range(
    config: SnapshotConfig,
    data_first: date,
    data_last: date,
    start: date | None = None,
    end: date | None = None,
) -> tuple[date, date]:
    """The daily snapshot range: arguments, else conf, else the data's first and last dates.

    Raises:
        ValueError: the resolved end is before the start.
    """
    first = start or config.start or data_first
    last = end or config.end or data_last
    if last < first:
        raise UserError(f"snapshot end {last} is before snapshot start {first}")
    return first, last


def parse_as_of(text: str) -> datetime:
    """An ``--as-of`` value: a date means the end of that day; a timestamp is used as given.

    Raises:
        ValueError: neither an ISO date nor an ISO timestamp.
    """
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time.max)
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise UserError(f"--as-of must be YYYY-MM-DD or an ISO timestamp, got {text!r}") from exc


def _snapshot_dates(start: date, end: date, cadence: int) -> list[date]:
    return [start + timedelta(days=i) for i in range(0, (end - start).days + 1, cadence)]


# --------------------------------------------------------------------------------------------
# Job arguments shared by `gold` and `feature-pipeline`
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GoldRunOptions:
    """What one gold run builds.

    Attributes:
        parts: ``credit``, ``customers`` and/or ``windowed``.
        as_of: the latest snapshot's as-of timestamp; None = end of the snapshot end date.
        snapshot_start: first daily as-of date; None = conf, else the first transaction date.
        snapshot_end: last daily as-of date; None = conf, else the last transaction date.
        daily: build the daily table; None = conf ``snapshots.daily``.
    """

    parts: tuple[str, ...] = PARTS
    as_of: datetime | None = None
    snapshot_start: date | None = None
    snapshot_end: date | None = None
    daily: bool | None = None


def add_gold_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the gold options (``--only``, ``--as-of``, ``--snapshot-start/-end``, ``--no-daily``)."""
    parser.add_argument(
        "--only",
        choices=(*PARTS, WINDOWED),
        action="append",
        default=None,
        help="build only these gold tables (repeatable; default: credit and customers); "
        "windowed: recompute the windowed views' tables from their events",
    )
    parser.add_argument(
        "--as-of",
        default=None,
        help="latest snapshot as of DATE (end of that day) or an ISO timestamp "
        "(default: end of the snapshot end date)",
    )
    parser.add_argument(
        "--snapshot-start",
        type=date.fromisoformat,
        default=None,
        help="first daily as-of date YYYY-MM-DD (default: conf, else data)",
    )
    parser.add_argument(
        "--snapshot-end",
        type=date.fromisoformat,
        default=None,
        help="last daily as-of date YYYY-MM-DD (default: conf, else data)",
    )
    parser.add_argument(
        "--no-daily",
        action="store_true",
        help="skip gold/customer_features_daily (build the latest snapshot only)",
    )


def gold_options_from_args(args: argparse.Namespace) -> GoldRunOptions:
    """Turn parsed gold arguments into :class:`GoldRunOptions`.

    Raises:
        ValueError: a malformed ``--as-of``.
    """
    return GoldRunOptions(
        parts=tuple(args.only) if args.only else PARTS,
        as_of=parse_as_of(args.as_of) if args.as_of else None,
        snapshot_start=args.snapshot_start,
        snapshot_end=args.snapshot_end,
        daily=False if args.no_daily else None,
    )


# --------------------------------------------------------------------------------------------
# The gold run: the I/O edge (reads silver, writes gold through ctx.tables)
# --------------------------------------------------------------------------------------------


_CHANGE_FEED = {"delta.enableChangeDataFeed": "true"}


def _write_with_metadata(
    ctx: JobContext,
    df: DataFrame,
    table: str,
    specs: Sequence[FeatureSpec],
    preprocessing: dict[str, Any],
    **write_options: Any,
) -> int:
    """Write one gold table and its feature metadata; return the rows written."""
    records = describe_columns(df, specs)  # fails before writing when metadata is incomplete
    path = ctx.path("gold", table)
    result = ctx.tables.write(
        df,
        path,
        "overwrite",
        metadata={
            "feature_metadata_table": "gold/_feature_metadata",
            "features": [r["feature"] for r in records],
            "preprocessing": preprocessing,
        },
        # materialize then reads only the rows a run changed (delta-spark's change feed)
        properties=_CHANGE_FEED if ctx.tables.backend == "native" else None,
        **write_options,
    )
    meta = feature_metadata_rows(
        table=f"gold/{table}",
        delta_version=result.version,
        records=records,
        preprocessing=preprocessing,
    )
    with _METADATA_LOCK:  # gold parts built concurrently share the metadata table
        ctx.tables.append_rows(
            meta,
            FEATURE_METADATA_SCHEMA,
            ctx.path("gold", "_feature_metadata"),
            metadata={"describes": f"gold/{table}@{result.version}"},
        )
    ctx.summary.setdefault("gold_versions", {})[f"gold/{table}"] = result.version
    return result.rows_written


def _read_silver(ctx: JobContext, table: str) -> DataFrame:
    """A silver table, refused when its quarantine was built by another run."""
    from featurelake.lakehouse.silver import read_silver

    return read_silver(
        ctx.tables, ctx.path("silver", table), ctx.path("silver", f"{table}_quarantine")
    )


def _run_credit(ctx: JobContext, config: GoldConfig) -> None:
    clients = _read_silver(ctx, "credit_clients")
    features, labels = build_credit_gold(clients, config.credit)
    preprocessing = {"credit": config.credit.model_dump(mode="json")}
    ctx.summary["credit_features_rows"] = _write_with_metadata(
        ctx, features, "credit_features", credit_feature_specs(), preprocessing
    )
    ctx.summary["credit_labels_rows"] = _write_with_metadata(
        ctx, labels, "credit_labels", credit_label_specs(), preprocessing
    )


def _transaction_span(
    ctx: JobContext, path: str, transactions: DataFrame
) -> tuple[date | None, date | None, int]:
    """First and last invoice date and rows without a customer, of the version just read.

    From the Delta log's file statistics when every file has them (no pass over the data
    before the features' own); otherwise from the rows.
    """
    stats = ctx.tables.column_stats(
        path, ["invoice_date", "customer_id"], version=ctx.tables.lineage.reads[path]
    )
    if stats is not None:
        dates = stats["invoice_date"]
        return dates.min, dates.max, stats["customer_id"].null_count
    span = transactions.agg(
        F.min("invoice_date").alias("first"),
        F.max("invoice_date").alias("last"),
        F.sum(F.col("customer_id").isNull().cast("long")).alias("no_customer"),
    ).first()
    assert span is not None  # a global aggregate has one row
    return span["first"], span["last"], int(span["no_customer"] or 0)


def _run_customers(ctx: JobContext, config: GoldConfig, options: GoldRunOptions) -> None:
    from featurelake.core.errors import DataError

    path = ctx.path("silver", "transactions")
    transactions = _read_silver(ctx, "transactions")
    first, last, no_customer = _transaction_span(ctx, path, transactions)
    if first is None or last is None:
        raise DataError(
            "silver/transactions has no rows with an invoice date: nothing to build "
            "customer features from (run the silver job first)"
        )
    start, end = resolve_snapshot_range(
        config.snapshots, first, last, options.snapshot_start, options.snapshot_end
    )
    latest_ts = options.as_of or datetime.combine(end, time.max)
    daily = config.snapshots.daily if options.daily is None else options.daily
    cadence = config.snapshots.cadence_days

    points = as_of_timestamps(ctx.spark, [latest_ts])
    if daily:
        points = as_of_points(ctx.spark, start, end, cadence).unionByName(points).distinct()
    features = build_customer_gold(transactions, points, config.customers)
    if daily:  # two writes (latest and daily) read the features: compute them once
        features = features.persist()
    try:
        preprocessing = {
            "customers": config.customers.model_dump(mode="json"),
            "snapshots": {
                "start": start.isoformat(),
                "end": end.isoformat(),
                "cadence_days": cadence,
                "latest_as_of": latest_ts.isoformat(),
            },
        }
        specs = customer_feature_specs(config.customers.windows_days)
        latest = features.where(F.col("as_of_ts") == F.lit(as_utc(latest_ts)))
        ctx.summary["customer_features_rows"] = _write_with_metadata(
            ctx, latest, "customer_features", specs, preprocessing
        )
        if daily:
            on_cadence = (F.datediff(F.col("as_of_date"), F.lit(start)) % cadence) == 0
            snapshots = features.where(
                (F.col("as_of_ts") == end_of_day(F.col("as_of_date")))
                & F.col("as_of_date").between(F.lit(start), F.lit(end))
                & on_cadence
            )
            ctx.summary["customer_features_daily_rows"] = _write_with_metadata(
                ctx,
                snapshots,
                "customer_features_daily",
                specs,
                preprocessing,
                partition_by=["as_of_date"],
                replace_partitions="dynamic",
            )
            ctx.summary["snapshot_dates"] = len(_snapshot_dates(start, end, cadence))
    finally:
        features.unpersist()
    ctx.summary["transactions_without_customer"] = no_customer
    log.info(
        "customer_features_built",
        extra={
            "fields": {
                "snapshot_start": start.isoformat(),
                "snapshot_end": end.isoformat(),
                "latest_as_of": latest_ts.isoformat(),
                "daily": daily,
            }
        },
    )


def _in_lineage_scope(ctx: JobContext, part: Callable[[], None]) -> None:
    with ctx.tables.lineage.scope():
        part()


def _run_windowed_views(ctx: JobContext) -> None:
    """Every windowed view's table, recomputed from all of its events (overwrite)."""
    from featurelake.feature_store.definitions import load_feature_views
    from featurelake.feature_store.windows import window_aggregates

    for view in load_feature_views(ctx.settings).values():
        if view.window is None:
            continue
        events = ctx.tables.read(view.window.events.path(ctx.settings))
        rows = events.transform(window_aggregates, view)
        path = view.source.path(ctx.settings)
        ctx.tables.write(rows, path, "overwrite", metadata={"windowed_view": view.name})
        ctx.summary.setdefault("windowed_views", []).append(view.name)


def run_gold(ctx: JobContext, options: GoldRunOptions | None = None) -> None:
    """Build the gold tables from silver and write them with their feature metadata.

    Args:
        ctx: the job context (settings, session, table I/O).
        options: what to build (default: everything, ranges from conf or the data).

    Raises:
        ConfigError: ``conf/features_gold.yaml`` is missing or invalid.
        DataError: ``silver/transactions`` is empty.
        TableNotFoundError: a silver table does not exist yet.
        ValueError: an invalid snapshot range.
    """
    options = options or GoldRunOptions()
    config_path = ctx.settings.conf_path(GOLD_CONFIG_FILE)
    config = load_gold_config(config_path)
    parts = []
    if "credit" in options.parts:
        parts.append(functools.partial(_run_credit, ctx, config))
    if "customers" in options.parts:
        parts.append(functools.partial(_run_customers, ctx, config, options))
    if WINDOWED in options.parts:
        parts.append(functools.partial(_run_windowed_views, ctx))
    # Independent tables, built at once; each part's commits name only the silver it read.
    run_concurrently(
        [functools.partial(_in_lineage_scope, ctx, part) for part in parts],
        ctx.settings.spark.concurrent_tables,
    )
    ctx.summary["gold_config"] = str(config_path)
