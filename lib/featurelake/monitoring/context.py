"""What every part of a monitor run shares: settings, table I/O, the run's identity and time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from featurelake.core.config import Settings
from featurelake.delta import DeltaTables
from featurelake.feature_store.definitions import FeatureView
from featurelake.monitoring.config import MonitoringConfig

__all__ = ["MonitorContext"]


@dataclass
class MonitorContext:
    """A monitor run's context.

    Attributes:
        spark: the session.
        tables: table I/O (lineage recorded in every commit).
        settings: the validated settings.
        config: ``conf/monitoring.yaml``.
        views: the declared feature views.
        run_id: the run (every row written carries it).
        now: the time checks are made at (``--as-of``; the run's start by default).
    """

    spark: SparkSession
    tables: DeltaTables
    settings: Settings
    config: MonitoringConfig
    views: Mapping[str, FeatureView]
    run_id: str
    now: datetime

    def path(self, table: str | tuple[str, str]) -> str:
        """The storage path of ``<layer>/<table>`` (or a (layer, table) pair)."""
        layer, name = table if isinstance(table, tuple) else table.split("/", 1)
        return self.settings.lakehouse.table_path(layer, name)

    def read_ops(self, table: tuple[str, str]) -> DataFrame | None:
        """An ops table (not recorded as an input of this run's commits); None when absent."""
        path = self.path(table)
        if not self.tables.exists(path):
            return None
        return self.tables.read(path, record=False)

    def append(
        self, table: tuple[str, str], rows: Sequence[Mapping[str, Any]], schema: str
    ) -> None:
        """Append driver rows to an ops table (nothing when there are none)."""
        if rows:
            self.tables.append_rows(list(rows), schema, self.path(table))

    def replace(
        self,
        table: tuple[str, str],
        rows: Sequence[Mapping[str, Any]],
        schema: str,
        where: Mapping[str, Sequence[Any]],
    ) -> None:
        """Replace the rows of an ops table matching ``where`` by ``rows``, in one commit."""
        if rows or self.tables.exists(self.path(table)):
            self.tables.replace_rows(list(rows), schema, self.path(table), where)
