"""Parquet data files the delta-rs backend commits: statistics from footers, partition values.

Delta keeps per-file statistics (row count, min, max, null count) in the log so that readers
skip files; delta-rs's commit API takes them with each added file. They are read here from
the Parquet footers Spark (or Arrow) wrote, exactly, or left out where they cannot be exact.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import unquote

from pyspark.sql.types import (
    BooleanType,
    ByteType,
    DataType,
    DateType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    ShortType,
    StringType,
    TimestampType,
)

__all__ = [
    "file_stats",
    "partition_filters",
    "partition_string",
    "partition_values",
]

_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
# Delta's convention: string statistics are kept only for short prefixes; we keep exact
# values only, so a longer string simply has no min/max (readers then cannot skip on it).
_MAX_STRING_STAT = 32


def partition_values(relative: str, partitions: Sequence[str]) -> dict[str, str | None]:
    """Partition values from a Hive-style relative path (``a=1/b=x/part-0.parquet``)."""
    values: dict[str, str | None] = {}
    for segment in relative.split(os.sep)[:-1]:
        key, _, raw = segment.partition("=")
        value = unquote(raw)
        values[unquote(key)] = None if value == _HIVE_NULL else value
    return {p: values.get(p) for p in partitions}


def partition_filters(
    replace: Literal["dynamic"] | Mapping[str, Any],
    adds: Iterable[Any],
    partitions: Sequence[str],
    path: str,
) -> list[tuple[str, str, Any]] | None:
    """delta-rs partition filters selecting the partitions a partition overwrite replaces."""
    if isinstance(replace, Mapping):
        unknown = [k for k in replace if k not in partitions]
        if unknown:
            raise ValueError(
                f"{path}: {unknown} are not partition columns (partitions: {partitions})"
            )
        for add in adds:
            for key, value in replace.items():
                if add.partition_values.get(key) != partition_string(value):
                    raise ValueError(
                        f"{path}: rows outside the partition being replaced "
                        f"({key}={add.partition_values.get(key)!r}, replacing {key}={value!r})"
                    )
        return [(k, "=", partition_string(v)) for k, v in replace.items()]
    present = {tuple(a.partition_values.get(p) for p in partitions) for a in adds}
    if not present:
        return None
    if len(partitions) == 1:
        if any(v[0] is None for v in present):
            raise ValueError(
                f"{path}: dynamic partition overwrite of a null partition is not supported"
            )
        return [(partitions[0], "in", sorted(str(v[0]) for v in present))]
    if len(present) == 1:
        (only,) = present
        return [(p, "=", v) for p, v in zip(partitions, only, strict=True)]
    raise ValueError(
        f"{path}: dynamic partition overwrite across several values of a multi-column partition "
        f"is not supported by the delta-rs backend; write one partition at a time"
    )


def partition_string(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


# Types whose Parquet statistics translate exactly into Delta statistics.
_NUMERIC = (ByteType, ShortType, IntegerType, LongType, FloatType, DoubleType)


def file_stats(path: str, types: Mapping[str, DataType], skip: set[str]) -> dict[str, Any]:
    """Delta per-file statistics (numRecords, minValues, maxValues, nullCount) from the footer."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    stats: dict[str, Any] = {
        "numRecords": meta.num_rows,
        "minValues": {},
        "maxValues": {},
        "nullCount": {},
    }
    if meta.num_rows == 0:
        return stats
    columns = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    for name, dtype in types.items():
        if name in skip or name not in columns:
            continue
        index = columns[name]
        lows, highs, nulls, complete = [], [], 0, True
        for rg in range(meta.num_row_groups):
            s = meta.row_group(rg).column(index).statistics
            if s is None or not s.has_null_count:
                complete = False
                break
            nulls += s.null_count
            if s.has_min_max:
                lows.append(s.min)
                highs.append(s.max)
        if not complete:
            continue
        stats["nullCount"][name] = nulls
        if not lows:
            continue
        low, high = _stat_value(min(lows), dtype, "min"), _stat_value(max(highs), dtype, "max")
        if low is not None and high is not None:
            stats["minValues"][name] = low
            stats["maxValues"][name] = high
    return stats


def _stat_value(value: Any, dtype: DataType, side: str) -> Any:
    """A Parquet statistic as a Delta JSON statistic, or None when it cannot be exact."""
    if isinstance(dtype, BooleanType):
        return bool(value)
    if isinstance(dtype, _NUMERIC):
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            return None
        return value
    if isinstance(dtype, DateType) and isinstance(value, date):
        return value.isoformat()
    if isinstance(dtype, TimestampType) and isinstance(value, datetime):
        value = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        # Delta timestamps statistics have millisecond precision: round outwards.
        millis = value.replace(microsecond=value.microsecond // 1000 * 1000)
        if side == "max" and millis != value:
            millis += timedelta(milliseconds=1)
        return (
            millis.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{millis.microsecond // 1000:03d}Z"
        )
    if isinstance(dtype, StringType) and isinstance(value, (str, bytes)):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        return text if len(text) <= _MAX_STRING_STAT else None
    if isinstance(value, Decimal):
        return None  # exact decimals do not survive a JSON float; no skipping on them
    return None
