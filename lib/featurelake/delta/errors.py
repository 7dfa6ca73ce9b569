"""The table layer's errors: what a caller can catch, whichever backend is active."""

from __future__ import annotations

from featurelake.core.errors import DataError, FeaturelakeError, TransientError

__all__ = [
    "AlreadyCommittedError",
    "ConcurrentWriteError",
    "ConstraintViolationError",
    "SchemaMismatchError",
    "TableIOError",
    "TableNotFoundError",
]


class TableIOError(FeaturelakeError):
    """Base class for table I/O errors (exit code 2: a table or its use is not as expected)."""

    exit_code = 2


class TableNotFoundError(TableIOError, DataError):
    """There is no Delta table at the path (or not at the requested version)."""


class SchemaMismatchError(TableIOError, DataError, ValueError):
    """A write's schema is incompatible with the table's schema."""


class ConcurrentWriteError(TableIOError, TransientError):
    """Another writer committed a conflicting change first; nothing of this write was committed.

    Transient (exit code 75): running the job again recomputes from the new version.
    """

    exit_code = TransientError.exit_code


class AlreadyCommittedError(ConcurrentWriteError):
    """The table already records the write's application transaction; nothing was committed."""


class ConstraintViolationError(TableIOError, DataError, ValueError):
    """A write holds rows that break one of the table's CHECK constraints; nothing committed."""
