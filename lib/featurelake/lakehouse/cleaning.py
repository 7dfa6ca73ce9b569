"""Pure cleaning transformations for silver: trim, normalise codes, parse strictly.

Three shapes, as everywhere in featurelake: Column -> Column functions (``trim_to_null``,
``parse_int`` ...), DataFrame -> DataFrame functions named ``with_<thing>``, and the declarations
(:class:`ColumnSpec`) that say which of them a silver column uses.

Parsing is *strict*: a value that is present but does not parse to the declared type gives
``null`` here, and :func:`with_parsed_columns` records a ``parse:<column>`` failure for it, so
that silver quarantines the row instead of silently nulling the value.

Example:
    >>> spec = ColumnSpec(name="quantity", source="Quantity", type="int")
    >>> typed = bronze.transform(with_parsed_columns, [spec], raw="_raw")
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

__all__ = [
    "CLEANING_STEPS",
    "ColumnSpec",
    "PARSE_ERRORS",
    "SilverType",
    "apply_cleaning",
    "collapse_whitespace",
    "compact_array",
    "normalize_codes",
    "parse_boolean",
    "parse_date",
    "parse_double",
    "parse_int",
    "parse_long",
    "parse_timestamp",
    "parse_value",
    "quoted",
    "strip_zero_decimal",
    "trim_to_null",
    "with_derived_columns",
    "with_parsed_columns",
]

SilverType = Literal["string", "int", "long", "double", "boolean", "date", "timestamp"]

# The array column listing the parse failures of a row (``parse:<column>``).
PARSE_ERRORS = "_parse_errors"

# The patterns end in \z, not $: Java's $ also matches before a final line terminator, and
# the casts drop it, so "12\n" would pass as 12 while "\n12" does not.
# Digits only, optional sign: "6.0", "1e3", " " and "0x10" are not integers.
_INTEGER = r"^[+-]?[0-9]+\z"
# A plain decimal number with an optional exponent; rejects NaN, Infinity and hex.
_DECIMAL = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\z"
# A decimal number whose digits are all zero: the only strings that may parse to 0.0.
_ZERO = r"^[+-]?(0+\.?0*|\.0+)([eE][+-]?[0-9]+)?\z"
_MAX_DOUBLE = 1.7976931348623157e308
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def quoted(name: str) -> Column:
    """``F.col`` for a name that may contain dots or spaces (``default.payment.next.month``)."""
    return F.col("`" + name.replace("`", "``") + "`")


# --------------------------------------------------------------------------------------------
# Column -> Column cleaning steps
# --------------------------------------------------------------------------------------------


def trim_to_null(col: Column) -> Column:
    """Trim surrounding whitespace; an empty result becomes null.

    Args:
        col: a string column.

    Returns:
        The trimmed string, or null when nothing is left.
    """
    trimmed = F.trim(col)
    return F.when(trimmed == "", F.lit(None).cast("string")).otherwise(trimmed)


def collapse_whitespace(col: Column) -> Column:
    """Replace every run of whitespace inside a string by one space.

    Whitespace is the regex class ``\\s``: space, tab, line feed, vertical tab, form feed and
    carriage return. Most values hold nothing to collapse (no two spaces in a row, no other
    whitespace): they are recognised by substring tests and returned as they are, which is a
    third of the cost of running the regex on every value.
    """
    needs_collapse = col.contains("  ")
    for other in ("\t", "\n", "\x0b", "\f", "\r"):
        needs_collapse = needs_collapse | col.contains(other)
    return F.when(needs_collapse, F.regexp_replace(col, r"\s+", " ")).otherwise(col)


def strip_zero_decimal(col: Column) -> Column:
    """Drop a zero fraction from an integer written as a decimal: ``"17850.0"`` -> ``"17850"``.

    Values with a non-zero fraction (``"17850.5"``) are left as they are, so a rule can reject
    them rather than have them silently truncated.
    """
    return F.regexp_replace(col, r"^([+-]?[0-9]+)\.0+\z", "$1")


CLEANING_STEPS: dict[str, Callable[[Column], Column]] = {
    "trim": trim_to_null,
    "upper": F.upper,
    "lower": F.lower,
    "collapse_whitespace": collapse_whitespace,
    "strip_zero_decimal": strip_zero_decimal,
}


def apply_cleaning(col: Column, steps: Sequence[str]) -> Column:
    """Apply the named cleaning steps in order.

    Args:
        col: a string column.
        steps: names from :data:`CLEANING_STEPS`.

    Raises:
        ValueError: an unknown step name (the message lists the known ones).
    """
    for step in steps:
        if step not in CLEANING_STEPS:
            raise ValueError(
                f"unknown cleaning step {step!r}; known steps: {sorted(CLEANING_STEPS)}"
            )
        col = CLEANING_STEPS[step](col)
    return col


def normalize_codes(col: Column, mapping: Mapping[Any, Any]) -> Column:
    """Replace code values by their normalised value; other values pass unchanged.

    Example: ``normalize_codes(F.col("education"), {0: 4, 5: 4, 6: 4})``.

    Args:
        col: the (typed) column.
        mapping: from observed value to normalised value.
    """
    if not mapping:
        return col
    result = None
    for source, target in mapping.items():
        result = (
            F.when(col == F.lit(source), F.lit(target))
            if result is None
            else result.when(col == F.lit(source), F.lit(target))
        )
    assert result is not None
    return result.otherwise(col)


# --------------------------------------------------------------------------------------------
# Strict parsers: null in, null out; present but unparseable -> null (flagged by the caller)
# --------------------------------------------------------------------------------------------


def parse_int(col: Column) -> Column:
    """Parse an integer string strictly (``"6"`` -> 6; ``"6.0"``, ``"abc"``, overflow -> null)."""
    return F.when(col.rlike(_INTEGER), col.try_cast("int"))


def parse_long(col: Column) -> Column:
    """Parse a 64-bit integer string strictly (as :func:`parse_int`)."""
    return F.when(col.rlike(_INTEGER), col.try_cast("long"))


def parse_double(col: Column) -> Column:
    """Parse a decimal number (``"2.55"``, ``"-1e3"``) to a finite double.

    ``"NaN"``, ``"Infinity"``, ``"abc"`` -> null, and so are numbers a double cannot hold:
    ``"1e400"`` (which a plain cast turns into Infinity) and ``"1e-400"`` (which it turns
    into 0.0) - a value that would silently become another one. ``"-0"`` is -0.0.
    """
    value = col.try_cast("double")
    fits = (F.abs(value) <= F.lit(_MAX_DOUBLE)) & ((value != 0) | col.rlike(_ZERO))
    return F.when(col.rlike(_DECIMAL) & fits, value)


def parse_boolean(col: Column) -> Column:
    """Parse true/false, t/f, yes/no, y/n, 1/0 (any case); anything else -> null."""
    lowered = F.lower(col)
    return F.when(lowered.isin(*_TRUE), F.lit(True)).when(lowered.isin(*_FALSE), F.lit(False))


def parse_date(col: Column, fmt: str) -> Column:
    """Parse a date with a Spark datetime pattern (``yyyy-MM-dd``); an invalid date -> null.

    As :func:`parse_timestamp`, a year outside 1-9999 is not a date.
    """
    return F.to_date(parse_timestamp(col, fmt))


def parse_timestamp(col: Column, fmt: str) -> Column:
    """Parse a timestamp with a Spark datetime pattern; an invalid one (month 13) -> null.

    A year outside 1-9999 gives null too: Spark reads ``yyyy`` as a proleptic year, so
    ``"0000-01-01"`` (1 BC) and ``"-2010-12-01"`` (2011 BC) would parse, and no Python reader
    of the table (``collect()``, pandas, the feature store) can hold such a value.
    """
    parsed = F.try_to_timestamp(col, F.lit(fmt))
    return F.when(F.year(parsed).between(1, 9999), parsed)


def parse_value(col: Column, type_: SilverType, fmt: str | None = None) -> Column:
    """Parse a cleaned string to ``type_`` strictly.

    Args:
        col: the cleaned string.
        type_: the silver type.
        fmt: the datetime pattern for ``date`` and ``timestamp``.

    Raises:
        ValueError: ``fmt`` missing for a date or timestamp.
    """
    if type_ == "string":
        return col
    if type_ in ("date", "timestamp") and not fmt:
        raise ValueError(f"type {type_} needs a format (a Spark datetime pattern)")
    parsers: dict[str, Callable[[Column], Column]] = {
        "int": parse_int,
        "long": parse_long,
        "double": parse_double,
        "boolean": parse_boolean,
        "date": lambda c: parse_date(c, str(fmt)),
        "timestamp": lambda c: parse_timestamp(c, str(fmt)),
    }
    return parsers[type_](col)


# --------------------------------------------------------------------------------------------
# Declarations and DataFrame -> DataFrame steps
# --------------------------------------------------------------------------------------------


class ColumnSpec(BaseModel):
    """One silver column: parsed from a bronze column, or derived by a SQL expression.

    Args:
        name: the silver column name.
        source: the bronze (raw string) column it is parsed from.
        expr: a Spark SQL expression over earlier silver columns (instead of ``source``).
        type: the silver type.
        format: Spark datetime pattern for ``date``/``timestamp`` parsed from ``source``.
        clean: cleaning steps applied to the raw string before parsing (``trim`` first is
            usual; see :data:`CLEANING_STEPS`).
        normalize: code normalisation applied after parsing, ``{observed: normalised}``.
        description: what the column means (documentation only).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str | None = None
    expr: str | None = None
    type: SilverType
    format: str | None = None
    clean: tuple[str, ...] = ("trim",)
    normalize: dict[Any, Any] | None = None
    description: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ColumnSpec:
        if (self.source is None) == (self.expr is None):
            raise ValueError(f"column {self.name!r}: give exactly one of source or expr")
        if self.source is not None and self.type in ("date", "timestamp") and not self.format:
            raise ValueError(
                f"column {self.name!r}: type {self.type} parsed from a string needs format"
            )
        unknown = [s for s in self.clean if s not in CLEANING_STEPS]
        if unknown:
            raise ValueError(
                f"column {self.name!r}: unknown cleaning steps {unknown}; "
                f"known: {sorted(CLEANING_STEPS)}"
            )
        return self


