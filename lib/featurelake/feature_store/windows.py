"""Windowed feature views: aggregates of events over event-time windows, batch or streaming.

:func:`window_aggregates` is the one definition of a windowed view's rows. The ``stream`` job
applies it to a streaming DataFrame (with the view's watermark, so Spark keeps each window's
state until the watermark passes its end and emits the updated windows of every micro-batch);
the ``gold`` job applies it to the whole events table. Sum, count, min and max are exact and
independent of how events are split into micro-batches, so both give the same rows.

Example:
    >>> rows = events.transform(window_aggregates, view)             # batch: every window
    >>> rows = stream.transform(window_aggregates, view, watermark=True)  # streaming
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from featurelake.core.errors import require_columns
from featurelake.feature_store.definitions import (
    WINDOW_END,
    WINDOW_START,
    Aggregation,
    FeatureView,
    FeatureViewError,
)

__all__ = ["window_aggregates", "window_duration", "window_keys"]

_WINDOW = "__fl_window"


def window_duration(seconds: float) -> str:
    """A Spark interval string (``"300 seconds"``) for a duration in seconds."""
    return f"{int(seconds)} seconds"


def window_keys(view: FeatureView) -> list[str]:
    """The columns identifying one row of a windowed view: join keys and window bounds."""
    return [*view.join_keys, WINDOW_START, WINDOW_END]


def _aggregate(aggregation: Aggregation) -> Column:
    if aggregation.function == "count":
        target = F.lit(1) if aggregation.column is None else F.col(f"`{aggregation.column}`")
        return F.count(target)
    column = F.col(f"`{aggregation.column}`")
    return {"sum": F.sum, "min": F.min, "max": F.max}[aggregation.function](column)


def window_aggregates(
    events: DataFrame, view: FeatureView, *, watermark: bool = False
) -> DataFrame:
    """One row per entity and window holding events: the view's aggregates over them.

    Args:
        events: the events (batch or streaming): the view's join keys, ``window.event_time``
            and every aggregated column.
        view: a windowed feature view.
        watermark: declare the view's watermark on the event time (streaming; a batch
            DataFrame ignores it).

    Returns:
        The join keys, ``window_start``, ``window_end``, the features (cast to their declared
        types) and the view's ``event_timestamp_column`` (the window's latest event time).
        Events with a null key or event time belong to no window.

    Raises:
        FeatureViewError: the view has no window.
        MissingColumnsError: ``events`` lacks a column the view reads.
    """
    window = view.window
    if window is None:
        raise FeatureViewError(f"feature view {view.name!r} has no window")
    needed = [*view.join_keys, window.event_time]
    needed += [
        str(f.aggregation.column) for f in view.features if f.aggregation and f.aggregation.column
    ]
    require_columns(events.columns, list(dict.fromkeys(needed)), f"events of view {view.name!r}")
    event_time = F.col(f"`{window.event_time}`")
    if watermark:
        events = events.withWatermark(
            window.event_time, window_duration(window.watermark.total_seconds())
        )
    keys = [F.col(f"`{k}`") for k in view.join_keys]
    usable = event_time.isNotNull()
    for key in keys:
        usable = usable & key.isNotNull()
    size = window_duration(window.size.total_seconds())
    slide = window_duration(window.slide.total_seconds()) if window.slide else None
    bucket = F.window(event_time, size, slide) if slide else F.window(event_time, size)
    aggregates = [
        _aggregate(f.aggregation).cast(f.dtype).alias(f.name)  # type: ignore[arg-type]
        for f in view.features
    ]
    return (
        events.where(usable)
        .groupBy(*keys, bucket.alias(_WINDOW))
        .agg(*aggregates, F.max(event_time).alias(view.event_timestamp_column))
        .select(
            *keys,
            F.col(f"{_WINDOW}.start").alias(WINDOW_START),
            F.col(f"{_WINDOW}.end").alias(WINDOW_END),
            *[F.col(f"`{n}`") for n in view.feature_names],
            F.col(f"`{view.event_timestamp_column}`"),
        )
    )
