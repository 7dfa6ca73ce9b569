"""Online features from Python: the same lookups the serving API makes, for notebooks and jobs.

    >>> from featurelake.feature_store.online_api import get_online_features
    >>> get_online_features([{"customer_id": "17850"}],
    ...                     ["customer_rfm:recency_days", "customer_rfm:monetary"])
    [{'entity': {'customer_id': '17850'},
      'values': {'customer_rfm:recency_days': {'value': 3,
                                               'event_timestamp': '2011-12-09T00:00:00Z',
                                               'staleness_seconds': 3600.0, 'status': 'ok'},
                 ...}}]

:class:`OnlineFeatureService` is the one implementation: it resolves ``"view:feature"``
references against the declared views, checks the entities' join keys, applies a role's grants
when one is given, reads each view from the store in one call and enforces its TTL. The HTTP
server (:mod:`.server`) calls it per request.

Materialisation from Python is :func:`materialize_online` (it needs a Spark session).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from featurelake.core.config import Settings, load_settings
from featurelake.core.errors import UserError
from featurelake.feature_store.auth import Authorizer
from featurelake.feature_store.definitions import (
    FeatureView,
    FeatureViewError,
    load_feature_views,
    resolve_feature_refs,
)
from featurelake.feature_store.online import (
    EntityKeyError,
    FeatureValue,
    OnlineStore,
    ServingConfig,
    load_serving_config,
    lookup_features,
    open_online_store,
)

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import SparkSession

    from featurelake.feature_store.materialize import MaterializeResult

__all__ = [
    "FeatureRequestError",
    "OnlineFeatureService",
    "OnlineFeatures",
    "clear_online_cache",
    "get_online_features",
    "materialize_online",
]


class FeatureRequestError(UserError):
    """A request names unknown features, or its entities lack or misuse join keys."""


@dataclass
class ViewLookup:
    """What one view's lookup found, for metrics: entities by result and their staleness."""

    hits: int = 0
    misses: int = 0
    expired: int = 0
    staleness_seconds: list[float] = field(default_factory=list)


