"""The checks every write's arguments pass before any Spark work, whichever backend writes.

Each raises ``ValueError`` with a message naming the table and what is wrong: inconsistent
write modes, upsert keys that are not columns or repeat in the new rows, driver rows outside
the rows they replace.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyspark.sql import DataFrame

from featurelake.delta.model import ReplacePartitions, WriteMode

__all__ = ["check_rows_within", "check_upsert", "check_write_mode"]


def check_write_mode(
    mode: WriteMode, replace_partitions: ReplacePartitions, overwrite_schema: bool
) -> None:
    """Raise when the mode and its options do not go together.

    Raises:
        ValueError: an unknown mode; ``replace_partitions`` or ``overwrite_schema`` without
            the overwrite they need.
    """
    if mode not in ("append", "overwrite"):
        raise ValueError(f"mode must be 'append' or 'overwrite', got {mode!r}")
    if replace_partitions is not None and mode != "overwrite":
        raise ValueError("replace_partitions needs mode='overwrite'")
    if overwrite_schema and (mode != "overwrite" or replace_partitions is not None):
        raise ValueError("overwrite_schema needs a full overwrite (mode='overwrite')")


def check_upsert(
    df: DataFrame,
    path: str,
    keys: Sequence[str],
    key_lower_bounds: Mapping[str, Any] | None,
    keys_unique: bool,
) -> list[str]:
    """The upsert's key columns, checked against ``df``.

    Unless ``keys_unique`` (the caller vouches), a Spark job looks for keys repeated in ``df``
    and shows up to three.

    Raises:
        ValueError: ``keys`` empty, not columns of ``df``, or repeated in ``df``; a bound on
            a column that is not a key.
    """
    keys = list(keys)
    if not keys:
        raise ValueError("upsert needs at least one key column")
    absent = [k for k in keys if k not in df.columns]
    if absent:
        raise ValueError(f"upsert keys {absent} are not columns of the data ({df.columns})")
    not_keys = [c for c in key_lower_bounds or {} if c not in keys]
    if not_keys:
        raise ValueError(f"upsert bounds on {not_keys}, which are not keys ({keys})")
    if not keys_unique:
        dupes = df.groupBy(*keys).count().filter("count > 1").limit(3).collect()
        if dupes:
            shown = [{k: row[k] for k in keys} for row in dupes]
            raise ValueError(
                f"upsert into {path}: keys {keys} repeat in the new rows, e.g. {shown}"
            )
    return keys


def check_rows_within(table: Any, path: str, where: Mapping[str, Sequence[Any]]) -> None:
    """Raise when a row of the Arrow ``table`` lies outside ``where`` (column -> values).

    Raises:
        ValueError: naming the first value outside.
    """
    for column, values in where.items():
        outside = [v for v in table.column(column).to_pylist() if v not in values]
        if outside:
            raise ValueError(
                f"{path}: rows to write hold {column}={outside[0]!r}, outside "
                f"the rows they replace ({column} in {list(values)})"
            )
