"""The silver transformation: one bronze snapshot -> silver rows and quarantined rows (lazy)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pyspark.sql import Column, DataFrame, Observation, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from featurelake.core.errors import MissingColumnsError
from featurelake.core.session import run_constant
from featurelake.lakehouse.cleaning import (
    PARSE_ERRORS,
    compact_array,
    quoted,
    with_derived_columns,
    with_parsed_columns,
)
from featurelake.lakehouse.pii import (
    hmac_sha256_hex,
    with_pseudonymised_columns,
)
from featurelake.lakehouse.quality import (
    FAILED_RULES,
    RULE_COLUMNS,
    Expectation,
    Severity,
    rule_failure_aggregates,
    table_check_aggregates,
    with_reference_flags,
    with_rule_failures,
)
from featurelake.lakehouse.silver.counts import SilverCounts, summarize_counts
from featurelake.lakehouse.silver.spec import (
    INVALID_ENCODING_RULE,
    LINEAGE_COLUMNS,
    MALFORMED_RULE,
    OUTCOME,
    RAW,
    RESCUED,
    SilverTableSpec,
)

_OK = "_row_ok"


_MAX_DOUBLE = 1.7976931348623157e308


_DUP = "_is_duplicate"


class BronzeSchemaError(MissingColumnsError):
    """The bronze table lacks columns the silver declaration needs."""


@dataclass(frozen=True)
class SilverObservations:
    """The Spark observations measuring one silver build, each row counted exactly once.

    Attributes:
        ranked: the rows that passed the row rules, after the dedup window (passed, kept,
            and the warn/fail/unique rules judged there).
        clean: the silver rows (the table checks).
        rejected: the rows a row rule quarantined (and the rules they broke).
    """

    ranked: Observation
    clean: Observation
    rejected: Observation

    @classmethod
    def for_table(cls, table: str) -> SilverObservations:
        """Three new observations with names unique in the session."""
        return cls(
            *(
                Observation(f"silver-{part}-{table}-{uuid.uuid4().hex}")
                for part in ("ranked", "clean", "rejected")
            )
        )

    def __iter__(self) -> Iterator[Observation]:
        return iter((self.ranked, self.clean, self.rejected))


@dataclass(frozen=True)
class SilverPlan:
    """The lazy result of :func:`build_silver`.

    Attributes:
        silver: the clean rows in the silver schema (PII pseudonymised).
        quarantine: the quarantined rows: raw columns (PII hashed), lineage,
            ``_failed_rules``, ``_run_id``, ``_quarantined_at``.
        observations: with ``observe=True``, the Spark observations that measure the counts
            while ``silver`` and ``quarantine`` are computed; read them with :meth:`counts`.
        classify: builds :attr:`classified`.
        silver_of: ``silver`` from (a copy of) :attr:`classified`: see :meth:`split`.
        quarantine_of: ``quarantine`` from (a copy of) :attr:`classified`.
    """

    silver: DataFrame
    quarantine: DataFrame
    classify: Callable[[], DataFrame] = field(repr=False)
    observations: SilverObservations | None = None
    silver_of: Callable[[DataFrame], DataFrame] | None = field(default=None, repr=False)
    quarantine_of: Callable[[DataFrame], DataFrame] | None = field(default=None, repr=False)

    @functools.cached_property
    def classified(self) -> DataFrame:
        """Every bronze row once, with its typed columns, ``_outcome`` and rule arrays.

        For examination and for the examples in a ``fail`` message; the job does not write
        it, so its plan (a second ranking window) is built only when asked for.
        """
        return self.classify()

    def split(self, classified: DataFrame) -> tuple[DataFrame, DataFrame]:
        """``(silver, quarantine)`` computed from ``classified`` instead of from bronze.

        ``classified`` is :attr:`classified`, or rows of it (persisted, filtered, with extra
        columns): its ``clean`` rows in the silver schema (PII pseudonymised) and its
        ``quarantined`` rows as the quarantine holds them - the rows :attr:`silver` and
        :attr:`quarantine` would hold. A caller that persists :attr:`classified` computes the
        rules and the dedup window once for both (two plans from bronze compute them twice);
        the counts are then its own (no observations).
        """
        if self.silver_of is None or self.quarantine_of is None:
            raise TypeError("this SilverPlan was built without silver_of/quarantine_of")
        return self.silver_of(classified), self.quarantine_of(classified)

    def counts(self, spec: SilverTableSpec) -> SilverCounts:
        """The counts measured while ``silver`` and ``quarantine`` were written.

        Needs ``observe=True``; blocks until the first actions on ``silver`` and on
        ``quarantine`` have finished.
        """
        if self.observations is None:
            raise ValueError("build_silver(..., observe=True) is needed to measure counts")
        measured: dict[str, int] = {}
        for observation in self.observations:
            for name, value in observation.get.items():
                # A warn or fail rule is counted among the passed and the rejected rows.
                measured[name] = measured.get(name, 0) + int(value)
        measured["rows"] = measured["passed"] + measured["rejected"]
        return summarize_counts(measured, spec)


def _check_bronze_schema(bronze: DataFrame, spec: SilverTableSpec) -> None:
    present = bronze.columns
    needed = [*spec.source_columns, RESCUED, *LINEAGE_COLUMNS]
    missing = [c for c in needed if c not in present]
    if missing:
        raise BronzeSchemaError(
            f"silver table {spec.name}: bronze table {spec.source}", missing, present
        )


def _with_latest_rank(
    df: DataFrame, spec: SilverTableSpec, among: Column | None = None
) -> DataFrame:
    """Mark all but the latest record of each key as duplicates.

    Args:
        df: the rows.
        spec: the declaration (its dedup key and order).
        among: a boolean column: only rows where it is true take part (the others are never
            duplicates); all rows when None.

    The window's sort order is the key's first column, then a 64-bit hash of the whole key,
    then ``among``, then the rest of the key (the same groups as the key alone):

    * the hash, compared as one long, settles what the first column's 8-byte sort prefix
      leaves tied without comparing up to a dozen strings; a boolean first would tie for
      nearly every pair (measured on 1M transactions: a job sorting and ranking every row,
      then writing the rejected ones, took 4.7 s of task time with ``among`` first, 3.5 s
      with the hash first);
    * the first column first (not the hash) leaves each written file ordered by it, so that
      similar rows sit together: silver/transactions, ordered by invoice, was 12 MB instead of
      18 MB at 1M lines (snappy, with dictionaries), silver took 7.0 s against 7.1 s and
      gold 2.4 s against 2.6 s.
    """
    if spec.dedup is None:
        return df.withColumn(_DUP, F.lit(False))
    first, *rest = [quoted(k) for k in spec.dedup_key]
    hashed = F.xxhash64(first, *rest)
    groups = [first, hashed, *rest] if among is None else [first, hashed, among, *rest]
    order = [quoted(c).desc_nulls_last() for c in spec.dedup.latest_by]
    order.append(F.xxhash64(F.col(RAW)).desc())
    # "Not the first row of its group": a previous row exists. With row_number() > 1 the
    # optimiser would add a partial top-1 per group before the shuffle - a second full sort,
    # which only pays off when most rows are duplicates.
    later = F.lag(F.lit(True)).over(Window.partitionBy(*groups).orderBy(*order)).isNotNull()
    duplicate = later if among is None else among & later
    return df.withColumn(_DUP, duplicate)


def _raw_pii(spec: SilverTableSpec, key: bytes | None) -> dict[str, Column | None]:
    """Raw (bronze) columns holding PII: their hashed value, or None to drop them."""
    by_name = {c.name: c for c in spec.columns}
    out: dict[str, Column | None] = {}
    for pii in spec.pii:
        source = by_name[pii.column].source
        if source is None:
            continue
        raw = F.col(RAW).getField(source)
        out[source] = hmac_sha256_hex(raw, key) if pii.action == "hash" and key else None
    return out


def build_silver(
    bronze: DataFrame,
    spec: SilverTableSpec,
    *,
    as_of: datetime,
    run_id: str,
    quarantined_at: datetime,
    pii_key: bytes | None,
    observe: bool = False,
    references: Mapping[str, DataFrame] | None = None,
) -> SilverPlan:
    """Build the silver table, its quarantine and the classified rows from one bronze snapshot.

    Args:
        bronze: the bronze rows (raw string columns, ``_rescued_data`` and lineage).
        spec: the table declaration.
        as_of: the run's as-of time (``not_future`` rules).
        run_id: written to quarantine rows.
        quarantined_at: written to quarantine rows (one value per run keeps reruns comparable).
        pii_key: the HMAC key; needed when a PII column is hashed.
        observe: measure every count (rows, outcomes, each rule, the table checks) with Spark
            observations while ``silver`` and ``quarantine`` are computed, so that writing them
            needs no extra pass over the data; read them with :meth:`SilverPlan.counts` after
            the first action on each.
        references: the tables ``in_reference`` rules name (``<layer>/<table>`` -> rows;
            :attr:`SilverTableSpec.references`).

    Returns:
        A :class:`SilverPlan`.

    Raises:
        BronzeSchemaError: the bronze table lacks a declared column (names missing and present).
        PiiKeyError: a PII column is hashed and ``pii_key`` is missing.
        MissingReferenceError: an ``in_reference`` rule's table is not in ``references``.
    """
    _check_bronze_schema(bronze, spec)
    raw_columns = [c for c in bronze.columns if c not in LINEAGE_COLUMNS]
    rules = _RuleSets.of(spec)
    checked = _parsed_and_checked(bronze, spec, raw_columns, rules, as_of, references or {})

    def with_unique_rules(rows: DataFrame, scope: Column) -> DataFrame:
        return rows.transform(with_rule_failures, rules.unique, as_of=as_of, scope=scope)

    def classify_rows() -> DataFrame:
        # Every bronze row once, with its outcome and whether it passed the row rules: for
        # examination, and for the quarantine when unique rules exist (they judge the
        # deduplicated rows).
        return (
            checked.transform(_with_latest_rank, spec, among=F.col(_OK))
            .transform(with_unique_rules, F.col(_OK) & ~F.col(_DUP))
            .withColumn(
                OUTCOME,
                F.when(F.size(F.col(FAILED_RULES)) > 0, F.lit("quarantined"))
                .when(F.col(_DUP), F.lit("duplicate"))
                .otherwise(F.lit("clean")),
            )
            .drop(_DUP)
        )

    # The counts are measured where Spark holds whole rows anyway: after the dedup window (the
    # rows that passed the row rules), at the end of silver (the table checks) and in the
    # quarantine (the rows rejected by a row rule), each row exactly once (a plan holding an
    # observation twice would count twice). An observation on every row before the shuffle
    # would end Spark's generated code there and copy each wide row (raw values, parsed
    # values, rule arrays) once more.
    observations = SilverObservations.for_table(spec.name) if observe else None
    silver = _silver_rows(checked, spec, rules, observations, with_unique_rules, pii_key)
    rejected = (
        classify_rows().filter(F.col(OUTCOME) == "quarantined")
        if rules.unique
        else checked.filter(~F.col(_OK))
    )
    if observations is not None:
        # With unique rules the quarantine also holds rows that passed the row rules and broke
        # a unique rule; those were counted with the passed rows.
        by_row_rules = ~F.col(_OK)
        rejected = rejected.observe(
            observations.rejected,
            F.coalesce(F.sum(by_row_rules.cast("long")), F.lit(0)).alias("rejected"),
            *rule_failure_aggregates(rules.counted_before_dedup, where=by_row_rules),
        )
    quarantine = _quarantine_rows(rejected, spec, raw_columns, pii_key, run_id, quarantined_at)
    return SilverPlan(
        silver=silver,
        quarantine=quarantine,
        classify=lambda: classify_rows().drop(_OK),
        observations=observations,
        silver_of=lambda rows: _silver_columns(
            rows.filter(F.col(OUTCOME) == "clean"), spec, pii_key
        ),
        quarantine_of=lambda rows: _quarantine_rows(
            rows.filter(F.col(OUTCOME) == "quarantined"),
            spec,
            raw_columns,
            pii_key,
            run_id,
            quarantined_at,
        ),
    )


@dataclass(frozen=True)
class _RuleSets:
    """A table's rules, grouped by where build_silver judges and counts them.

    Attributes:
        row: the row-local expectations (every rule but ``unique``).
        unique: the ``unique`` rules judged after dedup (one on exactly the dedup key holds by
            construction once duplicates are removed - one latest record per key, nulls pass -
            so it needs no second window and its count, taken with the row rules, is zero).
        counted_before_dedup: rules counted on the rows the row rules rejected.
        counted_after_dedup: rules the rows that passed the row rules can still break (warn
            and fail rules, and the unique rules), counted after the shuffle.
    """

    row: list[Expectation]
    unique: list[Expectation]
    counted_before_dedup: list[tuple[str, Severity]]
    counted_after_dedup: list[tuple[str, Severity]]

    @classmethod
    def of(cls, spec: SilverTableSpec) -> _RuleSets:
        unique = [
            e
            for e in spec.expectations
            if e.type == "unique" and not (spec.dedup and spec.dedup_key == [e.column])
        ]
        names = [e.rule for e in unique]
        return cls(
            row=[e for e in spec.expectations if e.type != "unique"],
            unique=unique,
            counted_before_dedup=[r for r in spec.rules if r[0] not in names],
            counted_after_dedup=[r for r in spec.rules if r[0] in names or r[1] != "drop"],
        )


def _parser_rules(spec: SilverTableSpec, text_columns: Sequence[str]) -> Column:
    """The rules the parser itself judges: a rescued line (and bytes that were not valid in
    the source's encoding), a present value that does not parse, a non-finite derived double.

    U+FFFD in any text value is ``invalid_encoding`` too: it stands for bytes some earlier
    decoding could not read (a file re-saved after a lossy conversion, a Parquet value), and
    the value it is part of is not the one that was meant.
    """
    raw = F.col(RAW)
    rescued = raw.getField(RESCUED)
    replaced = F.lit(False)
    for name in text_columns:
        replaced = replaced | F.coalesce(raw.getField(name).contains("\ufffd"), F.lit(False))
    malformed = (
        F.when(
            rescued.contains("\ufffd"),
            F.array(F.lit(MALFORMED_RULE), F.lit(INVALID_ENCODING_RULE)),
        )
        .when(rescued.isNotNull(), F.array(F.lit(MALFORMED_RULE)))
        .when(replaced, F.array(F.lit(INVALID_ENCODING_RULE)))
        .otherwise(F.array().cast("array<string>"))
    )
    not_finite = compact_array(
        [
            (
                F.isnan(quoted(c.name)) | (F.abs(quoted(c.name)) > F.lit(_MAX_DOUBLE)),
                f"finite:{c.name}",
            )
            for c in spec.derived_doubles
        ]
    )
    return F.concat(malformed, F.col(PARSE_ERRORS), not_finite)


def _parsed_and_checked(
    bronze: DataFrame,
    spec: SilverTableSpec,
    raw_columns: Sequence[str],
    rules: _RuleSets,
    as_of: datetime,
    references: Mapping[str, DataFrame],
) -> DataFrame:
    """Every bronze row: raw strings kept in a struct, typed columns, the row rules judged."""
    text_columns = [
        f.name
        for f in bronze.schema.fields
        if f.name in raw_columns and f.name != RESCUED and isinstance(f.dataType, T.StringType)
    ]
    df = bronze.select(
        F.struct(*[quoted(c) for c in raw_columns]).alias(RAW),
        *[quoted(c) for c in LINEAGE_COLUMNS],
    )
    df = df.transform(with_parsed_columns, spec.columns, raw=RAW)
    df = df.transform(with_derived_columns, spec.columns)
    df = df.select(
        *[quoted(c) for c in df.columns if c != PARSE_ERRORS],
        _parser_rules(spec, text_columns).alias(FAILED_RULES),
    )
    # in_reference rules read a flag column joined from their table (dropped with the other
    # helper columns when silver and quarantine select their columns).
    df = df.transform(with_reference_flags, rules.row, references)
    return df.transform(with_rule_failures, rules.row, as_of=as_of).withColumn(
        _OK, F.size(F.col(FAILED_RULES)) == 0
    )


def _silver_rows(
    checked: DataFrame,
    spec: SilverTableSpec,
    rules: _RuleSets,
    observations: SilverObservations | None,
    with_unique_rules: Callable[[DataFrame, Column], DataFrame],
    pii_key: bytes | None,
) -> DataFrame:
    """The latest record of each key among the rows that passed, in the silver schema."""
    # Silver is computed from the rows that passed only (the window sorts no rejected row).
    passed = checked.filter(F.col(_OK))
    if not rules.unique:
        # The rows that passed broke no drop rule and no later rule can reject them: only the
        # arrays of the warn and fail rules counted after the shuffle travel through it.
        carried = (
            {RULE_COLUMNS[severity] for _, severity in rules.counted_after_dedup}
            if observations is not None
            else set()
        )
        passed = passed.drop(*[c for c in RULE_COLUMNS.values() if c not in carried])
    ranked = passed.transform(_with_latest_rank, spec)
    if rules.unique:
        ranked = ranked.transform(with_unique_rules, ~F.col(_DUP))
    if observations is not None:
        ranked = ranked.observe(
            observations.ranked,
            F.count(F.lit(1)).alias("passed"),
            F.coalesce(F.sum((~F.col(_DUP)).cast("long")), F.lit(0)).alias("kept"),
            *rule_failure_aggregates(rules.counted_after_dedup),
        )
    clean = ranked.filter(
        ~F.col(_DUP) & (F.size(F.col(FAILED_RULES)) == 0) if rules.unique else ~F.col(_DUP)
    )
    if observations is not None:
        clean = clean.observe(
            observations.clean, *table_check_aggregates(spec.checks, rows="clean")
        )
    return _silver_columns(clean, spec, pii_key)


def _silver_columns(clean: DataFrame, spec: SilverTableSpec, pii_key: bytes | None) -> DataFrame:
    """Clean rows in the silver schema: declared columns, PII pseudonymised, lineage."""
    return (
        clean.select(*[quoted(c.name) for c in spec.columns], *[quoted(c) for c in LINEAGE_COLUMNS])
        .transform(with_pseudonymised_columns, spec.pii, pii_key)
        .select(*[quoted(c) for c in spec.output_columns])
    )


def _quarantine_rows(
    rejected: DataFrame,
    spec: SilverTableSpec,
    raw_columns: Sequence[str],
    pii_key: bytes | None,
    run_id: str,
    quarantined_at: datetime,
) -> DataFrame:
    """The rejected rows as ingested (raw strings, PII hashed or dropped) with their rules."""
    raw_pii = _raw_pii(spec, pii_key)
    raw_out = []
    for name in raw_columns:
        if name in raw_pii:
            if raw_pii[name] is not None:
                raw_out.append(raw_pii[name].alias(name))  # type: ignore[union-attr]
            continue
        raw_out.append(F.col(RAW).getField(name).alias(name))
    return rejected.select(
        *raw_out,
        *[quoted(c) for c in LINEAGE_COLUMNS],
        F.col(FAILED_RULES),
        F.lit(run_id).alias("_run_id"),
        run_constant(quarantined_at).alias("_quarantined_at"),
    )
