"""The feature store for notebooks: the same operations as the ``features`` and
``training-set`` jobs, from Python.

Example:
    >>> store = FeatureStore.from_conf("conf", spark=spark)
    >>> store.apply()                          # record conf/features/*.yaml in the registry
    >>> [e.view_name for e in store.list()]
    >>> store.search("spend")                  # by name, description, tag or owner
    >>> train = store.get_training_set(entity_df, ["customer_rfm:recency_days",
    ...                                            "customer_activity:spend_30d"],
    ...                                entity_timestamp_column="as_of_ts")

Extension point: online methods (materialize, get_online_features) live in their own module;
a class providing them needs only ``self.settings``, ``self.spark``, ``self.tables`` and
``self.views()``, and is added as a base class of :class:`FeatureStore`.
"""

from __future__ import annotations

import builtins
import getpass
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from featurelake.core.config import Settings, load_settings
from featurelake.core.session import build_spark_session
from featurelake.delta import DeltaTables, Lineage
from featurelake.feature_store.definitions import (
    FeatureRef,
    FeatureView,
    load_feature_views,
    resolve_feature_refs,
)
from featurelake.feature_store.offline import KnownAt, get_training_set, view_frame
from featurelake.feature_store.registry import (
    ApplyResult,
    FeatureRegistry,
    RegistryEntry,
    SearchHit,
    registry_path,
    source_versions,
)

__all__ = ["FeatureStore", "TrainingSet", "current_user"]


def current_user() -> str:
    """Who is applying: ``$FEATURELAKE_USER``, else the login name."""
    return os.environ.get("FEATURELAKE_USER") or getpass.getuser()


@dataclass(frozen=True)
class TrainingSet:
    """A point-in-time training set and where it came from.

    Attributes:
        df: the entity rows with their features.
        views: for each view used, its definition hash and registry version (None when the
            view is not registered with this exact definition).
        sources: each source table read (``<layer>/<table>``) and the Delta version read.
        features: the feature references, resolved (``view:feature``).
    """

    df: DataFrame
    views: dict[str, dict[str, Any]]
    sources: dict[str, int]
    features: list[str]

    def lineage(self) -> dict[str, Any]:
        """JSON-able lineage for commit metadata and MLflow."""
        return {"views": self.views, "sources": self.sources, "features": self.features}


