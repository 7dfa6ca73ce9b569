"""The monitoring configuration (``conf/monitoring.yaml``): typed, validated before Spark starts.

The file says what the ``monitor`` job profiles (tables, windows, slices, the online store),
what it compares them with (a reference per table), the drift thresholds, the freshness SLAs
of the sources, which models' predictions and labels it watches, and where alerts go. Parsing
(:func:`parse_monitoring_config`) checks types and keys; :func:`check_against_catalog` then
checks every table, column, model and source name against the other declarations in
``conf/`` (:mod:`featurelake.monitoring.catalog`), so a typo stops the job before any JVM
starts, naming the file and the key.

Example:
    >>> config = load_monitoring_config(settings)
    >>> config.drift.thresholds.psi.critical
    0.25
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from featurelake.core.config import Settings, load_yaml_file, parse_model
from featurelake.feature_store.definitions import parse_duration

__all__ = [
    "CATEGORICAL_METRICS",
    "METRICS",
    "MONITORING_FILE",
    "NUMERIC_METRICS",
    "AlertSettings",
    "DriftSettings",
    "MetricThresholds",
    "ModelMonitorConfig",
    "MonitoringConfig",
    "ProfileSettings",
    "ReferenceConfig",
    "TableMonitorConfig",
    "Threshold",
    "WebhookSink",
    "WindowConfig",
    "load_monitoring_config",
    "parse_monitoring_config",
]

#: The configuration file, relative to the configuration directory.
MONITORING_FILE = "monitoring.yaml"

#: Drift metrics by the kind of column they apply to (docs/MONITORING.md defines each).
NUMERIC_METRICS = ("psi", "ks", "js", "null_rate_change")
CATEGORICAL_METRICS = ("chi2_pvalue", "js", "psi", "null_rate_change")
METRICS = ("psi", "ks", "js", "chi2_pvalue", "null_rate_change")
#: Metrics where a smaller value is the worse one (a p-value); for the others larger is worse.
LOWER_IS_WORSE = frozenset({"chi2_pvalue"})


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _duration(value: Any) -> Any:
    """``"7d"``, ``"12h"``... as a timedelta (pydantic then checks the type)."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return parse_duration(value)
    return value


#: A duration written as ``7d``, ``12h``, ``1d12h`` or seconds.
Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Threshold(_Frozen):
    """When one metric's value is a warning or critical.

    For most metrics a value at or above ``warning`` is a warning and at or above ``critical``
    is critical; for ``chi2_pvalue`` (smaller is worse) at or below. Either may be left out.
    """

    warning: float | None = None
    critical: float | None = None


class MetricThresholds(_Frozen):
    """Thresholds by metric name; a metric left out (or null) never raises a status."""

    psi: Threshold | None = None
    ks: Threshold | None = None
    js: Threshold | None = None
    chi2_pvalue: Threshold | None = None
    null_rate_change: Threshold | None = None

    def get(self, metric: str) -> Threshold | None:
        """The threshold of ``metric`` (None when not set)."""
        value = getattr(self, metric, None)
        return value if isinstance(value, Threshold) else None

    def merged(self, override: MetricThresholds | None) -> MetricThresholds:
        """These thresholds with the metrics ``override`` sets replaced."""
        if override is None:
            return self
        updates = {m: override.get(m) for m in METRICS if override.get(m) is not None}
        return self.model_copy(update=updates)


class ProfileSettings(_Frozen):
    """How profiles are computed.

    Args:
        sketch_k: size of each column's KLL quantile sketch (DataSketches ``k``): the rank
            error is about 1.7/k (k=1000: 0.2%), the serialised sketch up to about 25 KB.
        quantiles: the quantiles stored with every profile.
        bins: histogram bins: the reference's quantiles at 1/bins, 2/bins... (deciles for 10).
        top_k: most frequent values kept per categorical column and profile.
        max_categories: categories compared by drift; rarer ones count as ``__other__``.
        store_sketches: keep each column's sketch in ``ops/profile_metrics`` (recomputing a
            comparison later needs no scan).
    """

    sketch_k: int = Field(default=1000, ge=8, le=65535)
    quantiles: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
    bins: int = Field(default=10, ge=2, le=100)
    top_k: int = Field(default=10, ge=1, le=1000)
    max_categories: int = Field(default=50, ge=1, le=10_000)
    store_sketches: bool = True

    @field_validator("quantiles")
    @classmethod
    def _probabilities(cls, values: tuple[float, ...]) -> tuple[float, ...]:
        if not values or any(not 0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"must be probabilities in [0, 1], got {list(values)}")
        return tuple(sorted(set(values)))


