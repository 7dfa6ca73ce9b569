"""Schema rules shared by both backends: what a write may change about a table's columns."""

from __future__ import annotations

from pyspark.sql.types import StructField, StructType

from featurelake.delta.errors import SchemaMismatchError

__all__ = ["nullable", "resolve_schema", "schema_diff"]


def schema_diff(table: StructType, incoming: StructType) -> tuple[list[str], list[str], list[str]]:
    """Columns (missing from incoming, extra in incoming, with a different type)."""
    table_types = {f.name: f.dataType for f in table.fields}
    incoming_types = {f.name: f.dataType for f in incoming.fields}
    missing = [n for n in table_types if n not in incoming_types]
    extra = [n for n in incoming_types if n not in table_types]
    changed = [
        f"{n} (table {table_types[n].simpleString()}, write {incoming_types[n].simpleString()})"
        for n in incoming_types
        if n in table_types and table_types[n] != incoming_types[n]
    ]
    return missing, extra, changed


def resolve_schema(
    incoming: StructType,
    table_schema: StructType | None,
    schema_evolution: bool,
    overwrite_schema: bool,
    path: str,
) -> tuple[StructType, bool]:
    """The schema a write gets, and whether its columns must be put in that schema's order.

    Raises:
        SchemaMismatchError: columns missing, extra (without ``schema_evolution``) or retyped.
    """
    if table_schema is None or overwrite_schema:
        return incoming, False
    missing, extra, changed = schema_diff(table_schema, incoming)
    if changed or (extra and not schema_evolution) or missing:
        parts = []
        if changed:
            parts.append(f"type changed: {', '.join(changed)}")
        if extra and not schema_evolution:
            parts.append(
                f"columns not in the table: {', '.join(extra)} "
                "(pass schema_evolution=True to add them)"
            )
        if missing:
            parts.append(f"columns missing from the write: {', '.join(missing)}")
        raise SchemaMismatchError(
            f"cannot write to {path}: "
            + "; ".join(parts)
            + f". Table columns: {', '.join(table_schema.fieldNames())}; "
            f"write columns: {', '.join(incoming.fieldNames())}"
        )
    evolved = StructType(
        list(table_schema.fields) + [f for f in incoming.fields if f.name in extra]
    )
    return evolved, True


def nullable(schema: StructType) -> StructType:
    """Delta columns are written nullable: a NOT NULL Spark column would block later appends."""
    return StructType([StructField(f.name, f.dataType, True, f.metadata) for f in schema.fields])