class FeatureStore:
    """Feature views, registry and point-in-time training sets in one object.

    Args:
        spark: the session.
        settings: validated settings.
        tables: Delta table I/O (default: a new one on ``spark``).
    """

    def __init__(
        self, spark: SparkSession, settings: Settings, tables: DeltaTables | None = None
    ) -> None:
        self.spark = spark
        self.settings = settings
        self.tables = tables or DeltaTables.for_settings(
            spark, settings.delta, Lineage(job="notebook")
        )
        self.registry = FeatureRegistry(self.tables, registry_path(settings))

    @classmethod
    def from_conf(
        cls,
        conf_dir: str = "conf",
        env: str | None = None,
        overrides: Sequence[str] = (),
        spark: SparkSession | None = None,
    ) -> FeatureStore:
        """Load settings from ``conf_dir`` (and an env overlay) and build the store."""
        settings = load_settings(conf_dir, env, overrides)
        session = spark or build_spark_session(
            "featurelake-notebook", settings.spark, settings.delta
        )
        return cls(session, settings)

    # ---------------------------------------------------------------------------------------
    # Catalog
    # ---------------------------------------------------------------------------------------

    def views(self) -> dict[str, FeatureView]:
        """The views declared in ``conf/features/*.yaml`` (validated)."""
        return load_feature_views(self.settings)

    def check_sources(self, views: Mapping[str, FeatureView] | None = None) -> list[str]:
        """Check each view against its source table's schema (columns and types).

        Returns:
            The sources that do not exist yet (``<layer>/<table>``); they are not checked.

        Raises:
            MissingColumnsError, FeatureViewError: a source lacks a column or has another type.
        """
        absent = []
        for view in (views or self.views()).values():
            path = view.source.path(self.settings)
            if not self.tables.exists(path):
                absent.append(str(view.source))
                continue
            view_frame(view, self.tables.read(path, record=False))  # schema checks only
        return sorted(set(absent))

    def apply(
        self, *, applied_by: str | None = None, run_id: str = "", dry_run: bool = False
    ) -> ApplyResult:
        """Validate the declarations (and existing sources' schemas), then record new, changed
        and deleted views in the registry; re-applying unchanged declarations writes nothing.

        Raises:
            ConfigError: a declaration is invalid (file and key named).
            MissingColumnsError, FeatureViewError: a view does not match its source table.
        """
        views = self.views()
        self.check_sources(views)
        if dry_run:
            return self.registry.plan(views)
        paths = {str(v.source): v.source.path(self.settings) for v in views.values()}
        return self.registry.apply(
            views,
            applied_by=applied_by or current_user(),
            run_id=run_id,
            source_versions=source_versions(self.tables, paths),
        )

    def list(self) -> list[RegistryEntry]:
        """The registered views (latest active version of each)."""
        return self.registry.entries()

    def describe(self, name: str) -> dict[str, Any]:
        """A view's registered definition, features and version history.

        Raises:
            UnknownFeatureError: the view is not registered.
        """
        entry = self.registry.get(name)
        assert entry.view is not None
        view = entry.view
        return {
            **entry.summary(),
            "description": view.description,
            "event_timestamp_column": view.event_timestamp_column,
            "created_timestamp_column": view.created_timestamp_column,
            "freshness_sla_seconds": (
                view.freshness_sla.total_seconds() if view.freshness_sla else None
            ),
            "features": [
                {**f.model_dump(mode="json"), "owner": f.owner or view.owner} for f in view.features
            ],
            "history": [
                {
                    "version": e.version,
                    "status": e.status,
                    "definition_hash": e.definition_hash,
                    "source_version": e.source_version,
                    "applied_at": e.applied_at.isoformat(),
                    "applied_by": e.applied_by,
                }
                for e in self.registry.history(name)
            ],
        }

    def search(
        self, text: str | None = None, *, tag: str | None = None, owner: str | None = None
    ) -> builtins.list[SearchHit]:
        """Registered views matching ``text`` (name/description/features), a tag or an owner."""
        return self.registry.search(text, tag=tag, owner=owner)

    # ---------------------------------------------------------------------------------------
    # Offline retrieval
    # ---------------------------------------------------------------------------------------

    def build_training_set(
        self,
        entity_df: DataFrame,
        features: Sequence[str | FeatureRef],
        *,
        entity_timestamp_column: str = "event_timestamp",
        known_at: KnownAt = None,
        full_feature_names: bool = False,
        source_versions: Mapping[str, int] | None = None,
    ) -> TrainingSet:
        """Point-in-time features for every entity row, with lineage (see :func:`get_training_set`).

        Args:
            entity_df: entity rows (join keys and ``entity_timestamp_column``).
            features: ``"view:feature"`` references.
            entity_timestamp_column: the entity rows' time column.
            known_at: the known-time filter (``"entity_time"`` or a datetime).
            full_feature_names: name columns ``<view>__<feature>``.
            source_versions: read these Delta versions of the sources (``<layer>/<table>``);
                default the latest. Rebuilding with a training set's recorded versions gives
                the same rows.

        Returns:
            The :class:`TrainingSet`.

        Raises:
            UnknownFeatureError, FeatureViewError, MissingColumnsError: bad references or data.
            featurelake.delta.TableNotFoundError: a source table does not exist.
        """
        views = self.views()
        requested = resolve_feature_refs(features, views)
        registered = {e.view_name: e for e in self.registry.entries()}
        sources: dict[str, DataFrame] = {}
        read_versions: dict[str, int] = {}
        for name in requested:
            source = views[name].source
            key = str(source)
            if key in sources:
                continue
            path = source.path(self.settings)
            version = (source_versions or {}).get(key)
            sources[key] = self.tables.read(path, version=version)
            read_versions[key] = self.tables.lineage.reads[path]
        df = get_training_set(
            entity_df,
            features,
            views=views,
            sources=sources,
            entity_timestamp_column=entity_timestamp_column,
            known_at=known_at,
            full_feature_names=full_feature_names,
        )
        lineage_views = {}
        for name in requested:
            digest = views[name].definition_hash()
            entry = registered.get(name)
            lineage_views[name] = {
                "definition_hash": digest,
                "registry_version": entry.version
                if entry and entry.definition_hash == digest
                else None,
                "source": str(views[name].source),
            }
        refs = [f"{v}:{f}" for v, chosen in requested.items() for f in chosen]
        return TrainingSet(df, lineage_views, read_versions, refs)

    def get_training_set(
        self, entity_df: DataFrame, features: Sequence[str | FeatureRef], **options: Any
    ) -> DataFrame:
        """The training set DataFrame; options as :meth:`build_training_set`."""
        return self.build_training_set(entity_df, features, **options).df
