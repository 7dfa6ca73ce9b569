"""The table layer's errors: what a caller can catch, whichever backend is active."""

from __future__ import annotations

__all__ = [
    "AlreadyCommittedError",
    "ConcurrentWriteError",
    "ConstraintViolationError",
    "SchemaMismatchError",
    "TableIOError",
    "TableNotFoundError",
]


class TableIOError(RuntimeError):
    """Base class for table I/O errors."""


class TableNotFoundError(TableIOError):
    """There is no Delta table at the path (or not at the requested version)."""


class SchemaMismatchError(TableIOError, ValueError):
    """A write's schema is incompatible with the table's schema."""


class ConcurrentWriteError(TableIOError):
    """Another writer committed a conflicting change first; nothing of this write was committed."""


class AlreadyCommittedError(ConcurrentWriteError):
    """The table already records the write's application transaction; nothing was committed."""


class ConstraintViolationError(TableIOError, ValueError):
    """A write holds rows that break one of the table's CHECK constraints; nothing committed."""
