"""The feature registry: every version of every feature view, in a Delta table.

One row per view version (``feature_store.registry_table``, default ``features/_registry``):

==================  =========  ==========================================================
column              type       meaning
==================  =========  ==========================================================
view_name           string     the view
version             long       1, 2, ... per view; a new one only when the definition changes
status              string     ``active``, or ``deleted`` (the view left conf/features)
definition_hash     string     SHA-256 of the canonical definition (empty when deleted)
definition          string     the definition as JSON (``FeatureView`` fields)
source_table        string     ``<layer>/<table>`` the view reads
source_version      long       the source's Delta version when applied (null: not yet built)
applied_at          timestamp  when (UTC)
applied_by          string     who
run_id              string     the run that applied it
==================  =========  ==========================================================

:meth:`FeatureRegistry.apply` is idempotent: unchanged definitions add no rows and no commit.
All changes of one apply land in one Delta commit, so the table's own version is the registry
version and time travel gives the catalog as it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from pyspark.sql.types import (
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from featurelake.core.config import Settings
from featurelake.core.errors import UserError
from featurelake.core.session import local_frame
from featurelake.delta import DeltaTables
from featurelake.feature_store.definitions import FeatureView, UnknownFeatureError

__all__ = [
    "REGISTRY_SCHEMA",
    "ApplyResult",
    "FeatureRegistry",
    "RegistryEntry",
    "SearchHit",
    "registry_path",
    "source_versions",
]

REGISTRY_SCHEMA = StructType(
    [
        StructField("view_name", StringType()),
        StructField("version", LongType()),
        StructField("status", StringType()),
        StructField("definition_hash", StringType()),
        StructField("definition", StringType()),
        StructField("source_table", StringType()),
        StructField("source_version", LongType()),
        StructField("applied_at", TimestampType()),
        StructField("applied_by", StringType()),
        StructField("run_id", StringType()),
    ]
)

ACTIVE = "active"
DELETED = "deleted"


@dataclass(frozen=True)
class RegistryEntry:
    """One version of one feature view as recorded in the registry."""

    view_name: str
    version: int
    status: str
    definition_hash: str
    view: FeatureView | None
    source_table: str
    source_version: int | None
    applied_at: datetime
    applied_by: str
    run_id: str

    def summary(self) -> dict[str, Any]:
        """A JSON-able one-line summary (for ``features list``)."""
        view = self.view
        return {
            "name": self.view_name,
            "version": self.version,
            "status": self.status,
            "entity": view.entity if view else None,
            "join_keys": list(view.join_keys) if view else [],
            "features": len(view.features) if view else 0,
            "source": self.source_table,
            "source_version": self.source_version,
            "owner": view.owner if view else None,
            "tags": list(view.tags) if view else [],
            "ttl_seconds": view.ttl.total_seconds() if view and view.ttl else None,
            "applied_at": self.applied_at.isoformat(),
            "applied_by": self.applied_by,
            "definition_hash": self.definition_hash,
        }


@dataclass(frozen=True)
class ApplyResult:
    """What an apply changed: view names by kind, and the registry's Delta version after it."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    registry_version: int | None = None

    @property
    def changes(self) -> int:
        """Rows written (0 for an idempotent re-apply)."""
        return len(self.added) + len(self.changed) + len(self.deleted)


@dataclass(frozen=True)
class SearchHit:
    """A view matched by a search, with the features (if any) that matched."""

    view_name: str
    matched_in: list[str]
    features: list[str]
    entry: RegistryEntry


