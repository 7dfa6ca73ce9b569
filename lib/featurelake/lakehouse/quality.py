"""Expectations engine: declared row rules and table checks, with quarantine and counts.

Row rules (:class:`Expectation`): ``not_null``, ``unique``, ``range``, ``allowed_values``,
``regex``, ``expression`` (Spark SQL, must be true), ``not_future`` (not after the run's
as-of time) and ``in_reference`` (the value is a key of another table, such as a known
customer: the caller passes that table, :func:`with_reference_flags`). Each has a severity:

* ``drop`` - the row goes to quarantine; its ``_failed_rules`` lists *every* drop rule it broke;
* ``fail`` - the job must stop before committing anything (``_fatal_rules`` marks the rows);
* ``warn`` - the row is kept; ``_warned_rules`` marks it so the rule can be logged and counted.

Null values pass every rule except ``not_null`` (a value that is absent is not out of range),
and an ``expression`` passes only when it is true (null is a failure).

Table checks (:class:`TableCheck`): ``min_rows`` and ``max_null_rate`` per column, severity
``fail`` or ``warn``, judged on the rows that survive into the clean table.

Everything here is a lazy transformation; counting and collecting happen in the job.

Example:
    >>> rules = [Expectation(type="not_null", column="customer_id")]
    >>> result = validate(df, rules, as_of=datetime(2024, 1, 1))
    >>> result.quarantine  # rows with _failed_rules == ["not_null:customer_id"]
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from featurelake.core.session import run_constant
from featurelake.lakehouse.cleaning import compact_array, quoted

__all__ = [
    "CheckOutcome",
    "Expectation",
    "FAILED_RULES",
    "FATAL_RULES",
    "RULE_COLUMNS",
    "Severity",
    "TableCheck",
    "ValidationResult",
    "WARNED_RULES",
    "check_constraint",
    "evaluate_table_checks",
    "rule_failure_aggregates",
    "rule_failure_counts",
    "rule_passes",
    "table_check_aggregates",
    "validate",
    "with_reference_flags",
    "with_rule_failures",
]

Severity = Literal["drop", "fail", "warn"]
RuleType = Literal[
    "not_null",
    "unique",
    "range",
    "allowed_values",
    "regex",
    "expression",
    "not_future",
    "in_reference",
]

FAILED_RULES = "_failed_rules"  # drop rules broken -> quarantine
WARNED_RULES = "_warned_rules"  # warn rules broken -> kept, counted
FATAL_RULES = "_fatal_rules"  # fail rules broken -> the job stops
RULE_COLUMNS: dict[Severity, str] = {
    "drop": FAILED_RULES,
    "warn": WARNED_RULES,
    "fail": FATAL_RULES,
}

_NEEDS: dict[str, tuple[str, ...]] = {
    "not_null": ("column",),
    "unique": ("column",),
    "range": ("column",),
    "allowed_values": ("column", "values"),
    "regex": ("column", "pattern"),
    "expression": ("expr", "name"),
    "not_future": ("column",),
    "in_reference": ("column", "reference", "key"),
}


class MissingReferenceError(ValueError):
    """An ``in_reference`` rule's table was not passed to :func:`with_reference_flags`."""


class Expectation(BaseModel):
    """One declared row rule.

    Args:
        type: the rule type (see the module docstring).
        column: the column checked (all types but ``expression``).
        name: the rule name in ``_failed_rules`` and metrics; defaults to ``<type>:<column>``
            and is required for ``expression``.
        severity: ``drop`` (quarantine), ``fail`` (stop the job) or ``warn`` (count, keep).
        min: ``range`` lower bound, inclusive (number, or ISO date/timestamp string).
        max: ``range`` upper bound, inclusive.
        values: ``allowed_values``: the allowed values.
        pattern: ``regex``: a Java regular expression the whole value must match.
        expr: ``expression``: a Spark SQL boolean expression that must be true.
        reference: ``in_reference``: the table holding the known keys, ``<layer>/<table>``
            (e.g. ``silver/customers``).
        key: ``in_reference``: the key column of ``reference`` the value must be one of.
        description: why the rule exists (documentation only).

    Raises:
        ValueError: a field the type needs is missing, or ``range`` has no bound.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: RuleType
    column: str | None = None
    name: str | None = None
    severity: Severity = "drop"
    min: float | int | str | None = None
    max: float | int | str | None = None
    values: tuple[Any, ...] | None = None
    pattern: str | None = None
    expr: str | None = None
    reference: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_]+/[A-Za-z0-9_]+$")
    key: str | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Expectation:
        missing = [f for f in _NEEDS[self.type] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"{self.type} rule needs {', '.join(missing)}")
        if self.type != "in_reference" and (self.reference or self.key):
            raise ValueError("reference and key are for in_reference rules")
        if self.type == "range" and self.min is None and self.max is None:
            raise ValueError(f"range rule on {self.column!r} needs min or max")
        return self

    @property
    def rule(self) -> str:
        """The rule's name: ``name`` or ``<type>:<column>``."""
        return self.name or f"{self.type}:{self.column}"

    @property
    def reference_flag(self) -> str:
        """``in_reference``: the column :func:`with_reference_flags` adds (true: key known)."""
        return f"_known|{self.rule}"


