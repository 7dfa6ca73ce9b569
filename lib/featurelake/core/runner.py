"""Job runner: the shared shell of every spark-submit entry point in jobs/.

A job is a function ``body(ctx, args)``; :func:`run_job` parses the common options, loads and
validates the whole configuration directory before building the session
(:func:`~featurelake.core.validation.validate_configuration`), builds the session once, times the
run and logs its summary (rows read and written per table, duration, status).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession

from featurelake.core.config import Settings
from featurelake.core.console import SparkProgress, rows_per_second
from featurelake.core.errors import ConfigError, FeaturelakeError
from featurelake.core.logs import configure_logging
from featurelake.core.session import build_spark_session
from featurelake.core.validation import validate_configuration
from featurelake.delta import DeltaTables, Lineage

__all__ = [
    "JobContext",
    "JobOutcome",
    "execute_job",
    "instant_argument",
    "log_dir",
    "parse_job_args",
    "run_job",
]

log = logging.getLogger(__name__)

CONF_ARCHIVE = "featurelake-conf.zip"


@dataclass
class JobContext:
    """What a job body gets: its settings, session, table I/O and run identity."""

    job: str
    run_id: str
    settings: Settings
    spark: SparkSession
    tables: DeltaTables
    summary: dict[str, Any] = field(default_factory=dict)
    # how configure_logging was called for the job (a pipeline takes its logging back)
    logging: dict[str, Any] = field(default_factory=dict)
    # rows written somewhere other than a Delta table (the online store), by target
    outputs: dict[str, int] = field(default_factory=dict)
    # a stage of a pipeline (which reports for it) rather than a job on its own
    nested: bool = False

    def path(self, layer: str, table: str) -> str:
        """The storage path of ``table`` in ``layer`` under the configured lakehouse root."""
        return self.settings.lakehouse.table_path(layer, table)


def instant_argument(text: str) -> datetime:
    """An ``argparse`` type: an ISO-8601 date or time (``Z`` allowed), UTC when naive."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 date or time such as 2011-12-09T00:00:00Z, got {text!r}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _tell_user(message: str) -> None:
    """One plain line on stderr beside the JSON log: what a person at the terminal reads."""
    sys.stderr.write(message + "\n")


def _common_parser(job: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=job, description=f"featurelake job: {job}")
    parser.add_argument("--env", default=None, help="configuration overlay conf/env/<ENV>.yaml")
    parser.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a configuration value (repeatable)",
    )
    parser.add_argument(
        "--conf-dir",
        default=os.environ.get("FEATURELAKE_CONF_DIR", "conf"),
        help="configuration directory (default: conf)",
    )
    parser.add_argument("--run-id", default=None, help="run id (default: a new one)")
    parser.add_argument(
        "--log-format",
        choices=["human", "json"],
        default=os.environ.get("FEATURELAKE_LOG_FORMAT", "human"),
        help="the terminal's lines: human (default; the JSON log goes to "
        "<lakehouse>/ops/logs) or json (the JSON lines themselves)",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show every event and third-party warnings"
    )
    return parser


def _resolve_conf_dir(conf_dir: str) -> str:
    """Use conf/ when present; on a cluster driver, unpack the archive spark-submit shipped."""
    if Path(conf_dir, "base.yaml").is_file():
        return conf_dir
    for candidate in (
        Path(CONF_ARCHIVE),
        Path(os.environ.get("SPARK_FILES_DIR", "."), CONF_ARCHIVE),
    ):
        if candidate.is_file():
            target = tempfile.mkdtemp(prefix="featurelake-conf-")
            with zipfile.ZipFile(candidate) as archive:
                archive.extractall(target)
            return str(Path(target, "conf"))
    return conf_dir


