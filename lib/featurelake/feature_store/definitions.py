"""Feature view declarations: typed, validated, loaded from ``conf/features/*.yaml``.

A *feature view* names a set of features read from one source table (``<layer>/<table>``),
keyed by join key columns and stamped with an event-time column. Its ``ttl`` bounds how old a
value may be and still be served or joined; ``freshness_sla`` says how fresh the source is
expected to be (monitoring, not a filter).

Every model is frozen, rejects unknown keys and is keyword-only (pydantic models accept
keyword arguments only), so a declaration is data that validates on construction.

Example:
    >>> view = FeatureView(
    ...     name="customer_rfm", entity="customer", join_keys=["customer_id"],
    ...     source=SourceTable(layer="gold", table="customer_features_daily"),
    ...     event_timestamp_column="as_of_ts", ttl="30d",
    ...     features=[Feature(name="recency_days", dtype="int")],
    ... )
    >>> view.ttl
    datetime.timedelta(days=30)
    >>> parse_feature_ref("customer_rfm:recency_days")
    FeatureRef(view='customer_rfm', feature='recency_days')

YAML layout (one or more views per file)::

    feature_views:
      - name: customer_rfm
        entity: customer
        join_keys: [customer_id]
        source: {layer: gold, table: customer_features_daily}
        event_timestamp_column: as_of_ts
        ttl: 30d
        features:
          - {name: recency_days, dtype: int, description: Days since last purchase}
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from featurelake.core.config import ConfigError, Settings, load_yaml_file, parse_model
from featurelake.core.errors import UserError

__all__ = [
    "FEATURE_DTYPES",
    "WINDOW_END",
    "WINDOW_START",
    "Aggregation",
    "Feature",
    "FeatureRef",
    "FeatureView",
    "FeatureViewError",
    "SourceTable",
    "UnknownFeatureError",
    "WindowSpec",
    "definition_hash",
    "load_feature_views",
    "load_feature_views_from",
    "parse_duration",
    "parse_feature_ref",
    "resolve_feature_refs",
]

#: Feature types, as Spark SQL type names (``F.col(c).cast(dtype)`` accepts every one).
FEATURE_DTYPES = ("string", "boolean", "int", "long", "float", "double", "date", "timestamp")
Dtype = Literal["string", "boolean", "int", "long", "float", "double", "date", "timestamp"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DURATION_PART = re.compile(r"(\d+)\s*(w|d|h|m|s)")
_DURATION = re.compile(r"^\s*(?:\d+\s*[wdhms]\s*)+$")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


class FeatureViewError(UserError):
    """A feature view declaration or feature reference is invalid."""


class UnknownFeatureError(FeatureViewError, KeyError):
    """A feature reference names a view or feature that is not declared.

    The message lists what is declared, so a typo is easy to spot.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Parse a duration such as ``"30d"``, ``"12h"``, ``"1d12h"``, ``"90m"`` or ``"2w"``.

    Args:
        value: a duration string (units w, d, h, m, s; parts may be combined), a number of
            seconds, or a ``timedelta``.

    Returns:
        The duration as a ``timedelta``.

    Raises:
        ValueError: the text is not a duration, or the duration is not positive.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"expected a duration such as '30d' or '12h', got {value!r}")
    elif isinstance(value, (int, float)):
        result = timedelta(seconds=value)
    elif isinstance(value, str) and _DURATION.match(value):
        seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(value))
        result = timedelta(seconds=seconds)
    else:
        raise ValueError(
            "expected a duration such as '30d', '12h', '1d12h' (units w, d, h, m, s), "
            f"got {value!r}"
        )
    if result <= timedelta(0):
        raise ValueError(f"duration must be positive, got {value!r}")
    return result


def _check_name(value: str, what: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{what} {value!r} must be an identifier (letters, digits, _; not first a digit)"
        )
    return value


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Aggregation(_Frozen):
    """How a windowed view computes a feature from the events of one window.

    Args:
        function: ``sum``, ``count`` (rows; of non-null values when ``column`` is given),
            ``min`` or ``max`` - aggregates Spark keeps in streaming state and whose batch and
            streaming results agree exactly.
        column: the events' column aggregated (not needed for ``count``).

    Raises:
        pydantic.ValidationError: ``column`` missing for a function other than ``count``.
    """

    function: Literal["sum", "count", "min", "max"]
    column: str | None = None

    @model_validator(mode="after")
    def _column_given(self) -> Aggregation:
        if self.function != "count" and self.column is None:
            raise ValueError(f"aggregation {self.function} needs a column")
        return self