def with_parsed_columns(
    df: DataFrame, columns: Sequence[ColumnSpec], *, raw: str | None = None
) -> DataFrame:
    """Add each source column's cleaned, strictly parsed value and a ``_parse_errors`` array.

    A value that is present after cleaning but does not parse adds ``parse:<name>`` to
    ``_parse_errors``; a missing (null or blank) value is simply null (``not_null`` rules judge
    that). Code normalisation happens after parsing.

    Args:
        df: the bronze rows.
        columns: the column declarations; derived ones (``expr``) are skipped here.
        raw: a struct column holding the raw strings; top-level columns when None.

    Returns:
        ``df`` plus one column per parsed declaration and ``_parse_errors`` (array<string>);
        a raw column whose name equals a parsed one up to case is replaced by it.
    """
    parsed_specs = [spec for spec in columns if spec.source is not None]
    # Three projections, each materialising what the next one reads more than once, so no
    # expression is evaluated twice per row: the cleaned strings, then the parsed values, then
    # the declared columns (normalised, cast) with the failure flags of the parsed values.
    # They also keep the plans small for wide tables.
    cleaned = {
        f"__cleaned_{i}": apply_cleaning(
            (F.col(raw).getField(str(spec.source)) if raw else quoted(str(spec.source))).cast(
                "string"
            ),
            spec.clean,
        )
        for i, spec in enumerate(parsed_specs)
    }
    parsed = {
        f"__parsed_{i}": parse_value(F.col(f"__cleaned_{i}"), spec.type, spec.format)
        for i, spec in enumerate(parsed_specs)
    }
    errors = []
    final: dict[str, Column] = {}
    for i, spec in enumerate(parsed_specs):
        value = F.col(f"__parsed_{i}")
        if spec.type != "string":
            errors.append(
                (F.col(f"__cleaned_{i}").isNotNull() & value.isNull(), f"parse:{spec.name}")
            )
        if spec.normalize:
            value = normalize_codes(value, spec.normalize)
        final[spec.name] = value.cast(spec.type)
    final[PARSE_ERRORS] = compact_array(errors)
    # Every expression reads the staged columns, even where a new name equals a raw one up to
    # case (Spark resolves names case-insensitively: EDUCATION vs education).
    return df.withColumns(cleaned).withColumns(parsed).withColumns(final).drop(*cleaned, *parsed)


