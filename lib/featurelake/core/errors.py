"""One error hierarchy: what went wrong decides the exit code and whether a retry can help.

* :class:`UserError` (exit 2): how the job was called or configured - a bad option, a
  configuration file or declaration (:class:`ConfigError`), an unknown name.
* :class:`DataError` (exit 2): the input data breaks a rule that stops the job (retrying the
  same data will not help), e.g. missing columns (:class:`MissingColumnsError`).
* :class:`TransientError` (exit 75, ``EX_TEMPFAIL``): worth retrying as it is - a concurrent
  writer won a commit, a service did not answer.

Anything else is a bug: the runner logs its traceback and exits 1, so that it cannot pose as
a user error.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "DataError",
    "FeaturelakeError",
    "MissingColumnsError",
    "TransientError",
    "UserError",
    "require_columns",
]


class FeaturelakeError(Exception):
    """The root of featurelake's errors; ``exit_code`` is the job's exit code."""

    exit_code = 1


class UserError(FeaturelakeError, ValueError):
    """A mistake in how a job was called or configured (exit code 2)."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration file or override is invalid.

    The message names the file, the dotted key path and what was expected.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class DataError(FeaturelakeError):
    """The input data breaks a rule that stops the job; retrying will not help (exit 2)."""

    exit_code = 2


class TransientError(FeaturelakeError):
    """A failure worth retrying as it is: a lost race, a busy service (exit 75)."""

    exit_code = 75


class MissingColumnsError(DataError, ValueError):
    """A frame lacks columns a step needs; the message lists the missing and present ones."""

    def __init__(self, what: str, missing: Iterable[str], present: Iterable[str]) -> None:
        self.missing = list(missing)
        self.present = list(present)
        super().__init__(f"{what}: missing columns {self.missing}; present columns: {self.present}")


def require_columns(present: Iterable[str], needed: Iterable[str], what: str) -> None:
    """Check that every ``needed`` column is ``present`` (a schema check, no Spark action).

    Args:
        present: the columns there are (``df.columns``).
        needed: the columns required.
        what: what is checked, for the message (``"silver/transactions"``).

    Raises:
        MissingColumnsError: naming the missing and the present columns.
    """
    have = list(present)
    missing = [c for c in needed if c not in have]
    if missing:
        raise MissingColumnsError(what, missing, have)