class Feature(_Frozen):
    """One feature of a view: a column of the source table.

    Args:
        name: the column name in the source table (and the feature's name).
        dtype: the Spark SQL type name; one of :data:`FEATURE_DTYPES`.
        description: what the value means, for the catalog.
        tags: free-form labels for search.
        owner: who answers for it; defaults to the view's owner in the catalog.
        pii: personal data; serving requires an explicit grant.
        aggregation: in a windowed view, how the value is computed from a window's events.

    Raises:
        pydantic.ValidationError: a bad name or dtype, or an unknown key.
    """

    name: str
    dtype: Dtype
    description: str = ""
    tags: tuple[str, ...] = ()
    owner: str | None = None
    pii: bool = False
    aggregation: Aggregation | None = None

    @field_validator("name")
    @classmethod
    def _name_is_identifier(cls, value: str) -> str:
        return _check_name(value, "feature name")


class SourceTable(_Frozen):
    """The Delta table a view reads: ``<lakehouse.root>/<layer>/<table>``."""

    layer: str
    table: str

    def path(self, settings: Settings) -> str:
        """The table's storage path under the configured lakehouse root.

        Raises:
            ValueError: the layer is not configured.
        """
        return settings.lakehouse.table_path(self.layer, self.table)

    def __str__(self) -> str:
        return f"{self.layer}/{self.table}"