class FeatureRegistry:
    """Records feature view versions in a Delta table; lists, describes and searches them.

    Args:
        tables: the Delta table I/O (its lineage lands in the commit metadata).
        path: the registry table's path.

    Example:
        >>> registry = FeatureRegistry(ctx.tables, ctx.path("features", "_registry"))
        >>> registry.apply(views, applied_by="alice", source_versions={"gold/t": 3}).added
        ['customer_rfm']
    """

    def __init__(self, tables: DeltaTables, path: str) -> None:
        self.tables = tables
        self.path = path

    # ---------------------------------------------------------------------------------------
    # Reading
    # ---------------------------------------------------------------------------------------

    def history(self, name: str | None = None) -> list[RegistryEntry]:
        """Every recorded version, oldest first (of one view when ``name`` is given)."""
        if not self.tables.exists(self.path):
            return []
        df = self.tables.read(self.path, record=False)
        if name is not None:
            df = df.where(df.view_name == name)
        rows = df.collect()
        entries = [_entry(row.asDict()) for row in rows]
        return sorted(entries, key=lambda e: (e.view_name, e.version))

    def entries(self, *, include_deleted: bool = False) -> list[RegistryEntry]:
        """The latest version of each view, by name; deleted views only when asked."""
        latest: dict[str, RegistryEntry] = {}
        for entry in self.history():
            latest[entry.view_name] = entry
        return [e for _, e in sorted(latest.items()) if include_deleted or e.status == ACTIVE]

    def get(self, name: str) -> RegistryEntry:
        """The latest active version of view ``name``.

        Raises:
            UnknownFeatureError: the view is not registered (or was deleted); the message lists
                the registered views.
        """
        for entry in self.entries():
            if entry.view_name == name:
                return entry
        names = [e.view_name for e in self.entries()]
        raise UnknownFeatureError(
            f"feature view {name!r} is not in the registry {self.path}; registered: {names}"
        )

    def views(self) -> dict[str, FeatureView]:
        """The active views' definitions as registered, by name."""
        return {e.view_name: e.view for e in self.entries() if e.view is not None}

    def search(
        self, text: str | None = None, *, tag: str | None = None, owner: str | None = None
    ) -> list[SearchHit]:
        """Views whose name, description, features, tags or owner match; filters combine (AND).

        Args:
            text: case-insensitive substring of the view's or a feature's name or description.
            tag: a tag (exact, case-insensitive) on the view or on one of its features.
            owner: the owner (exact, case-insensitive) of the view or of one of its features.

        Returns:
            The hits, by view name; ``features`` lists the features that matched.

        Raises:
            ValueError: no criterion given.
        """
        if text is None and tag is None and owner is None:
            raise UserError("search needs text, tag or owner")
        hits = []
        for entry in self.entries():
            hit = _match(entry, text, tag, owner)
            if hit is not None:
                hits.append(hit)
        return hits

    # ---------------------------------------------------------------------------------------
    # Writing
    # ---------------------------------------------------------------------------------------

    def plan(self, views: Mapping[str, FeatureView]) -> ApplyResult:
        """What :meth:`apply` would do with ``views``, without writing."""
        current = {e.view_name: e for e in self.entries()}
        added = sorted(n for n in views if n not in current)
        same = {
            n
            for n in views
            if n in current and current[n].definition_hash == views[n].definition_hash()
        }
        changed = sorted(n for n in views if n in current and n not in same)
        unchanged = sorted(same)
        deleted = sorted(n for n in current if n not in views)
        return ApplyResult(added, changed, unchanged, deleted)

    def apply(
        self,
        views: Mapping[str, FeatureView],
        *,
        applied_by: str,
        source_versions: Mapping[str, int | None],
        run_id: str = "",
        delete_missing: bool = True,
        now: datetime | None = None,
    ) -> ApplyResult:
        """Record new and changed views (and deleted ones) as new versions, in one commit.

        Args:
            views: the declared views (all of them: a registered view absent here is marked
                deleted when ``delete_missing``).
            applied_by: who applies (recorded).
            source_versions: Delta version of each source ``<layer>/<table>`` (None: absent).
            run_id: the run that applies (recorded).
            delete_missing: record views missing from ``views`` as deleted.
            now: the applied_at time (default: now, UTC).

        Returns:
            The :class:`ApplyResult`; ``changes == 0`` and no commit when nothing changed.

        Raises:
            featurelake.delta.ConcurrentWriteError: another apply committed first; retry.
        """
        plan = self.plan(views)
        deleted = plan.deleted if delete_missing else []
        if not (plan.added or plan.changed or deleted):
            return ApplyResult(unchanged=plan.unchanged, registry_version=self._version())
        applied_at = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
        versions = {e.view_name: e.version for e in self.entries(include_deleted=True)}
        latest = {e.view_name: e for e in self.entries()}
        rows = []
        for name in [*plan.added, *plan.changed]:
            view = views[name]
            rows.append(
                (
                    name,
                    versions.get(name, 0) + 1,
                    ACTIVE,
                    view.definition_hash(),
                    json.dumps(view.definition(), sort_keys=True),
                    str(view.source),
                    source_versions.get(str(view.source)),
                    applied_at,
                    applied_by,
                    run_id,
                )
            )
        for name in deleted:
            gone = latest[name]
            rows.append(
                (
                    name,
                    gone.version + 1,
                    DELETED,
                    "",
                    "",
                    gone.source_table,
                    None,
                    applied_at,
                    applied_by,
                    run_id,
                )
            )
        df = local_frame(self.tables.spark, rows, REGISTRY_SCHEMA)
        result = self.tables.write(
            df,
            self.path,
            "append",
            metadata={
                "operation": "features-apply",
                "views_added": plan.added,
                "views_changed": plan.changed,
                "views_deleted": deleted,
            },
        )
        return ApplyResult(plan.added, plan.changed, plan.unchanged, deleted, result.version)

    def _version(self) -> int | None:
        return self.tables.version(self.path) if self.tables.exists(self.path) else None


