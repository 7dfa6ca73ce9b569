"""Typed, validated configuration.

Settings come from ``conf/base.yaml``, then an environment overlay (``conf/env/<env>.yaml``),
then ``--conf dotted.key=value`` overrides, merged in that order. ``${VAR}`` and
``${VAR:-default}`` are taken from the environment. Every value remembers the file it came
from, so a validation error names the file, the key path and what was expected.

Example:
    >>> settings = load_settings("conf", env="local", overrides=["spark.shuffle_partitions=4"])
    >>> settings.lakehouse.table_path("gold", "customer_features")
    './lakehouse/gold/customer_features'
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from featurelake.core.config_files import (
    load_yaml_file,
    merge_into,
    parse_model,
    parse_override,
    source_of,
)
from featurelake.core.errors import ConfigError, UserError

__all__ = [
    "ConfigError",
    "DeltaSettings",
    "LakehouseSettings",
    "LoggingSettings",
    "MlflowSettings",
    "ParquetCodec",
    "Settings",
    "SettingsWithSources",
    "SparkSettings",
    "load_settings",
    "load_settings_with_sources",
    "load_yaml_file",
    "parse_model",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LakehouseSettings(_Frozen):
    """Where tables live: ``<root>/<layer>/<table>``."""

    # An empty root would put tables at /<layer>/<table>.
    root: str = Field(default="./lakehouse", min_length=1)
    landing: str = "./lakehouse/landing"
    layers: tuple[str, ...] = ("bronze", "silver", "gold", "features", "predictions", "ops")

    def table_path(self, layer: str, table: str) -> str:
        """Return the storage path of ``table`` in ``layer``.

        Raises:
            ValueError: ``layer`` is not one of the configured layers.
        """
        if layer not in self.layers:
            raise UserError(f"unknown layer {layer!r}; configured layers: {list(self.layers)}")
        return f"{self.root.rstrip('/')}/{layer}/{table}"


class SparkSettings(_Frozen):
    """Spark session options; ``master`` is used only when spark-submit did not set one."""

    # local, local[N], local[*], spark://host:port, yarn, k8s://https://host:port
    master: str = Field(
        default="local[*]", pattern=r"^(local(\[(\*|\d+)(,\d+)?\])?|spark://\S+|yarn|k8s://\S+)$"
    )
    shuffle_partitions: int = Field(default=8, ge=1)
    log_level: Literal["ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF"] = "ERROR"
    ui_enabled: bool = False
    # Independent tables a job builds at the same time (their Spark jobs are submitted from
    # threads: one table's tasks run while another is planned or committed); 1 = in turn.
    concurrent_tables: int = Field(default=4, ge=1)
    conf: dict[str, str] = Field(default_factory=dict)


# The data files' codecs, by Spark's names.
ParquetCodec = Literal["zstd", "snappy", "gzip", "lz4_raw", "uncompressed"]


class DeltaSettings(_Frozen):
    """Table I/O: ``auto`` uses delta-spark when its classes are loaded, else delta-rs."""

    backend: Literal["auto", "native", "delta-rs"] = "auto"
    vacuum_retention_hours: int = Field(default=168, ge=0)
    compact_target_file_mb: int = Field(default=128, ge=1)
    # How data files are written (see docs/PERFORMANCE.md for the measurements behind them).
    parquet_compression: ParquetCodec = "zstd"
    parquet_dictionary: bool = False


class LoggingSettings(_Frozen):
    """Job logs: the level, the log file's format and folder (relative to the lakehouse root)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"
    dir: str = "ops/logs"


class MlflowSettings(_Frozen):
    tracking_uri: str = "sqlite:///./lakehouse/mlflow/mlflow.db"
    registry_uri: str | None = None
    artifact_location: str = "./lakehouse/mlflow/artifacts"
    experiment: str = "featurelake"


class SilverSettings(_Frozen):
    """Silver job: table declarations (``conf/<tables_dir>/*.yaml``), as-of time, PII key variable.

    ``as_of`` (UTC when naive) is the "now" that ``not_future`` rules compare against; unset
    means the run's start time. ``pii_key_env`` names the environment variable holding the
    HMAC key for PII columns (the key itself never appears in configuration).
    """

    tables_dir: str = "tables"
    as_of: datetime | None = None
    pii_key_env: str = Field(default="FEATURELAKE_PII_KEY", min_length=1)
    # Fallback when the variable is unset (local demo only): a generated key file, mode 0600.
    pii_key_file: str | None = None


