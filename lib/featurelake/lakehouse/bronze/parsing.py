"""Reading raw files into bronze rows: the one reader (bronze and scoring on raw input) and
the pure transformations of raw text (CSV and JSON lines, Parquet columns, lineage).
"""

from __future__ import annotations

import bz2
import csv
import glob
import gzip
import logging
import os
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import reduce
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from featurelake.core.errors import DataError, UserError
from featurelake.core.session import run_constant
from featurelake.lakehouse.bronze.schema import (
    BATCH_ID,
    INGESTED_AT,
    INVALID_ENCODING,
    RESCUED_DATA,
    SOURCE_FILE,
)
from featurelake.lakehouse.sources import ReaderOptions, SourceSpec

log = logging.getLogger(__name__)


_ALL = 2**31 - 1  # a substring length meaning "the rest of the string"


_CORRUPT = "_corrupt_record"


# Per fallback encoding, a Java regex class of the bytes it does not define, as ISO-8859-1
# reads them (the byte's value as a code point); empty when every byte is defined.
_UNDEFINED_BYTES = {"iso-8859-1": "", "windows-1252": r"[\x81\x8d\x8f\x90\x9d]"}


def read_first_line(path: str) -> str:
    """The first line of a (possibly gzip- or bzip2-compressed) UTF-8 text file.

    The line ending is removed; a byte-order mark is kept (callers compare raw lines).
    """
    opener: Callable[..., Any]
    if path.endswith(".gz"):
        opener = gzip.open
    elif path.endswith(".bz2"):
        opener = bz2.open
    else:
        opener = open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
        line = handle.readline()
    return line.rstrip("\r\n")


def parse_csv_header(line: str, options: ReaderOptions) -> tuple[str, ...]:
    """Column names from a CSV header line (quotes removed, byte-order mark dropped)."""
    line = line.lstrip("\ufeff")
    if options.escape == options.quote:
        reader = csv.reader(
            [line], delimiter=options.delimiter, quotechar=options.quote, doublequote=True
        )
    else:
        reader = csv.reader(
            [line],
            delimiter=options.delimiter,
            quotechar=options.quote,
            escapechar=options.escape,
            doublequote=False,
        )
    return tuple(next(reader, []))


def _visible(path: str) -> bool:
    return os.path.isfile(path) and not os.path.basename(path).startswith((".", "_"))


def resolve_source_paths(path_or_glob: str | Sequence[str]) -> list[str]:
    """The local files to read: a glob's matches, a folder's files, a file, or a list of files.

    Glob matches and folder contents skip names starting with ``.`` or ``_`` (temporary or
    marker files, as :func:`list_landed_files` does); a file named explicitly is always read.

    Args:
        path_or_glob: a file, a folder, a glob (``~`` expanded, relative to the working
            directory), or a sequence of file paths taken as they are.

    Returns:
        Absolute paths, sorted (a sequence keeps its order).

    Raises:
        DataError: nothing to read; the message names what was looked for.
    """
    if not isinstance(path_or_glob, str):
        paths = [os.path.abspath(p) for p in path_or_glob]
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing or not paths:
            raise DataError(f"raw files to read do not exist: {missing or 'none given'}")
        return paths
    pattern = os.path.abspath(os.path.expanduser(path_or_glob))
    if glob.has_magic(pattern):
        paths = [p for p in glob.glob(pattern) if _visible(p)]
    elif os.path.isdir(pattern):
        paths = [p for p in (os.path.join(pattern, n) for n in os.listdir(pattern)) if _visible(p)]
    else:
        paths = [pattern] if os.path.isfile(pattern) else []
    if not paths:
        raise DataError(
            f"no raw files match {path_or_glob!r} (looked for {pattern}; names "
            "starting with '.' or '_' are ignored)"
        )
    return sorted(paths)