class DriftSettings(_Frozen):
    """Drift thresholds: defaults for every column, overrides per ``<table>:<column>``.

    Args:
        thresholds: the default threshold of each metric.
        features: overrides by ``<layer>/<table>:<column>`` (or a bare column name, for that
            column in every table); only the metrics given are replaced.
        min_rows: windows or slices with fewer rows (on either side) are not compared.
    """

    thresholds: MetricThresholds = Field(default_factory=MetricThresholds)
    features: dict[str, MetricThresholds] = Field(default_factory=dict)
    min_rows: int = Field(default=100, ge=1)

    def for_column(self, table: str, column: str) -> MetricThresholds:
        """The thresholds that apply to ``column`` of ``table``."""
        bare = self.thresholds.merged(self.features.get(column))
        return bare.merged(self.features.get(f"{table}:{column}"))


class WindowConfig(_Frozen):
    """How a table's rows are split into time windows.

    Args:
        column: the date or timestamp column that places a row in time.
        every: the window width (``1d``); windows start at multiples of it since the epoch.
        lookback: only windows starting within this span before the table's latest time
            (read from the Delta log) are profiled each run.
        by: a column whose values are the windows instead (``batch_id`` of predictions); the
            time column then only selects the rows within the lookback.
    """

    column: str = Field(min_length=1)
    every: Duration = timedelta(days=1)
    lookback: Duration = timedelta(days=7)
    by: str | None = None


class ReferenceConfig(_Frozen):
    """What a table's current rows are compared with.

    Args:
        kind: ``champion``: the training rows of the model's current champion (the Delta
            versions its MLflow run logged); ``version``: a fixed Delta version of the table;
            ``window``: the rows of a fixed time window of the table (``start`` to ``end``
            inclusive, on the table's window column).
        model: the model (``name`` in conf/models) for ``champion``.
        version: the table version for ``version``.
        start, end: the dates for ``window``.
    """

    kind: Literal["champion", "version", "window"] = "champion"
    model: str | None = None
    version: int | None = Field(default=None, ge=0)
    start: date | None = None
    end: date | None = None

    @model_validator(mode="after")
    def _complete(self) -> ReferenceConfig:
        if self.kind == "version" and self.version is None:
            raise ValueError("a version reference needs 'version'")
        if self.kind == "window" and (self.start is None or self.end is None):
            raise ValueError("a window reference needs 'start' and 'end' dates")
        if self.kind == "window" and self.start and self.end and self.end < self.start:
            raise ValueError(f"'end' {self.end} is before 'start' {self.start}")
        return self


class TableMonitorConfig(_Frozen):
    """One monitored table.

    Args:
        table: ``<layer>/<table>``.
        columns: the columns profiled; or
        features: ``view:feature`` references whose feature columns are profiled.
        categorical: columns profiled as categories (string and boolean columns always are).
        window: time windows (absent: the whole table is one window, ``all``).
        slices: columns whose values get profiles of their own (``country=Germany``).
        reference: what drift compares with (absent: profiles only).
    """

    table: str = Field(pattern=r"^[A-Za-z0-9_]+/[A-Za-z0-9_]+$")
    columns: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    window: WindowConfig | None = None
    slices: tuple[str, ...] = ()
    reference: ReferenceConfig | None = None

    @model_validator(mode="after")
    def _columns_given(self) -> TableMonitorConfig:
        if not self.columns and not self.features:
            raise ValueError("give 'columns' or 'features' (view:feature references)")
        return self


class OnlineMonitorConfig(_Frozen):
    """The online store: views whose stored values are profiled (and compared with the
    reference of their source table when it is monitored)."""

    views: tuple[str, ...] = ()


class FreshnessSettings(_Frozen):
    """Freshness SLAs of the sources (feature views carry their own ``freshness_sla``).

    Args:
        sources: source name (conf/sources) -> the longest time without a new file.
        warning_ratio: an age above this share of the SLA is a warning; above the SLA, stale
            (critical).
    """

    sources: dict[str, Duration] = Field(default_factory=dict)
    warning_ratio: float = Field(default=0.75, gt=0, le=1)


class LabelSource(_Frozen):
    """Where the true outcomes of scored entities come from.

    Args:
        table: a label table ``<layer>/<table>`` joined on ``key`` (e.g. gold/credit_labels).
        key: its key column (default: the model's key).
        label: its 0/1 label column.
        churn_horizon_days: instead of a table, churn labels from silver/transactions: 1 when
            the customer made no purchase within this many days after the scoring time; a
            label exists only once the horizon has passed.
    """

    table: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]+/[A-Za-z0-9_]+$")
    key: str | None = None
    label: str | None = None
    churn_horizon_days: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> LabelSource:
        if (self.table is None) == (self.churn_horizon_days is None):
            raise ValueError("give either 'table' (with 'label') or 'churn_horizon_days'")
        if self.table is not None and not self.label:
            raise ValueError("a label table needs 'label' (its 0/1 column)")
        return self