@dataclass
class OnlineFeatures:
    """The answer to one request.

    Attributes:
        features: the resolved references (``"view:*"`` expanded), in response order.
        entities: the entities as given.
        values: per entity, ``{"view:feature": FeatureValue}``.
        lookups: per view, hit/miss/expired counts and staleness (for metrics).
    """

    features: list[str]
    entities: list[dict[str, Any]]
    values: list[dict[str, FeatureValue]]
    lookups: dict[str, ViewLookup]

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready: ``[{"entity": {...}, "values": {"view:feature": {...}}}]``.

        The same as ``FeatureValue.as_dict`` for every value, with each event time written as
        text once (a view's values of one entity share it): this runs on every request.
        """
        texts: dict[datetime, str] = {}
        records = []
        for entity, row in zip(self.entities, self.values, strict=True):
            values = {}
            for ref, v in row.items():
                ts = v.event_timestamp
                text = None
                if ts is not None:
                    text = texts.get(ts)
                    if text is None:
                        text = texts[ts] = ts.isoformat().replace("+00:00", "Z")
                values[ref] = {
                    "value": v.value,
                    "event_timestamp": text,
                    "staleness_seconds": v.staleness_seconds,
                    "status": v.status,
                }
            records.append({"entity": entity, "values": values})
        return records

    def to_pandas(self) -> pd.DataFrame:
        """One row per entity: the join keys, then one column per feature (values only)."""
        import pandas as pd

        rows = [
            dict(entity) | {ref: v.value for ref, v in row.items()}
            for entity, row in zip(self.entities, self.values, strict=True)
        ]
        return pd.DataFrame(rows)


class OnlineFeatureService:
    """Feature lookups over declared views and an online store.

    Args:
        views: the declared feature views by name.
        store: the online store.
        authorizer: checks roles' grants when a request names a role.
        max_entities: most entities per request (``None``: no limit).
        max_features: most feature references per request (``None``: no limit).
    """

    def __init__(
        self,
        views: Mapping[str, FeatureView],
        store: OnlineStore,
        authorizer: Authorizer | None = None,
        *,
        max_entities: int | None = None,
        max_features: int | None = None,
    ) -> None:
        self.views = dict(views)
        self.store = store
        self.authorizer = authorizer
        self.max_entities = max_entities
        self.max_features = max_features

    def resolve(self, features: Sequence[str]) -> dict[str, list[str]]:
        """``{view: [features]}`` for the references.

        Raises:
            FeatureRequestError: a malformed reference, an unknown view or feature, or too many.
        """
        if self.max_features is not None and len(features) > self.max_features:
            raise FeatureRequestError(
                f"{len(features)} feature references; at most {self.max_features} per request"
            )
        try:
            return resolve_feature_refs(features, self.views)
        except FeatureViewError as exc:
            raise FeatureRequestError(str(exc)) from None

    def get(
        self,
        entities: Sequence[Mapping[str, Any]],
        features: Sequence[str],
        *,
        role: str | None = None,
        now: datetime | None = None,
    ) -> OnlineFeatures:
        """Look up features for entities.

        Args:
            entities: one mapping of join key to value per entity; every join key of every
                requested view must be present, and no other keys.
            features: ``"view:feature"`` (or ``"view:*"``) references.
            role: apply this role's view list and PII grants (needs an authorizer).
            now: the read time for TTL and staleness (default: now).

        Returns:
            The :class:`OnlineFeatures`; unknown entities come back with null values and status
            ``not_found``, expired ones with ``expired``.

        Raises:
            FeatureRequestError: malformed references, unknown features, bad entities.
            AuthorizationError: the role may not read a view or PII feature.
        """
        if not entities:
            raise FeatureRequestError("no entities given")
        if self.max_entities is not None and len(entities) > self.max_entities:
            raise FeatureRequestError(
                f"{len(entities)} entities; at most {self.max_entities} per request"
            )
        requested = self.resolve(features)
        if role is not None:
            if self.authorizer is None:
                raise ValueError("a role was given but the service has no authorizer")
            self.authorizer.authorize(role, requested)
        needed = {k for v in requested for k in self.views[v].join_keys}
        for index, entity in enumerate(entities):
            extra = sorted(set(entity) - needed)
            missing = sorted(needed - set(entity))
            if extra or missing:
                raise FeatureRequestError(
                    f"entity {index} {dict(entity)!r}: "
                    + (f"missing join key(s) {missing}" if missing else "")
                    + ("; " if extra and missing else "")
                    + (f"unknown key(s) {extra}" if extra else "")
                    + f" (the requested views need exactly {sorted(needed)})"
                )
        values: list[dict[str, FeatureValue]] = [{} for _ in entities]
        lookups: dict[str, ViewLookup] = {}
        refs: list[str] = []
        for view_name, names in requested.items():
            view = self.views[view_name]
            try:
                found = lookup_features(self.store, view, entities, names, now=now)
            except EntityKeyError as exc:
                raise FeatureRequestError(str(exc)) from None
            stats = lookups.setdefault(view_name, ViewLookup())
            for row, result in zip(values, found, strict=True):
                first = result[names[0]]
                if first.status == "not_found":
                    stats.misses += 1
                elif first.status == "expired":
                    stats.expired += 1
                else:
                    stats.hits += 1
                if first.staleness_seconds is not None:
                    stats.staleness_seconds.append(first.staleness_seconds)
                for name in names:
                    row[f"{view_name}:{name}"] = result[name]
            refs.extend(f"{view_name}:{n}" for n in names)
        return OnlineFeatures(refs, [dict(e) for e in entities], values, lookups)


def _service(settings: Settings, serving: ServingConfig) -> OnlineFeatureService:
    views = load_feature_views(settings)
    authorizer = Authorizer(serving.access, views)
    return OnlineFeatureService(views, open_online_store(serving.online_store), authorizer)


@dataclass
class _CachedService:
    settings: Settings
    files: tuple[str, ...]
    stamp: tuple[tuple[int, int] | None, ...]
    service: OnlineFeatureService
    checked_at: float = 0.0  # time.monotonic() of the last look at the files


# get_online_features' services, by where their configuration came from; each is rebuilt when a
# configuration file it was built from changes (mtime or size), and its store is then closed.
# The files are looked at no more often than every _RECHECK_SECONDS: a call between two looks
# costs the lookup alone (a look is a stat per file: as long as a lookup when there are several).
_RECHECK_SECONDS = 1.0
_SERVICES: dict[tuple[Any, ...], _CachedService] = {}
_SERVICES_LOCK = threading.Lock()


def _stamp(files: Sequence[str]) -> tuple[tuple[int, int] | None, ...]:
    out: list[tuple[int, int] | None] = []
    for file in files:
        try:
            info = os.stat(file)
        except OSError:
            out.append(None)
        else:
            out.append((info.st_mtime_ns, info.st_size))
    return tuple(out)


def _config_files(settings: Settings, *, with_settings_files: bool) -> tuple[str, ...]:
    folder = settings.conf_path(settings.feature_store.definitions_dir)
    views = sorted(str(p) for p in [*folder.glob("*.yaml"), *folder.glob("*.yml")])
    files = [str(settings.conf_path("serving.yaml")), str(folder), *views]
    if with_settings_files:
        files += [
            str(settings.conf_path("base.yaml")),
            str(settings.conf_path("env", f"{settings.env}.yaml")),
        ]
    return tuple(files)


def _cached_service(settings: Settings | None) -> OnlineFeatureService:
    """The service for ``settings`` (default: ``load_settings()``), built once per
    configuration: no YAML is read and no store opened while the files are unchanged."""
    if settings is None:
        key: tuple[Any, ...] = ("default", os.getcwd(), os.environ.get("FEATURELAKE_ENV"))
    else:
        key = ("given", id(settings))
    entry = _SERVICES.get(key)
    if entry is not None and (settings is None or entry.settings is settings):
        now = time.monotonic()
        if now - entry.checked_at < _RECHECK_SECONDS:
            return entry.service
        if _stamp(entry.files) == entry.stamp:
            entry.checked_at = now
            return entry.service
    with _SERVICES_LOCK:
        loaded = settings or load_settings()
        files = _config_files(loaded, with_settings_files=settings is None)
        stamp = _stamp(files)
        service = _service(loaded, load_serving_config(loaded))
        old = _SERVICES.get(key)
        _SERVICES[key] = _CachedService(loaded, files, stamp, service, time.monotonic())
    if old is not None:
        old.service.store.close()
    return service


def clear_online_cache() -> None:
    """Close the stores :func:`get_online_features` keeps open and forget their services
    (after changing an environment variable a configuration file reads, for example)."""
    with _SERVICES_LOCK:
        entries = list(_SERVICES.values())
        _SERVICES.clear()
    for entry in entries:
        entry.service.store.close()


def get_online_features(
    entities: Iterable[Mapping[str, Any]],
    features: Sequence[str],
    *,
    settings: Settings | None = None,
    role: str | None = None,
    now: datetime | None = None,
    as_pandas: bool = False,
) -> list[dict[str, Any]] | pd.DataFrame:
    """Look up online features from Python (a notebook, a job), without the HTTP server.

    The settings, feature views and the open store are kept between calls (keyed on where the
    settings came from) and rebuilt when one of their configuration files changes - seen
    within a second: the files are looked at no more than once a second - so a call costs
    about what a lookup through a held :class:`OnlineFeatureService` does.

    Args:
        entities: one mapping of join key to value per entity.
        features: ``"view:feature"`` or ``"view:*"`` references.
        settings: the settings (default: ``load_settings()`` from ``conf/``).
        role: apply this role's grants from ``conf/serving.yaml`` (default: no checks - the
            caller reads the store directly anyway).
        now: the read time for TTL and staleness (default: now).
        as_pandas: return a DataFrame of values (one row per entity) instead of records.

    Returns:
        ``[{"entity": {...}, "values": {"view:feature": {"value", "event_timestamp",
        "staleness_seconds", "status"}}}]`` or a pandas DataFrame.

    Raises:
        FeatureRequestError: unknown features or bad entities.
        AuthorizationError: ``role`` may not read a requested view or PII feature.
    """
    service = _cached_service(settings)
    result = service.get(list(entities), features, role=role, now=now)
    return result.to_pandas() if as_pandas else result.to_records()


def materialize_online(
    spark: SparkSession,
    views: Sequence[str] | None = None,
    *,
    settings: Settings | None = None,
    up_to: datetime | None = None,
    full: bool = False,
) -> list[MaterializeResult]:
    """Materialise views into the configured online store (what the ``materialize`` job does).

    Args:
        spark: the session.
        views: view names (default: every view declared ``online: true``).
        settings: the settings (default: ``load_settings()``).
        up_to: only rows with event time at or before this time.
        full: ignore the bookmarks.

    Returns:
        One :class:`~.materialize.MaterializeResult` per view.

    Raises:
        FeatureRequestError: an unknown view name.
    """
    from featurelake.delta import DeltaTables, Lineage
    from featurelake.feature_store.materialize import materialize_view

    settings = settings or load_settings()
    declared = load_feature_views(settings)
    unknown = [v for v in views or () if v not in declared]
    if unknown:
        raise FeatureRequestError(
            f"unknown feature view(s) {unknown}; declared: {sorted(declared)}"
        )
    chosen = [declared[v] for v in views] if views else [v for v in declared.values() if v.online]
    serving = load_serving_config(settings)
    tables = DeltaTables.for_settings(spark, settings.delta, Lineage(job="materialize-notebook"))
    store = open_online_store(serving.online_store)
    try:
        return [
            materialize_view(
                tables,
                settings,
                view,
                store,
                up_to=up_to,
                full=full,
                batch_size=serving.online_store.write_batch_size,
            )
            for view in chosen
        ]
    finally:
        store.close()
