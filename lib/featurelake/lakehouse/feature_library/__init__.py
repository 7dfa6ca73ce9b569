"""Gold feature library: pure Column/DataFrame transformations shared by gold, training and scoring.

Modules:
    credit: per-client features of the UCI credit card clients (``silver/credit_clients``).
    customers: as-of customer features of Online Retail transactions (``silver/transactions``).
    metadata: feature descriptions and the rows of ``gold/_feature_metadata``.

Every function here is pure: it takes and returns DataFrames or Columns, reads and writes
nothing and triggers no Spark action.
"""

from __future__ import annotations

from collections.abc import Iterable

from pyspark.sql import DataFrame

__all__ = ["MissingColumnsError", "require_columns"]


class MissingColumnsError(ValueError):
    """A DataFrame lacks columns a feature function needs.

    The message lists the missing and the present columns.
    """

    def __init__(self, what: str, missing: list[str], present: list[str]) -> None:
        self.missing = missing
        self.present = present
        super().__init__(
            f"{what}: missing columns {missing}; present columns: {present}"
        )


def require_columns(df: DataFrame, columns: Iterable[str], what: str) -> None:
    """Check that ``df`` has every column in ``columns`` (a schema check, no Spark action).

    Args:
        df: the frame to check.
        columns: the required column names.
        what: names the input in the error message, e.g. ``"silver/credit_clients"``.

    Raises:
        MissingColumnsError: some columns are absent.
    """
    present = df.columns
    missing = [c for c in columns if c not in present]
    if missing:
        raise MissingColumnsError(what, missing, list(present))