def read_source_rows(
    spark: SparkSession, spec: SourceSpec, path_or_glob: str | Sequence[str]
) -> DataFrame:
    """Read raw files of a source into parsed rows, exactly as bronze parses them.

    CSV and JSON files are read line by line and split with :func:`parse_csv_lines` /
    :func:`parse_json_lines` (CSV files are grouped by their header line, each group parsed
    by its own header); Parquet files go through :func:`align_parquet_columns`. No ingest
    lineage is added: the caller adds :func:`with_lineage`.

    Args:
        spark: the session.
        spec: the source declaration (format, reader options, columns).
        path_or_glob: what to read (see :func:`resolve_source_paths`); local files only, as
            CSV headers are read on the driver.

    Returns:
        The declared columns (strings), ``_rescued_data`` and ``_source_file`` (local path).

    Raises:
        DataError: no file matches ``path_or_glob``.
        UserError: the source is not read from files (``jdbc``, ``http_json``).
    """
    if not spec.is_file_source:
        raise UserError(
            f"source {spec.name} is a {spec.format} source: raw files cannot be read as it"
        )
    paths = resolve_source_paths(path_or_glob)
    if spec.format == "parquet":
        df = spark.read.parquet(*paths).withColumn(
            SOURCE_FILE, source_file_from_uri("_metadata.file_path")
        )
        return df.transform(align_parquet_columns, spec=spec)
    if spec.format == "json":
        return _read_lines(spark, spec, paths).transform(parse_json_lines, spec=spec)
    # CSV: files with the same header line are parsed together, each group by its header.
    groups: dict[str | None, list[str]] = {}
    for path in paths:
        groups.setdefault(read_first_line(path) if spec.options.header else None, []).append(path)
    parts = []
    for header_line, group in groups.items():
        header = parse_csv_header(header_line, spec.options) if header_line is not None else None
        if header is not None:
            _log_header_differences(spec, header, group)
        parts.append(
            _read_lines(spark, spec, group).transform(
                parse_csv_lines, spec=spec, header=header, header_line=header_line
            )
        )
    return reduce(DataFrame.unionByName, parts)


def _read_lines(spark: SparkSession, spec: SourceSpec, paths: Sequence[str]) -> DataFrame:
    lines = spark.read.text(list(paths)).select(
        "value", source_file_from_uri("_metadata.file_path")
    )
    return lines.transform(with_decoded_lines, fallback=spec.options.fallback_encoding)


def with_decoded_lines(lines: DataFrame, *, fallback: str | None) -> DataFrame:
    """Make every line valid text, never silently: decode by the fallback or mark it.

    Spark's text reader keeps a line's bytes as they are; one that is not valid UTF-8 would
    turn its bad bytes into U+FFFD wherever it is read, making a new value that looks clean
    (``Espa\ufffda`` as a country). Such a line is decoded with ``fallback`` when the source
    declares one; otherwise - or when it holds a byte the fallback does not define either
    (0x81, 0x8D, 0x8F, 0x90 or 0x9D in Windows-1252) - its bad bytes become U+FFFD and the
    line is flagged in ``_invalid_encoding``, so that the parsers rescue it whole and silver
    quarantines it.

    Args:
        lines: ``value`` (a raw line) and ``_source_file``.
        fallback: a Java charset name (``iso-8859-1``, ``windows-1252``) or None.

    Returns:
        ``lines`` with ``value`` valid UTF-8 and a boolean ``_invalid_encoding``.
    """
    value = F.col("value")
    invalid = ~F.is_valid_utf8(value)
    if fallback is not None:
        # A byte the fallback leaves undefined (0x81 in Windows-1252) would fail the whole
        # job in decode(): such a line is not valid in either encoding, so it is marked.
        # Read byte for byte as ISO-8859-1 (which never fails), those bytes are U+0080-U+009F.
        undefined = _UNDEFINED_BYTES[fallback.lower()]
        undecodable = (
            F.decode(value.cast("binary"), "iso-8859-1").rlike(undefined)
            if undefined
            else F.lit(False)
        )
        # Each branch is evaluated only on the rows that reach it.
        return lines.withColumns(
            {
                "value": F.when(~invalid, value)
                .when(undecodable, F.make_valid_utf8(value))
                .otherwise(F.decode(value.cast("binary"), fallback)),
                INVALID_ENCODING: invalid & undecodable,
            }
        )
    return lines.withColumns(
        {
            "value": F.when(invalid, F.make_valid_utf8(value)).otherwise(value),
            INVALID_ENCODING: invalid,
        }
    )