def compact_array(flags: Sequence[tuple[Column, str]]) -> Column:
    """An ``array<string>`` of the names whose condition is true, in order (empty when none).

    The same result as ``filter(array(when(c1, n1), ...), x -> x IS NOT NULL)``, built from
    ``concat`` so that Spark generates code for it (higher-order functions are interpreted
    row by row); each condition appears once in the plan.

    Args:
        flags: (condition, name) pairs; a null condition counts as false.
    """
    empty = F.array().cast("array<string>")
    if not flags:
        return empty
    return F.concat(
        *[F.when(condition, F.array(F.lit(name))).otherwise(empty) for condition, name in flags]
    )


def with_derived_columns(df: DataFrame, columns: Sequence[ColumnSpec]) -> DataFrame:
    """Add each derived column (``expr``), in declaration order, cast to its type.

    Args:
        df: rows with the parsed columns.
        columns: the column declarations; parsed ones (``source``) are skipped here.
    """
    # Columns go in as few projections as declaration order allows (each Spark DataFrame step
    # analyses the whole plan again): a column whose expression mentions one of the pending
    # names, even only inside a string, starts a new projection, so that it reads the value.
    out = df
    pending: dict[str, Column] = {}
    for spec in columns:
        if spec.expr is None:
            continue
        if any(name.lower() in spec.expr.lower() for name in pending):
            out, pending = out.withColumns(pending), {}
        pending[spec.name] = F.expr(spec.expr).cast(spec.type)
    return out.withColumns(pending) if pending else out