def _entry(row: Mapping[str, Any]) -> RegistryEntry:
    text = row["definition"]
    view = FeatureView.model_validate(json.loads(text)) if text else None
    applied_at = row["applied_at"]
    if applied_at.tzinfo is None:
        applied_at = applied_at.replace(tzinfo=timezone.utc)
    return RegistryEntry(
        view_name=row["view_name"],
        version=int(row["version"]),
        status=row["status"],
        definition_hash=row["definition_hash"],
        view=view,
        source_table=row["source_table"],
        source_version=row["source_version"],
        applied_at=applied_at,
        applied_by=row["applied_by"],
        run_id=row["run_id"],
    )


def _match(
    entry: RegistryEntry, text: str | None, tag: str | None, owner: str | None
) -> SearchHit | None:
    view = entry.view
    if view is None:
        return None
    where: list[str] = []
    features: set[str] = set()
    if text is not None:
        needle = text.lower()
        if needle in view.name.lower():
            where.append("name")
        if needle in view.description.lower():
            where.append("description")
        found = [
            f.name
            for f in view.features
            if needle in f.name.lower() or needle in f.description.lower()
        ]
        if found:
            where.append("features")
            features.update(found)
        if not where:
            return None
    if tag is not None:
        wanted = tag.lower()
        tagged = [f.name for f in view.features if wanted in (t.lower() for t in f.tags)]
        if wanted not in (t.lower() for t in view.tags) and not tagged:
            return None
        where.append("tags")
        features.update(tagged)
    if owner is not None:
        wanted = owner.lower()
        owned = [f.name for f in view.features if (f.owner or "").lower() == wanted]
        if (view.owner or "").lower() != wanted and not owned:
            return None
        where.append("owner")
        features.update(owned)
    ordered = [f for f in view.feature_names if f in features]
    return SearchHit(view.name, where, ordered, entry)


def source_versions(tables: DeltaTables, paths: Mapping[str, str]) -> dict[str, int | None]:
    """The latest Delta version of each source (``{"<layer>/<table>": path}``); None if absent."""
    return {
        name: (tables.version(path) if tables.exists(path) else None)
        for name, path in paths.items()
    }


def registry_path(settings: Settings) -> str:
    """The registry table's path from ``settings.feature_store.registry_table``.

    Raises:
        ValueError: the setting is not ``<layer>/<table>`` or names an unknown layer.
    """
    layer, _, table = settings.feature_store.registry_table.partition("/")
    if not table:
        raise UserError(
            "feature_store.registry_table must be <layer>/<table>, "
            f"got {settings.feature_store.registry_table!r}"
        )
    return str(settings.lakehouse.table_path(layer, table))
