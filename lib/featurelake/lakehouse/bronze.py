"""Bronze: raw files into append-only tables, every line kept, with lineage.

Two halves:

* **File inventory** (plain Python over the landing folder): which files match a source's glob,
  which of them were ingested before according to ``bronze/_ingested_files``, and what to do
  with a file that changed under the same name (:func:`plan_ingest`).
* **Reading** (:func:`read_source_rows`): the one reader of raw files, used by the bronze job
  and by batch scoring on raw input, so both parse a file identically.
* **Pure transformations** of the raw text: CSV and JSON files are read one row per line
  (``spark.read.text``) so that no line can be lost, then split into the declared columns with
  Spark's own parsers (``from_csv``/``from_json`` in PERMISSIVE mode). A line that does not fit
  - wrong number of fields, a quote out of place, invalid JSON or more than one JSON value, a
  field the declaration does not know, bytes that are not text in the source's encoding -
  keeps its raw text in ``_rescued_data``; clean rows have ``_rescued_data`` null.

Limits of line-based reading: a quoted CSV field spanning several lines becomes one rescued
row per line (nothing is lost, silver quarantines them); blank lines carry no data and are not
rows; a data line identical to its file's header line is taken for a header.

Example:
    >>> parsed = read_source_rows(spark, spec, "/landing/online_retail/*.csv.gz")
    >>> bronze = parsed.transform(with_lineage, spec=spec, batch_id="b1", ingested_at=now)

    or, step by step:

    >>> lines = spark.read.text(paths).select("value", source_file_from_uri("_metadata.file_path"))
    >>> bronze = lines.transform(parse_csv_lines, spec=spec, header=header, header_line=first)
    >>> bronze = bronze.transform(with_lineage, spec=spec, batch_id="b1", ingested_at=now)
"""

from __future__ import annotations

import bz2
import csv
import glob
import gzip
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import reduce
from typing import Any, Literal

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType, TimestampType

from featurelake.core.errors import DataError
from featurelake.core.session import run_constant
from featurelake.lakehouse.sources import ReaderOptions, SourceSpec

__all__ = [
    "BATCH_ID",
    "ERROR_PREVIEW",
    "INGESTED_AT",
    "INGESTED_FILES_SCHEMA",
    "INGESTED_FILES_TABLE",
    "RESCUED_DATA",
    "SOURCE_FILE",
    "ChangedFileError",
    "IngestPlan",
    "LandedFile",
    "align_parquet_columns",
    "bronze_schema",
    "file_sha256",
    "list_landed_files",
    "parse_csv_header",
    "parse_csv_lines",
    "parse_json_lines",
    "plan_ingest",
    "unreadable_reason",
    "with_decoded_lines",
    "read_first_line",
    "read_source_rows",
    "resolve_source_paths",
    "source_file_from_uri",
    "with_lineage",
]

log = logging.getLogger(__name__)

RESCUED_DATA = "_rescued_data"
SOURCE_FILE = "_source_file"
INGESTED_AT = "_ingested_at"
BATCH_ID = "_batch_id"
_ALL = 2**31 - 1  # a substring length meaning "the rest of the string"
INGESTED_FILES_TABLE = "_ingested_files"
# The longest reason kept in the ledger's ``error`` column.
ERROR_PREVIEW = 300
_CORRUPT = "_corrupt_record"
# Set by with_decoded_lines on a line that was not valid UTF-8 nor in the fallback encoding.
INVALID_ENCODING = "_invalid_encoding"
_HASH_CHUNK = 1 << 20
# Per fallback encoding, a Java regex class of the bytes it does not define, as ISO-8859-1
# reads them (the byte's value as a code point); empty when every byte is defined.
_UNDEFINED_BYTES = {"iso-8859-1": "", "windows-1252": r"[\x81\x8d\x8f\x90\x9d]"}

FileStatus = Literal["ingested", "reingested", "skipped", "failed"]