def with_reference_flags(
    df: DataFrame, expectations: Sequence[Expectation], references: Mapping[str, DataFrame]
) -> DataFrame:
    """Add, for each ``in_reference`` rule, a boolean column: the value is a key of its table.

    The reference's distinct keys are broadcast (a reference is a dimension: customers,
    products) and joined on the value compared as text, so ``17850`` and ``"17850"`` match.
    ``rule_passes`` then reads the column; other rules are untouched.

    Args:
        df: the rows to check.
        expectations: the rules; only ``in_reference`` ones add a column.
        references: ``<layer>/<table>`` -> that table's rows (at least the key column).

    Returns:
        ``df`` plus one ``_known|<rule>`` column per ``in_reference`` rule.

    Raises:
        MissingReferenceError: a rule's reference is not in ``references``.
    """
    for exp in expectations:
        if exp.type != "in_reference":
            continue
        if exp.reference not in references:
            raise MissingReferenceError(
                f"rule {exp.rule} needs the table {exp.reference}; given: {sorted(references)}"
            )
        matched = "__fl_reference_key"
        keys = (
            references[str(exp.reference)]
            .select(quoted(str(exp.key)).cast("string").alias(matched))
            .where(F.col(matched).isNotNull())
            .distinct()
            .withColumn(exp.reference_flag, F.lit(True))
        )
        df = (
            df.join(
                F.broadcast(keys),
                quoted(str(exp.column)).cast("string") == F.col(matched),
                "left",
            )
            .drop(matched)
            .withColumn(exp.reference_flag, F.coalesce(F.col(exp.reference_flag), F.lit(False)))
        )
    return df


def rule_passes(expectation: Expectation, as_of: datetime | None = None) -> Column:
    """A boolean column, never null: True where the row satisfies ``expectation``.

    Args:
        expectation: a row rule (not ``unique``, which needs a window: see
            :func:`with_rule_failures`).
        as_of: the run's as-of time, needed by ``not_future``.

    Raises:
        ValueError: ``unique``, or ``not_future`` without ``as_of``.
    """
    kind = expectation.type
    col = quoted(expectation.column) if expectation.column else None
    if kind == "expression":
        return F.coalesce(F.expr(str(expectation.expr)).cast("boolean"), F.lit(False))
    assert col is not None
    if kind == "not_null":
        return col.isNotNull()
    if kind == "range":
        ok = F.lit(True)
        if expectation.min is not None:
            ok = ok & (col >= F.lit(expectation.min))
        if expectation.max is not None:
            ok = ok & (col <= F.lit(expectation.max))
        return col.isNull() | ok
    if kind == "allowed_values":
        return col.isNull() | col.isin(*(expectation.values or ()))
    if kind == "regex":
        return col.isNull() | col.cast("string").rlike(_whole(str(expectation.pattern)))
    if kind == "in_reference":
        return col.isNull() | F.coalesce(quoted(expectation.reference_flag), F.lit(False))
    if kind == "not_future":
        if as_of is None:
            raise ValueError(f"rule {expectation.rule}: not_future needs the run's as_of time")
        return col.isNull() | (col <= run_constant(as_of))
    raise ValueError(f"rule {expectation.rule}: {kind} is not a row-local rule")