def _log_header_differences(spec: SourceSpec, header: Sequence[str], paths: Sequence[str]) -> None:
    extra = [c for c in header if c not in spec.column_names]
    missing = [c for c in spec.column_names if c not in header]
    if extra or missing:
        log.warning(
            "header_mismatch",
            extra={
                "fields": {
                    "source": spec.name,
                    "files": list(paths),
                    "undeclared_columns": extra,
                    "missing_columns": missing,
                    "effect": "rows keep their raw line in _rescued_data"
                    if extra
                    else "missing columns are null",
                }
            },
        )


def bronze_schema(spec: SourceSpec) -> StructType:
    """The bronze table's schema: declared columns as strings, then rescue and lineage."""
    return StructType(
        [StructField(c, StringType()) for c in spec.column_names]
        + [
            StructField(RESCUED_DATA, StringType()),
            StructField(SOURCE_FILE, StringType()),
            StructField(INGESTED_AT, TimestampType()),
            StructField(BATCH_ID, StringType()),
        ]
    )


def source_file_from_uri(uri: Column | str) -> Column:
    """A local path from Spark's file URI (``_metadata.file_path``): ``file:/a%20b`` -> ``/a b``.

    Args:
        uri: the column holding the URI.

    Returns:
        A column named ``_source_file``; non-``file:`` URIs keep their scheme.
    """
    col = F.col(uri) if isinstance(uri, str) else uri
    # Evaluated on every line, so plain prefix tests instead of a regex: "file:///p" and
    # "file:/p" become "/p" ("file://host/p" keeps "//host/p"); other schemes are kept.
    local = (
        F.when(col.startswith("file:///"), F.substring(col, 8, _ALL))
        .when(col.startswith("file:/"), F.substring(col, 6, _ALL))
        .otherwise(col)
    )
    # url_decode turns '+' into a space; a literal '+' in a file name must survive. Without a
    # '%' there is nothing to decode.
    decoded = F.when(
        local.contains("%"), F.url_decode(F.regexp_replace(local, r"\+", "%2B"))
    ).otherwise(local)
    return decoded.alias(SOURCE_FILE)


def _data_lines(lines: DataFrame, header_line: str | None) -> DataFrame:
    """Drop blank lines and the header line (compared without a byte-order mark)."""
    value = F.col("value")
    text = F.when(value.startswith("\ufeff"), F.substring(value, 2, _ALL)).otherwise(value)
    keep = F.length(text) > 0
    if header_line is not None:
        keep = keep & (text != F.lit(header_line.lstrip("\ufeff")))
    return lines.where(keep)


def parse_csv_lines(
    lines: DataFrame,
    *,
    spec: SourceSpec,
    header: Sequence[str] | None,
    header_line: str | None,
) -> DataFrame:
    """Split raw CSV lines into the declared columns, keeping malformed lines.

    Fields are matched to declared columns by the file's header names (by position when the
    source has no header). A line with a different number of fields than the header, a quote
    out of place (a quoted field never closed, text after a closing quote) or a NUL character
    keeps the fields that could be read and its raw text in ``_rescued_data``. When the header
    has columns the source does not declare, every line of the file keeps its raw text in
    ``_rescued_data`` (the extra values are in it). Declared columns absent from the header
    are null.

    Args:
        lines: one row per line: ``value`` (the raw line) and ``_source_file``; all lines from
            files sharing ``header_line``; an optional ``_invalid_encoding`` flag
            (:func:`with_decoded_lines`) rescues the line.
        spec: the source declaration (columns and reader options).
        header: the file's column names; None for files without a header.
        header_line: the raw header line to drop; None when files have no header.

    Returns:
        The declared columns (strings), ``_rescued_data`` and ``_source_file``.
    """
    names = tuple(header) if header is not None else spec.column_names
    parse_schema = StructType(
        [StructField(f"_c{i}", StringType()) for i in range(len(names))]
        + [StructField(_CORRUPT, StringType())]
    )
    opts = spec.options
    parsed = F.from_csv(
        F.col("value"),
        parse_schema.simpleString(),
        {
            "mode": "PERMISSIVE",
            "columnNameOfCorruptRecord": _CORRUPT,
            "sep": opts.delimiter,
            "quote": opts.quote,
            "escape": opts.escape,
        },
    )
    positions: dict[str, int] = {}
    for index, name in enumerate(names):
        positions.setdefault(name, index)
    has_extra_columns = any(name not in spec.column_names for name in names)
    fields = [
        (parsed[f"_c{positions[c]}"] if c in positions else F.lit(None).cast(StringType())).alias(c)
        for c in spec.column_names
    ]
    rescued = (
        F.col("value")
        if has_extra_columns
        else F.when(
            parsed[_CORRUPT].isNotNull() | _invalid_encoding(lines) | _malformed_csv(opts),
            F.col("value"),
        )
    )
    return _data_lines(lines, header_line).select(
        *fields, rescued.cast(StringType()).alias(RESCUED_DATA), F.col(SOURCE_FILE)
    )