INGESTED_FILES_SCHEMA = StructType([
    StructField("source", StringType()),
    StructField("path", StringType()),
    StructField("size", LongType()),
    StructField("modified_at", TimestampType()),
    StructField("sha256", StringType()),
    StructField("batch_id", StringType()),
    StructField("rows", LongType()),
    StructField("status", StringType()),
    StructField("ingested_at", TimestampType()),
    StructField("error", StringType()),
])


class ChangedFileError(DataError):
    """A file already ingested changed under the same name and the source says ``fail``."""


# --------------------------------------------------------------------------------------------
# File inventory
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LandedFile:
    """A file in the landing folder.

    Attributes:
        path: absolute local path.
        size: size in bytes.
        modified_at: modification time (UTC).
        sha256: hex checksum of the content, when computed.
    """

    path: str
    size: int
    modified_at: datetime
    sha256: str | None = None


@dataclass(frozen=True)
class IngestPlan:
    """What one bronze run does with the files of one source.

    Attributes:
        source: the source name.
        new: files never seen before (ingest).
        changed: files that changed under the same name and will be ingested again.
        skipped: changed files left alone (``on_changed_file: skip``).
        unchanged: files already ingested with the same content.
    """

    source: str
    new: tuple[LandedFile, ...] = ()
    changed: tuple[LandedFile, ...] = ()
    skipped: tuple[LandedFile, ...] = ()
    unchanged: tuple[LandedFile, ...] = ()
    statuses: Mapping[str, FileStatus] = field(default_factory=dict)

    @property
    def to_ingest(self) -> tuple[LandedFile, ...]:
        """New and changed files, in path order."""
        return tuple(sorted(self.new + self.changed, key=lambda f: f.path))