def check_constraint(expectation: Expectation) -> tuple[str, str] | None:
    """The rule as a Delta CHECK constraint: (constraint name, Spark SQL), as ``rule_passes``.

    Only rules that judge one row by its own values, the same way at every run: ``unique``
    (needs the other rows), ``not_future`` (needs the run's time) and ``in_reference`` (needs
    another table) have none.

    Returns:
        The name (``fl_`` and the rule name in lower-case identifier characters) and the
        predicate; None when the rule cannot be a constraint.
    """
    kind = expectation.type
    name = "fl_" + re.sub(r"[^a-z0-9_]", "_", expectation.rule.lower())
    if kind == "expression":
        return name, f"COALESCE(CAST(({expectation.expr}) AS BOOLEAN), false)"
    if kind in ("unique", "not_future", "in_reference") or expectation.column is None:
        return None
    col = "`" + expectation.column.replace("`", "``") + "`"
    if kind == "not_null":
        return name, f"{col} IS NOT NULL"
    if kind == "range":
        bounds = []
        if expectation.min is not None:
            bounds.append(f"{col} >= {_sql_literal(expectation.min)}")
        if expectation.max is not None:
            bounds.append(f"{col} <= {_sql_literal(expectation.max)}")
        return name, f"{col} IS NULL OR ({' AND '.join(bounds)})"
    if kind == "allowed_values":
        values = ", ".join(_sql_literal(v) for v in expectation.values or ())
        return name, f"{col} IS NULL OR {col} IN ({values})"
    if kind == "regex":
        pattern = _sql_literal(_whole(str(expectation.pattern)))
        return name, f"{col} IS NULL OR CAST({col} AS STRING) RLIKE {pattern}"
    return None


def _whole(pattern: str) -> str:
    """A Java regex matching the whole value: ``\\z``, since ``$`` also matches before a final
    line end (``'17850\\n'`` would pass ``[0-9]+``)."""
    return f"^(?:{pattern})\\z"


def _sql_literal(value: Any) -> str:
    """A Spark SQL literal (strings with quotes and backslashes escaped)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _unique_passes(expectation: Expectation, scope: Column) -> Column:
    col = quoted(str(expectation.column))
    others = F.count(F.lit(1)).over(Window.partitionBy(scope, col))
    return col.isNull() | (others <= 1)


def with_rule_failures(
    df: DataFrame,
    expectations: Sequence[Expectation],
    *,
    as_of: datetime | None = None,
    scope: Column | None = None,
) -> DataFrame:
    """Add (or extend) ``_failed_rules``, ``_warned_rules`` and ``_fatal_rules``.

    Each is an array<string> of the names of the rules of that severity the row broke, in
    declaration order, appended to what the column already held (so parse failures recorded
    earlier stay first).

    Args:
        df: the rows to check.
        expectations: the rules.
        as_of: the run's as-of time (``not_future``).
        scope: a boolean column; rows where it is false are not checked, and ``unique`` counts
            only rows in scope. All rows when None.

    Returns:
        ``df`` with the three rule columns.
    """
    in_scope = F.coalesce(scope, F.lit(False)) if scope is not None else F.lit(True)
    present = set(df.columns)
    added: dict[str, Column] = {}
    for severity, column in RULE_COLUMNS.items():
        flags = []
        for exp in expectations:
            if exp.severity != severity:
                continue
            passes = (
                _unique_passes(exp, in_scope) if exp.type == "unique" else rule_passes(exp, as_of)
            )
            flags.append((in_scope & ~passes, exp.rule))
        new = compact_array(flags)
        if column in present:
            new = F.concat(F.coalesce(F.col(column), F.array().cast("array<string>")), new)
        added[column] = new
    # One projection: each Spark DataFrame step analyses the whole plan again.
    return df.withColumns(added)


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of :func:`validate` (all lazy).

    Attributes:
        annotated: every input row with ``_failed_rules``, ``_warned_rules``, ``_fatal_rules``.
        clean: the rows with no ``drop`` failure (rule columns removed).
        quarantine: the rows with at least one ``drop`` failure (with ``_failed_rules``).
    """

    annotated: DataFrame
    clean: DataFrame
    quarantine: DataFrame


def validate(
    df: DataFrame, expectations: Sequence[Expectation], *, as_of: datetime | None = None
) -> ValidationResult:
    """Check every rule on every row and split clean rows from quarantined ones.

    Args:
        df: the rows.
        expectations: the rules.
        as_of: the run's as-of time (``not_future``).

    Returns:
        A :class:`ValidationResult`.
    """
    annotated = with_rule_failures(df, expectations, as_of=as_of)
    bad = F.size(F.col(FAILED_RULES)) > 0
    clean = annotated.filter(~bad).drop(FAILED_RULES, WARNED_RULES, FATAL_RULES)
    quarantine = annotated.filter(bad).drop(WARNED_RULES, FATAL_RULES)
    return ValidationResult(annotated=annotated, clean=clean, quarantine=quarantine)