class StreamingSettings(_Frozen):
    """The ``stream`` job: where its checkpoints and progress go, how often it triggers.

    Paths are relative to the lakehouse root: one checkpoint folder per query under
    ``checkpoint_dir`` (``<source>-<transport>``, ``<view>``); ``progress_file`` holds the
    latest progress of every query (the serving API exports it at ``/metrics``).
    ``shuffle_partitions`` is ``spark.sql.shuffle.partitions`` of a query's first start (its
    checkpoint keeps it): each micro-batch is small, and every partition of a view's state is
    one more state file written per batch.
    """

    checkpoint_dir: str = Field(default="_checkpoints/stream", min_length=1)
    trigger_seconds: float = Field(default=2.0, ge=0)
    shuffle_partitions: int = Field(default=2, ge=1)
    progress_file: str = Field(default="ops/stream_progress.json", min_length=1)


class SyntheticSettings(_Frozen):
    """The synthetic data generator (job ``generate-data``): scale, seed and dirt rates.

    Rates are fractions in [0, 1]: of invoices (missing customer, cancellation), of lines
    (prices, duplicates, malformed lines, future dates) or of clients (out-of-range codes).
    """

    seed: int = 42
    transactions: int = Field(default=100_000, ge=0)
    customers: int = Field(default=4_000, ge=1)
    credit_clients: int = Field(default=30_000, ge=0)
    products: int = Field(default=3_000, ge=1)
    lines_per_invoice: int = Field(default=8, ge=1)
    rows_per_file: int = Field(default=500_000, ge=1)
    # The last day of the transactions: an ISO date, or "today" (UTC, when the settings are
    # read) so that the demo's features are fresh and its online store serves them.
    end_date: str = Field(default="today", validate_default=True)
    history_days: int = Field(default=365, ge=1)
    missing_customer_rate: float = Field(default=0.2, ge=0, le=1)
    cancellation_rate: float = Field(default=0.02, ge=0, le=1)
    bad_price_rate: float = Field(default=0.005, ge=0, le=1)
    duplicate_rate: float = Field(default=0.01, ge=0, le=1)
    malformed_rate: float = Field(default=0.001, ge=0, le=1)
    out_of_range_code_rate: float = Field(default=0.01, ge=0, le=1)
    future_date_rate: float = Field(default=0.001, ge=0, le=1)
    # The first credit client's ID: a later batch with new clients starts past the earlier ones.
    credit_first_id: int = Field(default=1, ge=1)
    # Concept drift: a batch whose end_date is on or after this ISO date draws its default
    # labels from the "drifted" relationship (devtools/synthetic.py); null = never.
    concept_drift_from: str | None = None

    @field_validator("end_date", mode="before")
    @classmethod
    def _resolve_end_date(cls, value: Any) -> Any:
        if isinstance(value, date):  # YAML reads an unquoted 2011-12-09 as a date
            return value.isoformat()
        if value == "today":
            return datetime.now(timezone.utc).date().isoformat()
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"must be an ISO date (YYYY-MM-DD) or 'today', got {value!r}"
            ) from None
        return value

    @field_validator("concept_drift_from", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, date):
            return value.isoformat()
        try:
            date.fromisoformat(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be an ISO date (YYYY-MM-DD) or null, got {value!r}") from None
        return value

    @property
    def credit_concept(self) -> str:
        """The label relationship: ``drifted`` from ``concept_drift_from`` on, else ``baseline``."""
        if self.concept_drift_from is not None and self.end_date >= self.concept_drift_from:
            return "drifted"
        return "baseline"


class FeatureStoreSettings(_Frozen):
    """Feature store: declarations (``conf/<definitions_dir>/*.yaml``), registry, training sets.

    ``registry_table`` and the training-set tables are ``<layer>/<table>`` names under the
    lakehouse root.
    """

    definitions_dir: str = "features"
    registry_table: str = "features/_registry"
    training_set_layer: str = "features"


class Settings(_Frozen):
    """The whole run-time configuration, validated at start-up."""

    env: str = "local"
    conf_dir: str = "conf"
    lakehouse: LakehouseSettings = Field(default_factory=LakehouseSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    delta: DeltaSettings = Field(default_factory=DeltaSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    silver: SilverSettings = Field(default_factory=SilverSettings)
    synthetic: SyntheticSettings = Field(default_factory=SyntheticSettings)
    feature_store: FeatureStoreSettings = Field(default_factory=FeatureStoreSettings)
    streaming: StreamingSettings = Field(default_factory=StreamingSettings)

    @model_validator(mode="before")
    @classmethod
    def _paths_follow_the_root(cls, data: Any) -> Any:
        """Landing folder and MLflow stores default to places under ``lakehouse.root``.

        So ``--conf lakehouse.root=/data/lake`` moves everything; an empty value counts as unset
        (``${MLFLOW_TRACKING_URI:-}`` in base.yaml).
        """
        if not isinstance(data, dict):
            return data
        lakehouse = data.get("lakehouse")
        root = (lakehouse.get("root") if isinstance(lakehouse, dict) else None) or "./lakehouse"
        root = str(root).rstrip("/")
        if isinstance(lakehouse, dict) and not lakehouse.get("landing"):
            data["lakehouse"] = {**lakehouse, "landing": f"{root}/landing"}
        elif lakehouse is None:
            data["lakehouse"] = {"root": root, "landing": f"{root}/landing"}
        mlflow = data.get("mlflow") or {}
        if isinstance(mlflow, dict):
            mlflow = dict(mlflow)
            if not mlflow.get("tracking_uri"):
                mlflow["tracking_uri"] = f"sqlite:///{root}/mlflow/mlflow.db"
            if not mlflow.get("artifact_location"):
                mlflow["artifact_location"] = f"{root}/mlflow/artifacts"
            data["mlflow"] = mlflow
        return data

    def conf_path(self, *parts: str) -> Path:
        """Return a path inside the configuration directory."""
        return Path(self.conf_dir, *parts)


# --------------------------------------------------------------------------------------------
# Loading and merging with provenance
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SettingsWithSources:
    """Validated settings and, for each dotted key, the file or ``--conf`` override that set it.

    Attributes:
        settings: the validated settings.
        sources: dotted key -> ``conf/base.yaml``, ``conf/env/<env>.yaml`` or ``--conf k=v``.
    """

    settings: Settings
    sources: Mapping[str, str]

    def source_of(self, key: str) -> str:
        """The file or override that set ``key`` (or its closest ancestor), else ``defaults``."""
        return source_of(self.sources, key, "defaults")


def load_settings_with_sources(
    conf_dir: str | Path = "conf",
    env: str | None = None,
    overrides: Sequence[str] = (),
) -> SettingsWithSources:
    """Load the settings like :func:`load_settings`, keeping where each value came from.

    For checks made after validation that must still name the file or override of a key.

    Raises:
        ConfigError: a file is missing or invalid, or a value fails validation.
    """
    conf_dir = Path(conf_dir)
    env = env or os.environ.get("FEATURELAKE_ENV", "local")
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    base_file = conf_dir / "base.yaml"
    merge_into(merged, load_yaml_file(base_file), origin, str(base_file))
    env_file = conf_dir / "env" / f"{env}.yaml"
    if not env_file.is_file():
        available = sorted(p.stem for p in (conf_dir / "env").glob("*.yaml"))
        raise ConfigError(str(env_file), "", f"no such environment {env!r}; available: {available}")
    merge_into(merged, load_yaml_file(env_file), origin, str(env_file))
    for text in overrides:
        path, value = parse_override(text)
        tree: dict[str, Any] = {}
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
        merge_into(merged, tree, origin, f"--conf {text}")
    merged["env"] = env
    merged["conf_dir"] = str(conf_dir)
    return SettingsWithSources(parse_model(Settings, merged, origin), dict(origin))


def load_settings(
    conf_dir: str | Path = "conf",
    env: str | None = None,
    overrides: Sequence[str] = (),
) -> Settings:
    """Load ``base.yaml``, the ``env`` overlay and ``--conf`` overrides into :class:`Settings`.

    Args:
        conf_dir: the configuration directory.
        env: overlay name (``conf/env/<env>.yaml``); defaults to ``$FEATURELAKE_ENV`` or ``local``.
        overrides: ``dotted.key=value`` strings; values are parsed as YAML scalars.

    Raises:
        ConfigError: a file is missing or invalid, or a value fails validation.
    """
    return load_settings_with_sources(conf_dir, env, overrides).settings