def _regex_char(char: str) -> str:
    """``char`` as a Java regex escape, literal inside and outside a character class."""
    return f"\\x{{{ord(char):x}}}"


def _csv_line_pattern(options: ReaderOptions) -> str:
    """A Java regex matching a line whose fields are all well quoted (RFC 4180).

    A field is empty, unquoted (not starting with the quote; a quote later in it is a plain
    character, as Python's csv and Spark both read it), or quoted from its first to its last
    character, a quote inside written twice (or after the escape character). The quantifiers
    are possessive: the match never backtracks, so a line of any length cannot overflow the
    regex engine's stack.
    """
    sep, quote, escape = (
        _regex_char(c) for c in (options.delimiter, options.quote, options.escape)
    )
    inside = f"[^{quote}]++|{quote}{quote}"
    if options.escape != options.quote:
        inside = f"[^{quote}{escape}]++|{escape}.|{quote}{quote}"
    field = f"(?:{quote}(?:{inside})*+{quote}|[^{sep}{quote}][^{sep}]*+)?+"
    return f"(?s)^{field}(?:{sep}{field})*+\\z"


def _malformed_csv(options: ReaderOptions) -> Column:
    """True on a line Spark's CSV parser would read without complaint but not as written.

    Spark (univocity) reads an unterminated quoted field to the end of the line and keeps
    text after a closing quote, so such a line with the right number of fields looked clean;
    it also takes NUL for an escape character and drops it. Only lines holding the quote
    character are matched against the pattern (a line without one is always well quoted).
    """
    value = F.col("value")
    quoted = value.contains(options.quote) & ~value.rlike(_csv_line_pattern(options))
    return value.contains("\x00") | quoted


def _invalid_encoding(lines: DataFrame) -> Column:
    """True on lines :func:`with_decoded_lines` flagged (false when it did not run)."""
    if INVALID_ENCODING in lines.columns:
        return F.col(INVALID_ENCODING)
    return F.lit(False)


def parse_json_lines(lines: DataFrame, *, spec: SourceSpec) -> DataFrame:
    """Parse JSON-lines text into the declared columns (as strings), keeping bad lines.

    A line that is not one JSON object (single quotes, text after the object, a second
    object), has keys the source does not declare, or spells half of a UTF-16 surrogate pair
    (``"\\ud800"``, which no UTF-8 text can hold) keeps its raw text in ``_rescued_data``;
    the declared keys it does have are still extracted.

    Args:
        lines: one row per line: ``value`` and ``_source_file`` (and optionally
            ``_invalid_encoding``, as :func:`parse_csv_lines`).
        spec: the source declaration.

    Returns:
        The declared columns (strings), ``_rescued_data`` and ``_source_file``.
    """
    schema = StructType(
        [StructField(c, StringType()) for c in spec.column_names]
        + [StructField(_CORRUPT, StringType())]
    )
    parsed = F.from_json(
        F.col("value"),
        schema,
        {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT, "allowSingleQuotes": "false"},
    )
    declared = F.array(*[F.lit(c) for c in spec.column_names])
    unknown_key = F.exists(
        F.json_object_keys(F.col("value")), lambda key: ~F.array_contains(declared, key)
    )
    bad = (
        parsed[_CORRUPT].isNotNull()
        | F.coalesce(unknown_key, F.lit(True))
        | _invalid_encoding(lines)
        | _json_lone_surrogate()
        | _json_text_after_record()
    )
    return _data_lines(lines, None).select(
        *[parsed[c].alias(c) for c in spec.column_names],
        F.when(bad, F.col("value")).alias(RESCUED_DATA),
        F.col(SOURCE_FILE),
    )


