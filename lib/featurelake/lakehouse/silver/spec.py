"""Silver table declarations (``conf/tables/<name>.yaml``): columns, dedup, rules, PII."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from featurelake.core.config import ConfigError, load_yaml_file, parse_model
from featurelake.lakehouse.cleaning import (
    ColumnSpec,
)
from featurelake.lakehouse.pii import (
    PiiColumn,
)
from featurelake.lakehouse.quality import (
    Expectation,
    Severity,
    TableCheck,
    check_constraint,
)

RAW = "_raw"


RESCUED = "_rescued_data"


OUTCOME = "_outcome"


MALFORMED_RULE = "malformed_line"


# A rescued line holding U+FFFD: bytes that were not valid in the source's encoding (bronze
# rescues such lines whole when the source declares no fallback encoding).
INVALID_ENCODING_RULE = "invalid_encoding"


LINEAGE_COLUMNS = ("_batch_id", "_source_file", "_ingested_at")


# Latest record first: the newest ingestion, then the higher batch id and file name.
DEFAULT_LATEST_BY = ("_ingested_at", "_batch_id", "_source_file")


TOTAL_RULE = "_total"


class DedupSpec(BaseModel):
    """How silver deduplicates.

    Args:
        key: the key columns, or ``all_columns`` (every business column: exact duplicates).
        latest_by: columns ordering records of one key, latest first (descending).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: tuple[str, ...] | Literal["all_columns"]
    latest_by: tuple[str, ...] = DEFAULT_LATEST_BY


class SilverTableSpec(BaseModel):
    """A silver table declaration (``conf/tables/<name>.yaml``).

    Args:
        name: the silver table name (quarantine: ``<name>_quarantine``).
        source: the bronze table it is built from.
        description: what the table holds.
        columns: the business columns, in output order (parsed or derived).
        dedup: deduplication; none when absent.
        expectations: row rules.
        checks: table-level checks on the clean rows.
        pii: personal-data columns to hash or drop.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str
    description: str = ""
    columns: tuple[ColumnSpec, ...]
    dedup: DedupSpec | None = None
    expectations: tuple[Expectation, ...] = ()
    checks: tuple[TableCheck, ...] = ()
    pii: tuple[PiiColumn, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> SilverTableSpec:
        names = [c.name for c in self.columns]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"columns declared twice: {repeated}")
        known = set(names) | set(LINEAGE_COLUMNS)
        referenced = (
            [e.column for e in self.expectations if e.column]
            + [c.column for c in self.checks if c.column]
            + [p.column for p in self.pii]
        )
        if self.dedup and self.dedup.key != "all_columns":
            referenced += list(self.dedup.key)
        if self.dedup:
            referenced += list(self.dedup.latest_by)
        unknown = sorted({c for c in referenced if c not in known})
        if unknown:
            raise ValueError(
                f"unknown columns {unknown} (declared: {names} + lineage {list(LINEAGE_COLUMNS)})"
            )
        # Every rule counted, the parser's own (malformed_line, parse:<column>) included: each
        # name is one count in the quality metrics.
        rules = [rule for rule, _ in self.rules]
        twice = sorted({r for r in rules if rules.count(r) > 1})
        if twice:
            raise ValueError(
                f"rule names used twice: {twice} (give the rules distinct names; "
                f"{MALFORMED_RULE}, {INVALID_ENCODING_RULE} and parse:<column> are the "
                "parser's own)"
            )
        return self

    @property
    def quarantine_name(self) -> str:
        """The quarantine table's name."""
        return f"{self.name}_quarantine"

    @property
    def late_name(self) -> str:
        """The late-events table's name (tables fed by a stream)."""
        return f"{self.name}_late"

    @property
    def references(self) -> list[str]:
        """The tables (``<layer>/<table>``) the ``in_reference`` rules read, sorted."""
        return sorted({str(e.reference) for e in self.expectations if e.reference})

    @property
    def source_columns(self) -> list[str]:
        """The bronze columns the declaration parses."""
        return [c.source for c in self.columns if c.source is not None]

    @property
    def derived_doubles(self) -> list[ColumnSpec]:
        """Derived double columns: an expression may overflow to +-Infinity or give NaN."""
        return [c for c in self.columns if c.expr is not None and c.type == "double"]

    @property
    def output_columns(self) -> list[str]:
        """The silver columns in order: business columns, hashed PII, lineage."""
        pii = {p.column for p in self.pii}
        hashed = [p.output_name for p in self.pii if p.action == "hash"]
        return [c.name for c in self.columns if c.name not in pii] + hashed + list(LINEAGE_COLUMNS)

    @property
    def dedup_key(self) -> list[str]:
        """The dedup key columns (every business column for ``all_columns``)."""
        if self.dedup is None:
            return []
        if self.dedup.key == "all_columns":
            return [c.name for c in self.columns]
        return list(self.dedup.key)

    @property
    def rules(self) -> list[tuple[str, Severity]]:
        """Every row rule counted for this table: malformed lines, parse rules, expectations."""
        drop: Severity = "drop"
        parse = [(f"parse:{c.name}", drop) for c in self.columns if c.source and c.type != "string"]
        parse += [(f"finite:{c.name}", drop) for c in self.derived_doubles]
        declared = [(e.rule, e.severity) for e in self.expectations]
        return [(MALFORMED_RULE, drop), (INVALID_ENCODING_RULE, drop), *parse, *declared]


def load_table_specs(directory: Path) -> dict[str, SilverTableSpec]:
    """Load every ``*.yaml`` silver table declaration in ``directory``.

    Returns:
        Declarations by table name, in file name order.

    Raises:
        ConfigError: a file is invalid (the message names the file and key), two files declare
            the same table, or the directory holds no declaration.
    """
    files = sorted(Path(directory).glob("*.yaml"))
    if not files:
        raise ConfigError(str(directory), "", "no silver table declarations (*.yaml) found")
    specs: dict[str, SilverTableSpec] = {}
    for path in files:
        spec = parse_model(SilverTableSpec, load_yaml_file(path), str(path))
        if spec.name in specs:
            raise ConfigError(str(path), "name", f"table {spec.name!r} is declared twice")
        specs[spec.name] = spec
    return specs


def silver_constraints(spec: SilverTableSpec) -> dict[str, str]:
    """The table's rules every silver row satisfies, as Delta CHECK constraints (name -> SQL).

    ``drop`` and ``fail`` rules hold for every published row (a row breaking a drop rule is
    quarantined; a broken fail rule publishes nothing), so the silver table can enforce them
    on any later writer. Rules on personal-data columns (hashed or dropped in silver), and
    rules that are not row-local or deterministic (``unique``, ``not_future``), are left out.
    """
    pii = {p.column.lower() for p in spec.pii}
    output = {c.lower() for c in spec.output_columns}
    wanted = {}
    for expectation in spec.expectations:
        if expectation.severity == "warn":
            continue
        if expectation.column is not None and (
            expectation.column.lower() in pii or expectation.column.lower() not in output
        ):
            continue
        if expectation.expr is not None and any(
            re.search(rf"\b{re.escape(column)}\b", expectation.expr, re.IGNORECASE)
            for column in pii
        ):
            continue
        constraint = check_constraint(expectation)
        if constraint is not None:
            wanted[constraint[0]] = constraint[1]
    return wanted