def rule_failure_aggregates(
    rules: Sequence[tuple[str, Severity]], where: Column | None = None
) -> list[Column]:
    """Aggregate columns counting the rows that broke each rule (``<severity>|<rule>``).

    Args:
        rules: (rule name, severity) pairs to count; rules nobody broke count 0.
        where: a boolean column: only rows where it is true are counted. All rows when None.
    """
    aggregates = []
    for rule, severity in rules:
        broke = F.array_contains(F.col(RULE_COLUMNS[severity]), rule)
        if where is not None:
            broke = broke & where
        aggregates.append(
            F.coalesce(F.sum(broke.cast("long")), F.lit(0)).alias(f"{severity}|{rule}")
        )
    return aggregates


def rule_failure_counts(df: DataFrame, rules: Sequence[tuple[str, Severity]]) -> DataFrame:
    """One row: ``rows`` and, per rule, how many rows broke it (column ``<severity>|<rule>``).

    Args:
        df: rows annotated by :func:`with_rule_failures`.
        rules: (rule name, severity) pairs to count; rules nobody broke count 0.
    """
    return df.agg(F.count(F.lit(1)).alias("rows"), *rule_failure_aggregates(rules))


# --------------------------------------------------------------------------------------------
# Table-level checks
# --------------------------------------------------------------------------------------------


class TableCheck(BaseModel):
    """A check on the whole clean table.

    Args:
        type: ``min_rows`` (at least ``value`` rows) or ``max_null_rate`` (at most ``value``,
            a fraction 0..1, of ``column`` is null).
        value: the bound.
        column: the column (``max_null_rate``).
        severity: ``fail`` (stop the job) or ``warn`` (log and count).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["min_rows", "max_null_rate"]
    value: float
    column: str | None = None
    severity: Literal["fail", "warn"] = "fail"

    @model_validator(mode="after")
    def _check(self) -> TableCheck:
        if self.type == "max_null_rate":
            if self.column is None:
                raise ValueError("max_null_rate needs column")
            if not 0 <= self.value <= 1:
                raise ValueError(
                    f"max_null_rate value must be a fraction in [0, 1], got {self.value}"
                )
        if self.type == "min_rows" and self.value < 0:
            raise ValueError(f"min_rows value must be >= 0, got {self.value}")
        return self

    @property
    def rule(self) -> str:
        """``min_rows`` or ``max_null_rate:<column>``."""
        return self.type if self.type == "min_rows" else f"{self.type}:{self.column}"


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one table check: passed or not, with what was measured."""

    rule: str
    severity: str
    passed: bool
    failed_count: int
    detail: str


def table_check_aggregates(checks: Sequence[TableCheck], rows: str = "rows") -> list[Column]:
    """Aggregate columns a table check needs: the row count (named ``rows``) and
    ``nulls:<column>`` per null check."""
    aggs = [F.count(F.lit(1)).alias(rows)]
    for column in dict.fromkeys(c.column for c in checks if c.type == "max_null_rate"):
        aggs.append(
            F.coalesce(F.sum(quoted(str(column)).isNull().cast("long")), F.lit(0)).alias(
                f"nulls:{column}"
            )
        )
    return aggs


def evaluate_table_checks(
    checks: Sequence[TableCheck], measured: Mapping[str, Any]
) -> list[CheckOutcome]:
    """Judge table checks from the values :func:`table_check_aggregates` measured.

    Args:
        checks: the declared checks.
        measured: ``rows`` and ``nulls:<column>`` values.

    Returns:
        One :class:`CheckOutcome` per check; for ``max_null_rate`` the failed count is the
        number of nulls, for ``min_rows`` the shortfall.
    """
    rows = int(measured["rows"])
    outcomes = []
    for check in checks:
        if check.type == "min_rows":
            passed = rows >= check.value
            outcomes.append(
                CheckOutcome(
                    check.rule,
                    check.severity,
                    passed,
                    0 if passed else int(check.value) - rows,
                    f"{rows} rows, minimum {int(check.value)}",
                )
            )
        else:
            nulls = int(measured[f"nulls:{check.column}"])
            rate = nulls / rows if rows else 0.0
            passed = rate <= check.value
            outcomes.append(
                CheckOutcome(
                    check.rule,
                    check.severity,
                    passed,
                    0 if passed else nulls,
                    f"{nulls} of {rows} null ({rate:.4%}), maximum {check.value:.4%}",
                )
            )
    return outcomes
