"""Bronze ingest: new raw data of each declared source into append-only Delta tables.

    ./spark-submit.sh bronze                      # every source in conf/sources/
    ./spark-submit.sh bronze --source online_retail

Per source: list the files matching its glob, compare them with ``bronze/_ingested_files``,
read only new (and, per ``on_changed_file``, changed) files, keep every line, add lineage, and
append them to ``bronze/<source>`` in one commit; then record the files in the ledger. Sources
are ingested concurrently (up to ``spark.concurrent_tables``). A run with no new files writes
nothing. A run that died between the two commits is repaired by the next run from the bronze
commit's metadata before it plans anything.

A ``jdbc`` source appends the rows past its last committed cursor, an ``http_json`` source the
new and changed pages of its API, through the same claimed commit and ledger
(docs/SOURCES.md).

Concurrent runs: the bronze commit carries a claim (a Delta application transaction
``featurelake.bronze.<source>`` at the table version the plan was made from, plus one). Two
runs that planned from the same state cannot both commit: the second one's commit fails, its
files are removed, and it plans again - finding the files ingested. So the ledger decision
and the data commit are one, and every line lands exactly once.

A file that cannot be read to its end (a truncated gzip, a ``.gz`` that is not gzip, a file
that may not be opened) is recorded in the ledger as ``failed`` with the reason; the other
files are ingested; with ``on_unreadable_file: fail`` (the default) the run then ends with
exit code 2 and one line naming the files.
"""

from __future__ import annotations

import argparse
import functools
import logging

from featurelake.core.concurrency import run_concurrently
from featurelake.core.errors import DataError, UserError
from featurelake.core.runner import JobContext
from featurelake.lakehouse.bronze import (
    INGESTED_FILES_TABLE,
)
from featurelake.lakehouse.bronze.ingest import ingest_with_claim, unreadable_summary
from featurelake.lakehouse.sources import load_sources

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        action="append",
        default=None,
        metavar="NAME",
        help="ingest only this source (repeatable; default: all declared)",
    )


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    sources = load_sources(ctx.settings)
    names = args.source or sorted(n for n, s in sources.items() if not s.is_streaming)
    unknown = [n for n in names if n not in sources]
    if unknown:
        raise UserError(
            f"unknown source(s) {unknown}; declared in "
            f"{ctx.settings.conf_path('sources')}: {sorted(sources)}"
        )
    streaming = [n for n in names if sources[n].is_streaming]
    if streaming:
        raise UserError(
            f"source(s) {streaming} are streaming sources: the stream job reads them "
            "(./spark-submit.sh stream)"
        )
    ledger_path = ctx.path("bronze", INGESTED_FILES_TABLE)
    unreadable: dict[str, dict[str, str]] = {}

    def ingest_source(name: str) -> None:
        spec = sources[name]
        failed = ingest_with_claim(ctx, spec, ledger_path)
        if failed:
            for path, reason in failed.items():
                log.error(
                    "file_unreadable",
                    extra={
                        "fields": {
                            "source": name,
                            "path": path,
                            "reason": reason,
                            "policy": spec.on_unreadable_file,
                        }
                    },
                )
            if spec.on_unreadable_file == "fail":
                unreadable[name] = failed

    # Sources are independent (own table, own ledger rows): ingested concurrently.
    run_concurrently(
        [functools.partial(ingest_source, name) for name in names],
        ctx.settings.spark.concurrent_tables,
    )
    if unreadable:
        raise DataError(unreadable_summary(unreadable))