def parse_job_args(
    job: str,
    argv: Sequence[str] | None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace:
    """Parse the common options plus the job's own."""
    parser = _common_parser(job)
    if add_arguments:
        add_arguments(parser)
    return parser.parse_args(list(argv) if argv is not None else None)


@dataclass
class JobOutcome:
    """How a job ended: exit code, the exception (if any) and its run summary fields."""

    code: int
    summary: dict[str, Any]
    error: BaseException | None = None


def run_job(
    job: str,
    body: Callable[[JobContext, argparse.Namespace], Any],
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    spark: SparkSession | None = None,
) -> int:
    """Run one job and return its exit code.

    0 when it succeeded; otherwise the failure's ``exit_code`` (:mod:`featurelake.core.errors`:
    2 for a user, configuration or data error, 75 for a transient one) with one line saying
    what happened; 1 with the traceback logged for anything unexpected (a bug).

    Args:
        job: the job name (app name, log field, lineage).
        body: the job's extract-transform-load function.
        argv: arguments (default: ``sys.argv[1:]``).
        add_arguments: adds the job's own options to the parser.
        spark: an existing session (tests, the pipeline runner); built from settings otherwise.
    """
    return execute_job(job, body, argv, add_arguments, spark).code


def execute_job(
    job: str,
    body: Callable[[JobContext, argparse.Namespace], Any],
    argv: Sequence[str] | None = None,
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    spark: SparkSession | None = None,
    *,
    nested: bool = False,
) -> JobOutcome:
    """Run one job like :func:`run_job`, returning its :class:`JobOutcome` (for the pipeline).

    Args:
        nested: a stage of a pipeline, which reports progress itself: no progress bar and no
            closing line of the job's own.
    """
    args = parse_job_args(job, argv, add_arguments)
    run_id = args.run_id or uuid.uuid4().hex[:16]
    try:
        settings = validate_configuration(_resolve_conf_dir(args.conf_dir), args.env, args.conf)
    except ConfigError as exc:
        configure_logging(job, run_id, console=args.log_format)
        log.error("config_error", extra={"fields": {"error": str(exc)}})
        _tell_user(f"featurelake {job}: configuration error: {exc}")
        return JobOutcome(2, {"status": "failed", "error": str(exc)}, exc)
    log_options: dict[str, Any] = {
        "level": settings.logging.level,
        "fmt": settings.logging.format,
        "log_dir": log_dir(settings),
        "console": args.log_format,
        "verbose": args.verbose,
    }
    log_file = configure_logging(job, run_id, **log_options)
    started = time.monotonic()
    status, code, error = "succeeded", 0, None
    caught: BaseException | None = None
    ctx = None
    try:
        session = spark or build_spark_session(f"featurelake-{job}", settings.spark, settings.delta)
        if args.verbose:
            session.sparkContext.setLogLevel("WARN")
        tables = DeltaTables.for_settings(session, settings.delta, Lineage(job=job, run_id=run_id))
        ctx = JobContext(
            job=job,
            run_id=run_id,
            settings=settings,
            spark=session,
            tables=tables,
            logging=log_options,
            nested=nested,
        )
        log.info(
            "job_started",
            extra={
                "fields": {
                    "env": settings.env,
                    "backend": tables.backend,
                    "master": session.sparkContext.master,
                }
            },
        )
        if nested:
            body(ctx, args)
        else:
            with SparkProgress(session, job):
                body(ctx, args)
    except FeaturelakeError as exc:
        status, code, error, caught = "failed", exc.exit_code, f"{type(exc).__name__}: {exc}", exc
        _tell_user(f"featurelake {job}: {error}")
    except Exception as exc:  # noqa: BLE001 - report every failure in the run summary
        status, code, error, caught = "failed", 1, f"{type(exc).__name__}: {exc}", exc
        log.exception("job_failed")
        _tell_user(f"featurelake {job}: {error}")
    fields: dict[str, Any] = {
        "status": status,
        "duration_s": round(time.monotonic() - started, 3),
        "rows_read": ctx.tables.rows_read if ctx else {},
        "rows_written": {**ctx.tables.rows_written, **ctx.outputs} if ctx else {},
    }
    if ctx:
        fields.update(ctx.summary)
    if error:
        fields["error"] = error
    log.log(logging.INFO if code == 0 else logging.ERROR, "run_summary", extra={"fields": fields})
    if code == 0 and not nested and args.log_format == "human":
        written = rows_per_second(fields["rows_written"], fields["duration_s"])
        where = f"; log: {log_file}" if log_file else ""
        _tell_user(
            f"featurelake {job}: done in {fields['duration_s']:.1f}s"
            + (f", wrote {written}" if written else "")
            + where
        )
    return JobOutcome(code, fields, caught)


def log_dir(settings: Settings) -> str | None:
    """The job logs' folder under a local lakehouse root; None for an object-store root."""
    root = settings.lakehouse.root
    if "://" in root and not root.startswith("file:"):
        return None
    base = root.removeprefix("file:")
    return os.path.join(base, settings.logging.dir)
