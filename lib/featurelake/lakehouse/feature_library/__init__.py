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

from featurelake.core.errors import MissingColumnsError
from featurelake.core.errors import require_columns as check_columns

__all__ = ["MissingColumnsError", "require_columns"]


def require_columns(df: DataFrame, columns: Iterable[str], what: str) -> None:
    """Check that ``df`` has every column in ``columns`` (a schema check, no Spark action).

    Args:
        df: the frame to check.
        columns: the required column names.
        what: names the input in the error message, e.g. ``"silver/credit_clients"``.

    Raises:
        MissingColumnsError: some columns are absent.
    """
    check_columns(df.columns, columns, what)
