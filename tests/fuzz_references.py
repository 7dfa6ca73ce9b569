"""Independent references for the property tests: Python's own parsers behind an ASCII grammar.

Python's ``int()``, ``float()`` and ``Decimal()`` accept more than featurelake's strict parsers
should (``"1_000"``, ``" 7 "``, ``"١٢٣"``, ``"nan"``), so a text must first match the grammar
the parsers document; the value is then Python's. Nothing here calls featurelake.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timezone
from decimal import Decimal

__all__ = [
    "FALSE_WORDS",
    "TRUE_WORDS",
    "reference_boolean",
    "reference_collapse_whitespace",
    "reference_days",
    "reference_double",
    "reference_integer",
    "reference_strip_zero_decimal",
    "reference_timestamp_micros",
    "reference_trim_to_null",
    "same_double",
]

_ASCII_INTEGER = re.compile(r"[+-]?[0-9]+")
_ASCII_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# A year is four digits, or ISO 8601's expanded form: a sign and more digits ("+02010"), which
# Java reads for "yyyy"; the value must then be a year 1-9999 (Python's datetime range).
_YEAR = r"([0-9]{4}|[+-][0-9]{5,})"
_ASCII_TIMESTAMP = re.compile(_YEAR + r"-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")
_ASCII_DATE = re.compile(_YEAR + r"-([0-9]{2})-([0-9]{2})")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
TRUE_WORDS = {"true", "t", "yes", "y", "1"}
FALSE_WORDS = {"false", "f", "no", "n", "0"}


def reference_integer(text: str | None, bits: int) -> int | None:
    if text is None or not _ASCII_INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if -(2 ** (bits - 1)) <= value < 2 ** (bits - 1) else None


def reference_double(text: str | None) -> float | None:
    if text is None or not _ASCII_DECIMAL.fullmatch(text):
        return None
    value = float(text)  # correctly rounded, as Java's parser
    if math.isinf(value):
        return None  # too large for a double
    if value == 0.0 and Decimal(text) != 0:
        return None  # too small: it would become zero
    return value


def reference_boolean(text: str | None) -> bool | None:
    if text is None:
        return None
    lowered = text.lower()
    return True if lowered in TRUE_WORDS else False if lowered in FALSE_WORDS else None


def reference_timestamp_micros(text: str | None) -> int | None:
    """Microseconds since the epoch of ``yyyy-MM-dd HH:mm:ss`` read as UTC (the session zone)."""
    match = _ASCII_TIMESTAMP.fullmatch(text) if text is not None else None
    if match is None:
        return None
    try:
        moment = datetime(*(int(g) for g in match.groups()), tzinfo=timezone.utc)
    except ValueError:  # year 0, month 13, 29 February of a common year, hour 24 ...
        return None
    return (moment - _EPOCH) // (moment.resolution)


def reference_days(text: str | None) -> int | None:
    match = _ASCII_DATE.fullmatch(text) if text is not None else None
    if match is None:
        return None
    try:
        return (date(*(int(g) for g in match.groups())) - date(1970, 1, 1)).days
    except ValueError:
        return None


def reference_trim_to_null(text: str | None) -> str | None:
    if text is None:
        return None
    return text.strip(" ") or None  # Spark's trim removes spaces (U+0020) only


def reference_collapse_whitespace(text: str | None) -> str | None:
    # Java's \s: space, tab, line feed, vertical tab, form feed, carriage return - not NBSP.
    return None if text is None else re.sub(r"[ \t\n\x0b\f\r]+", " ", text)


def reference_strip_zero_decimal(text: str | None) -> str | None:
    if text is None:
        return None
    whole, dot, fraction = text.partition(".")
    if dot and fraction and set(fraction) == {"0"} and _ASCII_INTEGER.fullmatch(whole):
        return whole
    return text


def same_double(got: float | None, expected: float | None) -> bool:
    if got is None or expected is None:
        return got is expected
    return got == expected and math.copysign(1.0, got) == math.copysign(1.0, expected)