class ModelMonitorConfig(_Frozen):
    """One classifier whose scoring batches are watched.

    Args:
        labels: where labels arrive from (absent: prediction drift only).
        min_labels: a batch needs this many labelled rows for performance metrics.
        performance: drop of the promotion metric (e.g. ROC AUC) below the champion's that
            makes a batch a warning or critical (degraded).
        calibration: rise of the expected calibration error over the champion's.
        prediction_drift: thresholds for the probabilities' drift (default: drift.thresholds).
        lookback: batches scored within this span before the latest scoring date.
    """

    labels: LabelSource | None = None
    min_labels: int = Field(default=100, ge=1)
    performance: Threshold = Field(default_factory=lambda: Threshold(warning=0.03, critical=0.08))
    calibration: Threshold = Field(default_factory=lambda: Threshold(warning=0.05, critical=0.1))
    prediction_drift: MetricThresholds | None = None
    lookback: Duration = timedelta(days=30)


class JsonlSink(_Frozen):
    """Alerts appended to a JSON-lines file (relative paths: under ``lakehouse.root``)."""

    type: Literal["jsonl"]
    name: str = "jsonl"
    path: str = "ops/monitoring/alerts.jsonl"


class WebhookSink(_Frozen):
    """Alerts POSTed as JSON to a URL; an empty URL disables the sink.

    Args:
        url: the receiver (``${FEATURELAKE_ALERT_WEBHOOK:-}`` keeps it out of the repository).
        timeout_seconds: per attempt (connect and read).
        retries: attempts after the first, within one run.
        backoff_seconds: wait before the first retry, doubled after each.
        headers: extra request headers (e.g. an authorization token from ``${VAR}``).
    """

    type: Literal["webhook"]
    name: str = "webhook"
    url: str = ""
    timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_seconds: float = Field(default=0.5, ge=0, le=30)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"must be an http(s) URL or empty, got {value!r}")
        return value


Sink = Annotated[JsonlSink | WebhookSink, Field(discriminator="type")]


class AlertSettings(_Frozen):
    """Alerts: when a check's status changes, once per condition, to the sinks.

    Args:
        cooldown: an alert with the same check, subject and status is not raised again
            within this time (a condition flapping back and forth alerts once).
        repeat_after: raise an unchanged warning or critical condition again after this
            long (absent: never).
        outbox: folder (under ``lakehouse.root``) of the alerts not yet delivered per sink.
        sinks: where alerts go.
    """

    cooldown: Duration = timedelta(hours=6)
    repeat_after: Duration | None = None
    outbox: str = "ops/monitoring/outbox"
    sinks: tuple[Sink, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> AlertSettings:
        names = [s.name for s in self.sinks]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"sink names repeat: {repeated}; give each a 'name'")
        return self


class ReportSettings(_Frozen):
    """The dashboard: where ``monitor report`` (and each monitor run) writes it."""

    path: str = "ops/monitoring/dashboard.html"
    history_runs: int = Field(default=30, ge=1)


class MonitoringConfig(_Frozen):
    """Everything in ``conf/monitoring.yaml``."""

    profile: ProfileSettings = Field(default_factory=ProfileSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    tables: tuple[TableMonitorConfig, ...] = ()
    online: OnlineMonitorConfig = Field(default_factory=OnlineMonitorConfig)
    freshness: FreshnessSettings = Field(default_factory=FreshnessSettings)
    models: dict[str, ModelMonitorConfig] = Field(default_factory=dict)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)

    @model_validator(mode="after")
    def _unique_tables(self) -> MonitoringConfig:
        names = [t.table for t in self.tables]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"tables are declared twice: {repeated}")
        return self

    def table(self, name: str) -> TableMonitorConfig | None:
        """The declaration of ``<layer>/<table>``, or None."""
        return next((t for t in self.tables if t.table == name), None)

    def indexed_tables(self) -> Iterator[tuple[int, TableMonitorConfig]]:
        """The table declarations with their position (for error keys)."""
        return iter(enumerate(self.tables))


def parse_monitoring_config(data: dict[str, Any], source: str) -> MonitoringConfig:
    """Validate a parsed ``monitoring.yaml``.

    Raises:
        ConfigError: an unknown key, a value of the wrong type; the message names ``source``
            and the key path.
    """
    return parse_model(MonitoringConfig, data, source)


def monitoring_file(settings: Settings) -> Path:
    """``<conf_dir>/monitoring.yaml``."""
    return settings.conf_path(MONITORING_FILE)


def load_monitoring_config(settings: Settings, path: str | Path | None = None) -> MonitoringConfig:
    """Load and validate ``conf/monitoring.yaml`` (an absent file: nothing is monitored).

    The names the file uses are checked against the other declarations by
    :func:`featurelake.monitoring.catalog.check_monitoring_config` (which the start-up
    validation runs).

    Raises:
        ConfigError: the file is invalid; the message names the file and key.
    """
    file = Path(path) if path is not None else monitoring_file(settings)
    if not file.is_file():
        return MonitoringConfig()
    return parse_monitoring_config(load_yaml_file(file), str(file))


def under_root(settings: Settings, relative: str) -> str:
    """``relative`` under ``lakehouse.root`` (an absolute path is kept)."""
    return relative if os.path.isabs(relative) else os.path.join(settings.lakehouse.root, relative)