def list_landed_files(spec: SourceSpec, landing: str) -> list[LandedFile]:
    """Files matching the source's glob, sorted by path (no checksums yet).

    Args:
        spec: the source declaration.
        landing: ``lakehouse.landing``, against which relative globs are resolved.

    Returns:
        The matching regular files. Names starting with ``.`` or ``_`` (temporary or marker
        files of writers still at work) are ignored.
    """
    pattern = spec.resolve_glob(landing)
    found = []
    for path in sorted(glob.glob(pattern)):
        name = os.path.basename(path)
        if not os.path.isfile(path) or name.startswith((".", "_")):
            continue
        stat = os.stat(path)
        found.append(LandedFile(
            path=os.path.abspath(path),
            size=stat.st_size,
            modified_at=datetime.fromtimestamp(stat.st_mtime, timezone.utc),
        ))
    return found


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plan_ingest(
    spec: SourceSpec,
    files: Iterable[LandedFile],
    ledger: Iterable[Mapping[str, Any]],
    hasher: Callable[[str], str] = file_sha256,
) -> IngestPlan:
    """Decide which landed files to ingest, comparing them with the ingest ledger.

    A file whose path is not in the ledger (or only as ``failed``) is new. A file whose size
    and modification time
    equal its latest ledger entry is unchanged without reading it; otherwise its checksum
    decides, and a different checksum means it changed under the same name and is handled as
    ``spec.on_changed_file`` says.

    Args:
        spec: the source declaration.
        files: the files found (:func:`list_landed_files`).
        ledger: rows of ``bronze/_ingested_files`` for this source (path, size, modified_at,
            sha256, ingested_at).
        hasher: computes a file's checksum.

    Returns:
        The plan; every file returned carries its checksum when it was computed.

    Raises:
        ChangedFileError: a file changed and the source's policy is ``fail``; names the file.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for row in ledger:
        if row.get("status") == "failed":  # never ingested: the file is still new
            continue
        known = latest.get(row["path"])
        if known is None or _ledger_order(row) > _ledger_order(known):
            latest[row["path"]] = row
    new, changed, skipped, unchanged = [], [], [], []
    statuses: dict[str, FileStatus] = {}
    for landed in files:
        known = latest.get(landed.path)
        if known is None:
            new.append(_with_checksum(landed, hasher))
            statuses[landed.path] = "ingested"
            continue
        if known["size"] == landed.size and _same_time(known["modified_at"], landed.modified_at):
            unchanged.append(landed)
            continue
        hashed = _with_checksum(landed, hasher)
        if hashed.sha256 == known["sha256"]:
            unchanged.append(hashed)
            continue
        policy = spec.on_changed_file
        log.warning("changed_file", extra={"fields": {
            "source": spec.name, "path": landed.path, "policy": policy,
            "old_sha256": known["sha256"], "new_sha256": hashed.sha256}})
        if policy == "fail":
            raise ChangedFileError(
                f"source {spec.name}: file {landed.path} changed since it was ingested in batch "
                f"{known.get('batch_id')} (sha256 {known['sha256']} -> {hashed.sha256}); "
                "on_changed_file is 'fail'. Land the new content under a new name, or set "
                f"on_changed_file to 'reingest' or 'skip' in conf/sources/{spec.name}.yaml"
            )
        if policy == "reingest":
            changed.append(hashed)
            statuses[landed.path] = "reingested"
        else:
            skipped.append(hashed)
            statuses[landed.path] = "skipped"
    return IngestPlan(spec.name, tuple(new), tuple(changed), tuple(skipped), tuple(unchanged),
                      statuses)


def _ledger_order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    ingested = row.get("ingested_at")
    return (_as_utc(ingested) if ingested else datetime.min.replace(tzinfo=timezone.utc),)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _same_time(a: datetime | None, b: datetime) -> bool:
    # The ledger stores microseconds; compare at that precision.
    return a is not None and abs((_as_utc(a) - _as_utc(b)).total_seconds()) < 1e-6


def _with_checksum(landed: LandedFile, hasher: Callable[[str], str]) -> LandedFile:
    return LandedFile(landed.path, landed.size, landed.modified_at, hasher(landed.path))


# Compressed formats Python reads itself; Spark picks the codec by the same extensions.
_DECOMPRESSORS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open}


def unreadable_reason(path: str, file_format: str = "csv") -> str | None:
    """Why Spark could not read ``path`` to its end, or None when it can.

    Spark reads a batch's files in one job: one truncated archive would fail the whole batch
    with a stack trace that names no file. A gzip or bzip2 file is decompressed here to its
    end (a truncated archive, or a ``.gz`` that is not gzip, is found); a Parquet file must
    have a readable footer; any file must open.

    Args:
        path: a local file.
        file_format: the source's format (``parquet`` files are checked by their footer).

    Returns:
        A one-line reason naming the problem (not the path; the caller names it), or None.
    """
    suffix = os.path.splitext(path)[1].lower()
    try:
        if file_format == "parquet":
            import pyarrow.parquet as pq

            pq.ParquetFile(path)
            return None
        opener = _DECOMPRESSORS.get(suffix)
        if opener is None:
            with open(path, "rb") as handle:
                handle.read(1)
            return None
        with opener(path, "rb") as handle:
            while handle.read(_HASH_CHUNK * 4):
                pass
    except EOFError as exc:
        return f"truncated {suffix[1:]} archive ({exc})"
    except gzip.BadGzipFile as exc:
        return f"not a gzip file ({exc})"
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if suffix in _DECOMPRESSORS:
            return f"not a readable {suffix[1:]} archive ({reason})"
        return reason
    except Exception as exc:  # noqa: BLE001 - zlib/bz2/pyarrow errors: the file is unreadable
        return f"{type(exc).__name__}: {exc}"
    return None


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
        reader = csv.reader([line], delimiter=options.delimiter, quotechar=options.quote,
                            doublequote=True)
    else:
        reader = csv.reader([line], delimiter=options.delimiter, quotechar=options.quote,
                            escapechar=options.escape, doublequote=False)
    return tuple(next(reader, []))


# --------------------------------------------------------------------------------------------
# Reading raw files (the one reader: bronze job and scoring on raw input)
# --------------------------------------------------------------------------------------------


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
        raise DataError(f"no raw files match {path_or_glob!r} (looked for {pattern}; names "
                        "starting with '.' or '_' are ignored)")
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
    """
    paths = resolve_source_paths(path_or_glob)
    if spec.format == "parquet":
        df = spark.read.parquet(*paths).withColumn(
            SOURCE_FILE, source_file_from_uri("_metadata.file_path"))
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
        parts.append(_read_lines(spark, spec, group).transform(
            parse_csv_lines, spec=spec, header=header, header_line=header_line))
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
            if undefined else F.lit(False)
        )
        # Each branch is evaluated only on the rows that reach it.
        return lines.withColumns({
            "value": F.when(~invalid, value)
            .when(undecodable, F.make_valid_utf8(value))
            .otherwise(F.decode(value.cast("binary"), fallback)),
            INVALID_ENCODING: invalid & undecodable,
        })
    return lines.withColumns({
        "value": F.when(invalid, F.make_valid_utf8(value)).otherwise(value),
        INVALID_ENCODING: invalid,
    })