# A \u escape: its backslash is not itself escaped (an even run of backslashes before it).
_JSON_ESCAPE_U = r"(?<!\\)(?:\\\\)*+\\u"


_HIGH_SURROGATE = r"[dD][89abAB][0-9a-fA-F]{2}"


_LOW_SURROGATE = r"[dD][c-fC-F][0-9a-fA-F]{2}"


# A high surrogate escape not followed by a low one, or a low one not preceded by a high one.
_LONE_SURROGATE = (
    f"{_JSON_ESCAPE_U}{_HIGH_SURROGATE}(?!\\\\u{_LOW_SURROGATE})"
    f"|(?<!\\\\u{_HIGH_SURROGATE}){_JSON_ESCAPE_U}{_LOW_SURROGATE}"
)


_JSON_STRING = r'(?s)"(?:[^"\\]++|\\.)*+"'


_INNERMOST_JSON = r"\{[^{}\[\]]*+\}|\[[^{}\[\]]*+\]"


# Objects nested deeper than this are left to Spark's parser when looking for trailing text.
_JSON_NESTING_CHECKED = 4


def _json_lone_surrogate() -> Column:
    """True on a line spelling half of a surrogate pair (Spark would read it as ``?``)."""
    value = F.col("value")
    return value.contains("\\u") & value.rlike(_LONE_SURROGATE)


def _json_text_after_record() -> Column:
    """True on a line holding more than its first JSON value (Spark reads the first only).

    ``{"a": "1"}{"a": "2"}`` - two records without a line end between them - would lose the
    second silently. With every string emptied, the innermost objects and arrays are replaced
    by ``@`` level by level; a line whose first value reduced to ``@`` and is followed by
    anything but whitespace holds more than one value.
    """
    skeleton = F.regexp_replace(F.col("value"), _JSON_STRING, '""')
    for _ in range(_JSON_NESTING_CHECKED):
        skeleton = F.regexp_replace(skeleton, _INNERMOST_JSON, "@")
    return skeleton.rlike(r"^[ \t\r\n]*+@[ \t\r\n]*+[^ \t\r\n]")


def align_parquet_columns(df: DataFrame, *, spec: SourceSpec) -> DataFrame:
    """Cast a Parquet source's declared columns to strings; rescue undeclared columns as JSON.

    Args:
        df: the files' rows plus ``_source_file``.
        spec: the source declaration.

    Returns:
        The declared columns (strings; null when absent), ``_rescued_data`` (a JSON object of
        the non-null undeclared columns, null when there are none) and ``_source_file``.
    """
    present = set(df.columns)
    extra = [c for c in df.columns if c not in spec.column_names and c != SOURCE_FILE]
    fields = [
        (
            F.col(f"`{c}`").cast(StringType()) if c in present else F.lit(None).cast(StringType())
        ).alias(c)
        for c in spec.column_names
    ]
    if extra:
        blob = F.to_json(F.struct(*[F.col(f"`{c}`") for c in extra]))
        rescued = F.when(blob != F.lit("{}"), blob)
    else:
        rescued = F.lit(None).cast(StringType())
    return df.select(*fields, rescued.alias(RESCUED_DATA), F.col(SOURCE_FILE))


def with_lineage(
    df: DataFrame, *, spec: SourceSpec, batch_id: str, ingested_at: datetime
) -> DataFrame:
    """Add ``_ingested_at`` and ``_batch_id`` and order the columns as the bronze contract says.

    Args:
        df: parsed rows with the declared columns, ``_rescued_data`` and ``_source_file``.
        spec: the source declaration.
        batch_id: this run's batch id for the source.
        ingested_at: the run's ingest time (one value for the whole batch).

    Returns:
        A DataFrame with exactly :func:`bronze_schema`'s columns and types.
    """
    extended = df.withColumns(
        {
            INGESTED_AT: run_constant(ingested_at),
            BATCH_ID: F.lit(batch_id),
        }
    )
    return extended.select(
        *[F.col(f"`{f.name}`").cast(f.dataType).alias(f.name) for f in bronze_schema(spec).fields]
    )
