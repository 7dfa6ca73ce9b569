"""What every synthetic generator is built from: deterministic draws and the lines they make.

A draw (:func:`uniform`) is a pure function of ``(seed, key, salt)``; ``_below`` and ``_pick``
turn one into an index or one of a few texts; ``_emit`` turns a frame of lines into the rows of
the output files (a header first in each file, duplicated lines twice).
:mod:`featurelake.devtools.synthetic` and :mod:`featurelake.devtools.synthetic_credit` use them.
"""

from __future__ import annotations

import re

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

__all__ = ["uniform"]

_TWO_POW_53 = 2**53


def uniform(seed: int, key: Column | str, salt: str) -> Column:
    """A pseudo-random double in [0, 1) that depends only on ``(seed, key, salt)``.

    Args:
        seed: the generator's seed.
        key: the column the draw belongs to (a line, an invoice, a customer...): a column name
            (preferred: one JVM call builds the draw) or any Column.
        salt: names the draw, so that different draws for one key are independent; letters,
            digits and ``_``.
    """
    if not re.fullmatch(r"\w+", salt):
        raise ValueError(f"salt must be letters, digits or '_': {salt!r}")
    # The low 53 bits (= the hash mod 2^53), scaled by 2^-53: every value is exact in a double.
    # A mask and a product generate less code than pmod and a division, same values.
    if isinstance(key, str):
        # One SQL expression instead of a dozen Column calls (each a round trip to the JVM);
        # the literals have the same types as F.lit's (INT or BIGINT seed, STRING salt).
        return F.expr(
            f"CAST(xxhash64({int(seed)}, `{key}`, '{salt}') & {_TWO_POW_53 - 1}L "
            f"AS DOUBLE) * {1.0 / _TWO_POW_53!r}D"
        )
    hashed = F.xxhash64(F.lit(seed), key, F.lit(salt))
    low_bits = hashed.bitwiseAND(F.lit(_TWO_POW_53 - 1))
    return low_bits.cast("double") * F.lit(1.0 / _TWO_POW_53)


_SEPARATOR = "\u001f"  # ASCII unit separator: in none of the option texts


def _string_array(options: tuple[str, ...]) -> Column:
    """A constant array of strings, built with a few JVM calls (one literal, split once by the
    optimizer's constant folding) instead of one call per element."""
    if any(_SEPARATOR in o for o in options):
        raise ValueError(f"option texts must not contain {_SEPARATOR!r}: {options}")
    return F.split(F.lit(_SEPARATOR.join(options)), _SEPARATOR)


def _pick(options: tuple[str, ...], index: Column) -> Column:
    return F.element_at(_string_array(options), (index % len(options) + 1).cast("int"))


def _below(u: Column, n: int) -> Column:
    """floor(u * n) as a long: an index in [0, n)."""
    return F.floor(u * F.lit(n)).cast("long")


def _emit(
    ids: DataFrame, line: Column, duplicate: Column, header: str | None, files: int, total: int
) -> DataFrame:
    """One row per output line: the header first in each partition, duplicated lines twice.

    ``spark.range(0, total, 1, files)`` puts ids ``[i * total // files, (i+1) * total // files)``
    in partition ``i``; the header goes before the partition's first id.
    """
    parts = []
    if header is not None:
        first = F.expr(f"(CAST(spark_partition_id() AS BIGINT) * {total}) div {files}")
        parts.append(
            F.when(F.col("id") == first, F.array(F.lit(header))).otherwise(
                F.array().cast("array<string>")
            )
        )
    parts.append(F.array(line))
    parts.append(F.when(duplicate, F.array(line)).otherwise(F.array().cast("array<string>")))
    return ids.select(F.explode(F.concat(*parts)).alias("value"))