def _log_header_differences(spec: SourceSpec, header: Sequence[str], paths: Sequence[str]) -> None:
    extra = [c for c in header if c not in spec.column_names]
    missing = [c for c in spec.column_names if c not in header]
    if extra or missing:
        log.warning("header_mismatch", extra={"fields": {
            "source": spec.name, "files": list(paths), "undeclared_columns": extra,
            "missing_columns": missing,
            "effect": "rows keep their raw line in _rescued_data" if extra else
            "missing columns are null"}})


# --------------------------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------------------------


def bronze_schema(spec: SourceSpec) -> StructType:
    """The bronze table's schema: declared columns as strings, then rescue and lineage."""
    return StructType(
        [StructField(c, StringType()) for c in spec.column_names]
        + [StructField(RESCUED_DATA, StringType()), StructField(SOURCE_FILE, StringType()),
           StructField(INGESTED_AT, TimestampType()), StructField(BATCH_ID, StringType())]
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
    parsed = F.from_csv(F.col("value"), parse_schema.simpleString(), {
        "mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT,
        "sep": opts.delimiter, "quote": opts.quote, "escape": opts.escape,
    })
    positions: dict[str, int] = {}
    for index, name in enumerate(names):
        positions.setdefault(name, index)
    has_extra_columns = any(name not in spec.column_names for name in names)
    fields = [
        (parsed[f"_c{positions[c]}"] if c in positions else F.lit(None).cast(StringType())).alias(c)
        for c in spec.column_names
    ]
    rescued = F.col("value") if has_extra_columns else F.when(
        parsed[_CORRUPT].isNotNull() | _invalid_encoding(lines) | _malformed_csv(opts),
        F.col("value"))
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
    sep, quote, escape = (_regex_char(c) for c in (options.delimiter, options.quote,
                                                    options.escape))
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
    schema = StructType([StructField(c, StringType()) for c in spec.column_names]
                        + [StructField(_CORRUPT, StringType())])
    parsed = F.from_json(F.col("value"), schema,
                         {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": _CORRUPT,
                          "allowSingleQuotes": "false"})
    declared = F.array(*[F.lit(c) for c in spec.column_names])
    unknown_key = F.exists(F.json_object_keys(F.col("value")),
                           lambda key: ~F.array_contains(declared, key))
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
        (F.col(f"`{c}`").cast(StringType()) if c in present else F.lit(None).cast(StringType()))
        .alias(c) for c in spec.column_names
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
    extended = df.withColumns({
        INGESTED_AT: run_constant(ingested_at),
        BATCH_ID: F.lit(batch_id),
    })
    return extended.select(*[F.col(f"`{f.name}`").cast(f.dataType).alias(f.name)
                             for f in bronze_schema(spec).fields])