class WindowSpec(_Frozen):
    """The event-time windows of a windowed (streaming) view.

    The view's rows are one per entity and window: the join keys, ``window_start``,
    ``window_end`` (exclusive), each feature's aggregate over the window's events, and the
    view's ``event_timestamp_column`` holding the window's latest event time. The ``stream``
    job keeps them up to date from ``events`` as events arrive; the ``gold`` job
    (``--windowed-views``) computes the same rows from the same table in one batch.

    Args:
        events: the table of events (a silver table a streaming source feeds).
        event_time: the events' time column.
        size: the window length (``"1h"``).
        slide: how far consecutive windows start apart (``"5m"``); none: tumbling windows.
        watermark: how long a window stays open for late events after the greatest event time
            seen; at least the source's watermark (events later than that are routed to the
            late-events table before they reach a view).

    Raises:
        pydantic.ValidationError: an unparsable duration, or a slide that is longer than the
            window or does not divide it.
    """

    events: SourceTable
    event_time: str
    size: timedelta
    slide: timedelta | None = None
    watermark: timedelta

    @field_validator("size", "slide", "watermark", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("P"):
            return value
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _slide_fits(self) -> WindowSpec:
        if self.slide is not None and (
            self.slide > self.size or self.size % self.slide != timedelta(0)
        ):
            raise ValueError(f"slide {self.slide} must divide the window size {self.size}")
        return self

    @property
    def tumbling(self) -> bool:
        """True when windows do not overlap (no slide, or a slide equal to the size)."""
        return self.slide is None or self.slide == self.size


#: The window bounds of every windowed view's rows.
WINDOW_START = "window_start"
WINDOW_END = "window_end"


class FeatureView(_Frozen):
    """A named group of features from one source table, keyed and time-stamped.

    Args:
        name: unique view name (an identifier); the left part of ``"view:feature"``.
        entity: the business entity the keys identify (e.g. ``customer``).
        join_keys: the key columns, present in the source and in entity rows.
        source: the source Delta table.
        event_timestamp_column: when each feature row's values were true (the as-of time).
        event_timestamp_value: for a snapshot table without an event-time column: every row's
            event time is this constant (UTC when naive), and ``event_timestamp_column`` names
            the column retrieval adds with it; the source must not have that column.
        created_timestamp_column: when each row became known (written); used to break ties
            between rows with the same event time and to filter out late-arriving values.
        features: the features (source columns) the view exposes; names unique.
        ttl: how long a value stays usable after its event time (``"30d"``); ``None`` means
            forever. Point-in-time retrieval at ``t`` uses rows with
            ``t - ttl < event_time <= t`` (the lower bound is exclusive).
        freshness_sla: the expected maximum age of the newest source row (monitoring).
        owner: the team or person that answers for the view.
        tags: free-form labels for search.
        description: what the view is for.
        online: whether ``materialize`` (and, for a windowed view, ``stream``) loads it into
            the online store.
        window: makes the view windowed: its features are aggregates of ``window.events``
            over event-time windows, kept up to date by the ``stream`` job (the source table
            holds one row per entity and window).

    Raises:
        pydantic.ValidationError: bad names, duplicates, a feature that is also a key or a
            timestamp column, an unparsable duration, or an unknown key.
    """

    name: str
    entity: str
    join_keys: tuple[str, ...] = Field(min_length=1)
    source: SourceTable
    event_timestamp_column: str
    event_timestamp_value: datetime | None = None
    created_timestamp_column: str | None = None
    features: tuple[Feature, ...] = Field(min_length=1)
    ttl: timedelta | None = None
    freshness_sla: timedelta | None = None
    owner: str | None = None
    tags: tuple[str, ...] = ()
    description: str = ""
    online: bool = True
    window: WindowSpec | None = None

    @field_validator("name", "entity", "event_timestamp_column", "created_timestamp_column")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        return None if value is None else _check_name(value, "name")

    @field_validator("event_timestamp_value")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    @field_validator("join_keys")
    @classmethod
    def _keys(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for key in value:
            _check_name(key, "join key")
        if len(set(value)) != len(value):
            raise ValueError(f"join keys repeat: {list(value)}")
        return value

    @field_validator("ttl", "freshness_sla", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str) and value.startswith("P"):
            return value  # ISO 8601, as model_dump(mode="json") writes it: pydantic parses it
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _consistent(self) -> FeatureView:
        names = [f.name for f in self.features]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"feature names repeat in view {self.name!r}: {repeated}")
        reserved = set(self.join_keys) | {self.event_timestamp_column}
        if self.created_timestamp_column:
            reserved.add(self.created_timestamp_column)
        clash = sorted(reserved & set(names))
        if clash:
            raise ValueError(
                f"features {clash} of view {self.name!r} are also join keys or timestamp columns"
            )
        if self.created_timestamp_column == self.event_timestamp_column:
            raise ValueError("created_timestamp_column must differ from event_timestamp_column")
        aggregated = [f.name for f in self.features if f.aggregation is not None]
        if self.window is None and aggregated:
            raise ValueError(f"features {aggregated} have an aggregation but the view no window")
        if self.window is not None:
            plain = [f.name for f in self.features if f.aggregation is None]
            if plain:
                raise ValueError(
                    f"windowed view {self.name!r}: features {plain} need an aggregation"
                )
            clash = sorted({WINDOW_START, WINDOW_END} & (reserved | set(names)))
            if clash:
                raise ValueError(f"{clash} are the window bounds of a windowed view")
            if self.event_timestamp_value is not None or self.created_timestamp_column:
                raise ValueError(
                    "a windowed view's event time is its windows' latest event: no "
                    "event_timestamp_value or created_timestamp_column"
                )
        return self

    @property
    def feature_names(self) -> list[str]:
        """The view's feature names, in declaration order."""
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        """The feature called ``name``.

        Raises:
            UnknownFeatureError: the view has no such feature.
        """
        for feature in self.features:
            if feature.name == name:
                return feature
        raise UnknownFeatureError(
            f"view {self.name!r} has no feature {name!r}; its features: {self.feature_names}"
        )

    def source_columns(self) -> list[str]:
        """The source columns the view reads: keys, timestamps (window bounds), then features."""
        columns = list(self.join_keys)
        if self.event_timestamp_value is None:
            columns.append(self.event_timestamp_column)
        if self.created_timestamp_column:
            columns.append(self.created_timestamp_column)
        if self.window is not None:
            columns += [WINDOW_START, WINDOW_END]
        return columns + self.feature_names

    def definition(self) -> dict[str, Any]:
        """The declaration as plain JSON-able data (durations in seconds).

        ``window`` and a feature's ``aggregation`` appear only when set, so the definition
        (and hash) of a view without them is what it was before windowed views existed.
        """
        data = self.model_dump(mode="json")
        if data.get("window") is None:
            data.pop("window", None)
        for feature in data["features"]:
            if feature.get("aggregation") is None:
                feature.pop("aggregation", None)
        return data

    def definition_hash(self) -> str:
        """SHA-256 of the canonical JSON of the declaration; changes iff the definition does."""
        return definition_hash(self)


def definition_hash(view: FeatureView) -> str:
    """SHA-256 hex of the view's canonical JSON (sorted keys, no whitespace)."""
    text = json.dumps(view.definition(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Feature references: "view:feature"
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureRef:
    """A parsed ``"view:feature"`` reference; ``feature == "*"`` means every feature."""

    view: str
    feature: str

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


def parse_feature_ref(ref: str) -> FeatureRef:
    """Parse ``"view:feature"`` (or ``"view:*"`` for all of a view's features).

    Args:
        ref: the reference text.

    Returns:
        The :class:`FeatureRef`.

    Raises:
        FeatureViewError: the text is not ``<view>:<feature>`` with identifier parts.
    """
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise FeatureViewError(f"feature reference must be 'view:feature', got {ref!r}")
    view, feature = (part.strip() for part in ref.split(":"))
    if not _NAME.match(view) or not (feature == "*" or _NAME.match(feature)):
        raise FeatureViewError(
            f"feature reference must be 'view:feature' with identifier parts, got {ref!r}"
        )
    return FeatureRef(view, feature)


def resolve_feature_refs(
    refs: Iterable[str | FeatureRef], views: Mapping[str, FeatureView]
) -> dict[str, list[str]]:
    """Resolve references against declared views: ``{view name: [feature names]}``.

    Views keep the order of their first reference; features keep reference order, ``"*"``
    expands to every feature in declaration order, and a repeated reference is kept once.

    Args:
        refs: ``"view:feature"`` strings or parsed references.
        views: the declared views by name.

    Returns:
        The requested features grouped by view.

    Raises:
        FeatureViewError: a malformed reference, or no references at all.
        UnknownFeatureError: an undeclared view or feature (the message lists what exists).
    """
    result: dict[str, list[str]] = {}
    for raw in refs:
        ref = raw if isinstance(raw, FeatureRef) else parse_feature_ref(raw)
        view = views.get(ref.view)
        if view is None:
            raise UnknownFeatureError(
                f"unknown feature view {ref.view!r} in {str(ref)!r}; "
                f"declared views: {sorted(views)}"
            )
        names = view.feature_names if ref.feature == "*" else [view.feature(ref.feature).name]
        chosen = result.setdefault(view.name, [])
        chosen.extend(n for n in names if n not in chosen)
    if not result:
        raise FeatureViewError("no feature references given")
    return result


# --------------------------------------------------------------------------------------------
# Loading conf/features/*.yaml
# --------------------------------------------------------------------------------------------


class _FeatureViewFile(_Frozen):
    feature_views: tuple[FeatureView, ...] = ()


def load_feature_views_from(
    files: Sequence[str | Path], layers: Sequence[str] | None = None
) -> dict[str, FeatureView]:
    """Load and validate feature views from YAML files (top-level key ``feature_views``).

    Args:
        files: the YAML files, read in the given order.
        layers: allowed source layers; unchecked when ``None``.

    Returns:
        The views by name.

    Raises:
        ConfigError: a file is unreadable, a key is invalid (the message names the file and
            the key path, e.g. ``feature_views.0.ttl``), a source layer is unknown, or a view
            name is declared twice (both files named).
    """
    views: dict[str, FeatureView] = {}
    seen_in: dict[str, str] = {}
    for file in files:
        source = str(file)
        parsed = parse_model(_FeatureViewFile, load_yaml_file(file), source)
        for index, view in enumerate(parsed.feature_views):
            key = f"feature_views.{index}"
            if layers is not None and view.source.layer not in layers:
                raise ConfigError(
                    source,
                    f"{key}.source.layer",
                    f"unknown layer {view.source.layer!r}; configured layers: {list(layers)}",
                )
            if view.name in views:
                raise ConfigError(
                    source,
                    f"{key}.name",
                    f"feature view {view.name!r} is already declared in {seen_in[view.name]}",
                )
            views[view.name] = view
            seen_in[view.name] = source
    return views


def load_feature_views(
    settings: Settings, directory: str | Path | None = None
) -> dict[str, FeatureView]:
    """Load every feature view declared in ``<conf_dir>/features/*.yaml`` (sorted by file name).

    The directory is ``feature_store.definitions_dir`` inside the configuration directory.

    Args:
        settings: the validated settings (conf directory and lakehouse layers).
        directory: read this directory instead.

    Returns:
        The views by name; empty when the directory has no YAML files.

    Raises:
        ConfigError: as :func:`load_feature_views_from`.
    """
    folder = (
        Path(directory)
        if directory is not None
        else settings.conf_path(settings.feature_store.definitions_dir)
    )
    files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    return load_feature_views_from(files, settings.lakehouse.layers)
