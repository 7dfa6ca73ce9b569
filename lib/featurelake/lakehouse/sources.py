"""Source declarations: where raw data comes from, how to read it, what columns it should have.

Each ``conf/sources/<name>.yaml`` declares one source; ``<name>`` is also the bronze table's
name. Bronze keeps every column as a string; the declared ``type`` documents what silver parses
it to. ``format`` says what kind of source it is: files landed under a glob (``csv``, ``json``,
``parquet``), a database table (``jdbc``, with a ``jdbc:`` section) or a paginated JSON API
(``http_json``, with an ``http_json:`` section); the sections are described in
:mod:`featurelake.lakehouse.connectors`.

Example (``conf/sources/credit_clients.yaml``)::

    description: UCI default of credit card clients
    path: credit_clients/*.csv*        # relative to lakehouse.landing; absolute paths allowed
    format: csv
    options: {header: true, delimiter: ",", quote: '"', escape: '"', encoding: utf-8}
    on_changed_file: reingest          # reingest | skip | fail
    columns:
      - {name: ID, type: long, description: client id}

    >>> sources = load_sources(settings)
    >>> sources["credit_clients"].column_names[:2]
    ('ID', 'LIMIT_BAL')
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from featurelake.core.config import ConfigError, Settings, load_yaml_file, parse_model
from featurelake.core.errors import UserError
from featurelake.lakehouse.connectors import (
    HttpJsonOptions,
    JdbcOptions,
    secrets_in_declaration,
)

__all__ = [
    "ColumnSpec",
    "ReaderOptions",
    "SourceSpec",
    "KafkaStreamOptions",
    "FileStreamOptions",
    "StreamOptions",
    "load_source_file",
    "load_sources",
    "required_jvm_packages",
]

SOURCES_DIR = "sources"
FILE_FORMATS = ("csv", "json", "parquet")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Frozen):
    """One expected column of a source.

    Attributes:
        name: the column name exactly as in the file header (or JSON key).
        type: the type silver parses the raw string to (documentation for bronze).
        description: what the column holds.
    """

    name: str = Field(min_length=1)
    type: Literal["string", "int", "long", "double", "date", "timestamp", "boolean"] = "string"
    description: str = ""


class ReaderOptions(_Frozen):
    """How to split raw text into fields.

    Compression is inferred from the file extension (``.gz``, ``.bz2``, ``.deflate``...).

    Attributes:
        header: CSV files start with a header line naming the columns.
        delimiter: CSV field separator (one character).
        quote: CSV quote character (one character).
        escape: CSV character escaping a quote inside a quoted field; ``"`` for RFC 4180 files.
        encoding: text encoding; only UTF-8 is supported by the line-preserving reader.
        fallback_encoding: how to decode a line that is not valid UTF-8 (a file exported from
            a legacy system): ``iso-8859-1`` or ``windows-1252``. Without one such a line is
            kept in ``_rescued_data`` (its invalid bytes replaced by U+FFFD) and silver
            quarantines it under the rule ``invalid_encoding``.
    """

    header: bool = True
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    quote: str = Field(default='"', min_length=1, max_length=1)
    escape: str = Field(default='"', min_length=1, max_length=1)
    encoding: Literal["utf-8", "UTF-8", "utf8"] = "utf-8"
    fallback_encoding: Literal["iso-8859-1", "windows-1252"] | None = None


class KafkaStreamOptions(_Frozen):
    """Where a streaming source's events are published in Kafka (one JSON object a message).

    Attributes:
        bootstrap_servers: ``host:port[,host:port]`` of the brokers.
        topic: the topic read.
        starting_offsets: where a query without a checkpoint starts: ``earliest`` or
            ``latest``.
        max_offsets_per_trigger: at most this many messages per micro-batch (None: all
            available).
        options: further ``kafka.*`` consumer options (security, timeouts), passed as they are.
    """

    bootstrap_servers: str = Field(min_length=1)
    topic: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    starting_offsets: Literal["earliest", "latest"] = "earliest"
    max_offsets_per_trigger: int | None = Field(default=None, gt=0)
    options: dict[str, str] = Field(default_factory=dict)


class FileStreamOptions(_Frozen):
    """How the stream job reads new files landed under the source's ``path`` (JSON lines).

    Attributes:
        max_files_per_trigger: at most this many new files per micro-batch (None: all).
    """

    max_files_per_trigger: int | None = Field(default=None, gt=0)


class StreamOptions(_Frozen):
    """A streaming source: events read by the ``stream`` job, never by ``bronze``.

    The events are JSON objects with the source's declared columns, parsed and validated by
    the silver table declared for this source (the same code as batch silver). Events whose
    ``event_time`` is behind the watermark (the greatest event time of the earlier
    micro-batches minus ``watermark``) are late: they go to ``<silver table>_late``.

    Attributes:
        transport: where the job reads by default: ``kafka`` or ``files`` (new files under
            the source's ``path``); ``stream --transport`` overrides it.
        event_time: the silver column holding each event's time (a timestamp).
        watermark: how late an event may arrive and still count (``"10m"``).
        kafka: the Kafka topic (required for ``transport: kafka``).
        files: how new landing files are read.
    """

    transport: Literal["kafka", "files"] = "kafka"
    event_time: str = Field(min_length=1)
    watermark: timedelta
    kafka: KafkaStreamOptions | None = None
    files: FileStreamOptions = Field(default_factory=FileStreamOptions)

    @field_validator("watermark", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        from featurelake.feature_store.definitions import parse_duration

        return parse_duration(value)

    @model_validator(mode="after")
    def _transport_configured(self) -> StreamOptions:
        if self.transport == "kafka" and self.kafka is None:
            raise ValueError("transport kafka needs a kafka: section (bootstrap_servers, topic)")
        return self


class SourceSpec(_Frozen):
    """A declared source: a file glob, its format and its expected columns.

    Attributes:
        name: the source name (the YAML file's stem) and the bronze table name.
        description: what the source is.
        format: ``csv`` or ``json`` (JSON lines), read line by line; ``parquet``; ``jdbc`` (a
            database table, read incrementally) or ``http_json`` (a paginated JSON API).
        path: a glob (file formats only); relative globs are resolved against
            ``lakehouse.landing``.
        options: reader options (CSV only).
        on_changed_file: what bronze does when a file already ingested changed under the same
            name: ``reingest`` it as a new batch, ``skip`` it (logged), or ``fail`` the job.
        on_unreadable_file: what bronze does with a file it cannot read to its end (a truncated
            or corrupt archive, a file it may not open): either way the file is recorded in the
            ingest ledger as ``failed`` with the reason and the other files are ingested;
            ``fail`` then ends the run with exit code 2, ``skip`` with a warning only.
        columns: the expected columns, in file order (JDBC: the columns read; HTTP: the keys of
            a record).
        jdbc: where the table is and how it is read (``format: jdbc`` only).
        http_json: where the API is and how its pages are read (``format: http_json`` only).
        stream: makes this a streaming source (``format: json``; ``path`` is the landing
            glob of the file transport): read by the ``stream`` job, not by ``bronze``.
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    description: str = ""
    format: Literal["csv", "json", "parquet", "jdbc", "http_json"]
    path: str | None = Field(default=None, min_length=1, validate_default=True)
    options: ReaderOptions = Field(default_factory=ReaderOptions)
    on_changed_file: Literal["reingest", "skip", "fail"] = "fail"
    on_unreadable_file: Literal["fail", "skip"] = "fail"
    columns: tuple[ColumnSpec, ...] = Field(min_length=1)
    jdbc: JdbcOptions | None = Field(default=None, validate_default=True)
    http_json: HttpJsonOptions | None = Field(default=None, validate_default=True)
    stream: StreamOptions | None = None

    @field_validator("columns")
    @classmethod
    def _unique_columns(cls, columns: tuple[ColumnSpec, ...]) -> tuple[ColumnSpec, ...]:
        names = [c.name for c in columns]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"duplicated column names: {duplicated}")
        reserved = sorted(n for n in names if n.startswith("_"))
        if reserved:
            raise ValueError(f"column names starting with '_' are reserved for lineage: {reserved}")
        return columns

    @field_validator("path")
    @classmethod
    def _path_is_a_file_glob(cls, path: str | None, info: ValidationInfo) -> str | None:
        file_source = info.data.get("format") in FILE_FORMATS
        if path is None and file_source:
            raise ValueError(f"is required for {'/'.join(FILE_FORMATS)} sources")
        if path is not None and not file_source and "format" in info.data:
            raise ValueError(f"is for files; a {info.data['format']} source has no path")
        if path is not None and path.endswith("/"):
            raise ValueError(f"must match files, not a folder: {path!r} (add '*')")
        return path

    @field_validator("jdbc", "http_json")
    @classmethod
    def _section_of_the_format(
        cls, section: JdbcOptions | HttpJsonOptions | None, info: ValidationInfo
    ) -> JdbcOptions | HttpJsonOptions | None:
        fmt = info.data.get("format")
        if fmt is None:
            return section
        if section is None and fmt == info.field_name:
            raise ValueError(f"is required for format {fmt}")
        if section is not None and fmt != info.field_name:
            raise ValueError(f"is only for format {info.field_name} (this source is {fmt})")
        declared = [c.name for c in info.data.get("columns", ())]
        if isinstance(section, JdbcOptions) and declared and section.cursor not in declared:
            raise ValueError(f"cursor {section.cursor!r} is not a declared column: {declared}")
        return section

    @model_validator(mode="after")
    def _stream_events_are_json(self) -> SourceSpec:
        if self.stream is not None and self.format != "json":
            raise ValueError(
                f"a streaming source's events are JSON objects: format json, got {self.format}"
            )
        return self

    @property
    def is_streaming(self) -> bool:
        """True for sources the ``stream`` job reads (they have a ``stream:`` section)."""
        return self.stream is not None

    @property
    def is_file_source(self) -> bool:
        """True for sources read from landed files (csv, json, parquet)."""
        return self.format in FILE_FORMATS

    @property
    def column_names(self) -> tuple[str, ...]:
        """The declared column names in file order."""
        return tuple(c.name for c in self.columns)

    def resolve_glob(self, landing: str) -> str:
        """The absolute glob: ``path`` when absolute, else ``path`` under ``landing``.

        Args:
            landing: the landing folder (``lakehouse.landing``).

        Returns:
            An absolute, normalised glob pattern.

        Raises:
            UserError: the source is not read from files.
        """
        if self.path is None:
            raise UserError(f"source {self.name} is a {self.format} source: it has no files")
        raw = os.path.expanduser(self.path)
        if not os.path.isabs(raw):
            raw = os.path.join(landing, raw)
        return os.path.abspath(raw)


def load_source_file(path: str | Path) -> SourceSpec:
    """Parse one ``conf/sources/<name>.yaml`` into a :class:`SourceSpec`.

    Args:
        path: the YAML file; its stem is the source name.

    Returns:
        The validated declaration.

    Raises:
        ConfigError: the file is missing or invalid; the message names the file and the key.
    """
    path = Path(path)
    data = load_yaml_file(path)
    stem = path.stem
    if "name" in data and data["name"] != stem:
        raise ConfigError(
            str(path), "name", f"must equal the file name {stem!r}, got {data['name']!r}"
        )
    try:
        return parse_model(SourceSpec, {**data, "name": stem}, str(path))
    except ConfigError as exc:
        secrets = secrets_in_declaration(data)
        if not secrets:
            raise
        # The error quotes the refused values: never a credential.
        problem = exc.problem
        for secret in sorted(secrets, key=len, reverse=True):
            problem = problem.replace(secret, "***").replace(repr(secret)[1:-1], "***")
        raise ConfigError(exc.source, exc.key, problem) from None


def load_sources(settings: Settings) -> dict[str, SourceSpec]:
    """Load every source declared in ``<conf_dir>/sources/*.yaml``.

    Args:
        settings: the run's settings (for ``conf_dir``).

    Returns:
        Source name -> declaration, sorted by name.

    Raises:
        ConfigError: the folder is missing or empty, or a declaration is invalid.
    """
    folder = settings.conf_path(SOURCES_DIR)
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    if not files:
        raise ConfigError(str(folder), "", "no source declarations (*.yaml) found")
    return {spec.name: spec for spec in (load_source_file(f) for f in files)}


def required_jvm_packages(sources: Iterable[SourceSpec]) -> list[str]:
    """The Maven coordinates the sources need on Spark's classpath, sorted.

    JDBC drivers, and Spark's Kafka connector for a streaming source with a Kafka topic.

    Args:
        sources: the declared sources.

    Returns:
        Unique ``group:artifact:version`` strings; empty when no source needs one.
    """
    from featurelake.core.jvm_packages import kafka_coordinates

    sources = list(sources)
    needed = {s.jdbc.driver_coordinates for s in sources if s.jdbc is not None}
    if any(s.stream is not None and s.stream.kafka is not None for s in sources):
        needed.update(kafka_coordinates())
    return sorted(needed)
