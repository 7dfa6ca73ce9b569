"""Generate deterministic synthetic raw files into the landing folder.

    ./spark-submit.sh generate-data                                  # conf synthetic section
    ./spark-submit.sh generate-data --transactions 1000000 --customers 20000 --seed 7
    ./spark-submit.sh generate-data --out /tmp/landing --conf synthetic.malformed_rate=0.01
    ./spark-submit.sh generate-data --if-missing       # the full pipeline's first stage
    ./spark-submit.sh generate-data --seed 43 --shift LIMIT_BAL=1.6 --out /tmp/batch2   # drift
    ./spark-submit.sh generate-data --datasets credit_clients --seed 2 --credit-clients 5000 \
        --first-client-id 30001 --end-date 2026-03-31 --concept-drift-from 2026-03-01

Writes ``<out>/online_retail/online_retail-seed<S>-part<NNNNN>.csv.gz``,
``<out>/credit_clients/credit_clients-seed<S>-part<NNNNN>.csv.gz`` and
``<out>/customer_profiles/customer_profiles-seed<S>-part<NNNNN>.json.gz`` (one file per
``synthetic.rows_per_file`` rows). The same seed and settings give byte-identical files; a
re-run replaces them (bronze sees unchanged content as unchanged). Output must be a local or
mounted folder.

With ``--if-missing`` a dataset is generated only when its source (``conf/sources/<dataset>.yaml``)
has no file matching its glob under the output folder, so real or earlier files are never
replaced nor mixed with synthetic ones; when every declared source has files, nothing is
written.

``--shift COLUMN=FACTOR`` (repeatable) injects drift into the credit clients: the raw column
(``LIMIT_BAL``, ``AGE``, ``BILL_AMT1``...) is multiplied by the factor and everything else is
generated as usual. Generating a later batch with another ``--seed`` and one shift gives a
batch where only that feature moved (docs/MONITORING.md shows the monitor catching it).

``--concept-drift-from DATE`` changes how the credit default label depends on the features
(``featurelake.devtools.synthetic.CREDIT_CONCEPTS``) for a batch whose ``--end-date`` is on or
after DATE; ``--first-client-id`` starts a later batch's client IDs past the earlier ones, so
it adds clients instead of replacing them (docs/RETRAINING.md).
"""

from __future__ import annotations

import argparse
import glob
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable

from pydantic import ValidationError
from pyspark.sql import DataFrame

from featurelake.core.config import SyntheticSettings
from featurelake.core.errors import UserError
from featurelake.core.runner import JobContext
from featurelake.devtools.synthetic import (
    CREDIT_CLIENT_COLUMNS,
    credit_client_lines,
    customer_profile_lines,
    online_retail_lines,
)
from featurelake.lakehouse.bronze import list_landed_files
from featurelake.lakehouse.sources import load_sources

log = logging.getLogger("featurelake.jobs.generate_data")

# Hadoop's built-in gzip compressor reads its level from the write's configuration. Level 1
# ("BEST_SPEED") deflates about twice as fast as the default 6, for files about a quarter
# larger: generation is CPU-bound on compression, and these are throw-away landing files.
_GZIP_LEVEL_OPTION = ("zlib.compress.level", "BEST_SPEED")

Generator = Callable[..., DataFrame]
DATASETS = ("online_retail", "credit_clients", "customer_profiles")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--transactions",
        type=int,
        default=None,
        help="online retail invoice lines (default: synthetic.transactions)",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=None,
        help="customers and profiles (default: synthetic.customers)",
    )
    parser.add_argument(
        "--credit-clients",
        type=int,
        default=None,
        help="credit clients (default: synthetic.credit_clients)",
    )
    parser.add_argument("--seed", type=int, default=None, help="default: synthetic.seed")
    parser.add_argument(
        "--rows-per-file",
        type=int,
        default=None,
        help="rows per output file (default: synthetic.rows_per_file)",
    )
    parser.add_argument("--out", default=None, help="output folder (default: lakehouse.landing)")
    parser.add_argument(
        "--shift",
        action="append",
        default=[],
        metavar="COLUMN=FACTOR",
        help="multiply a numeric credit-client column by FACTOR (injected drift; repeatable)",
    )
    parser.add_argument(
        "--first-client-id",
        type=int,
        default=None,
        help="the first credit client's ID (default: synthetic.credit_first_id)",
    )
    parser.add_argument(
        "--end-date",
        default=None,
        help="the batch's last day, YYYY-MM-DD (default: synthetic.end_date)",
    )
    parser.add_argument(
        "--concept-drift-from",
        default=None,
        metavar="DATE",
        help="credit labels follow the drifted relationship when the batch's end date is on "
        "or after DATE (default: synthetic.concept_drift_from)",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        choices=DATASETS,
        default=list(DATASETS),
        help="generate only these datasets (default: all three)",
    )
    parser.add_argument(
        "--if-missing",
        action="store_true",
        help="generate only the datasets whose source has no file in the output "
        "folder yet; do nothing when every source has files",
    )


def resolve_settings(base: SyntheticSettings, args: argparse.Namespace) -> SyntheticSettings:
    """The synthetic settings with the command-line options applied (validated again)."""
    updates = {
        key: value
        for key, value in {
            "transactions": args.transactions,
            "customers": args.customers,
            "credit_clients": args.credit_clients,
            "seed": args.seed,
            "rows_per_file": args.rows_per_file,
            "credit_first_id": args.first_client_id,
            "end_date": args.end_date,
            "concept_drift_from": args.concept_drift_from,
        }.items()
        if value is not None
    }
    try:
        return SyntheticSettings.model_validate({**base.model_dump(), **updates})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise UserError(f"invalid generate-data option: {problems}") from None


def parse_shifts(texts: list[str]) -> dict[str, float]:
    """``["LIMIT_BAL=1.6"]`` as ``{"LIMIT_BAL": 1.6}``.

    Raises:
        UserError: a text is not ``COLUMN=FACTOR`` with a positive number.
    """
    shifts = {}
    for text in texts:
        column, sep, factor = text.partition("=")
        try:
            value = float(factor)
        except ValueError:
            value = -1.0
        if not sep or not column or value <= 0:
            raise UserError(f"--shift {text!r}: expected COLUMN=FACTOR with a positive factor")
        if column not in CREDIT_CLIENT_COLUMNS[1:-1]:
            raise UserError(
                f"--shift {text!r}: {column!r} is not a numeric credit-client column; "
                f"columns: {', '.join(CREDIT_CLIENT_COLUMNS[1:-1])}"
            )
        shifts[column] = value
    return shifts


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    settings = resolve_settings(ctx.settings.synthetic, args)
    shifts = parse_shifts(args.shift)
    out = os.path.abspath(args.out or ctx.settings.lakehouse.landing)
    datasets: list[tuple[str, int, Generator, str]] = [
        ("online_retail", settings.transactions, online_retail_lines, "csv"),
        ("credit_clients", settings.credit_clients, credit_client_lines, "csv"),
        ("customer_profiles", settings.customers, customer_profile_lines, "json"),
    ]
    datasets = [d for d in datasets if d[0] in args.datasets]
    ctx.summary["out"] = out
    ctx.summary["seed"] = settings.seed
    ctx.summary["credit_concept"] = settings.credit_concept
    if args.if_missing:
        landed = files_per_source(ctx, out)
        ctx.summary["files_found"] = landed
        if all(landed.values()):
            log.info(
                "generation_skipped",
                extra={
                    "fields": {
                        "reason": "every declared source already has files in the landing folder",
                        "out": out,
                        "files_per_source": landed,
                    }
                },
            )
            ctx.summary["generated"] = []
            return
        have_files = {name for name, count in landed.items() if count}
        if have_files:
            log.info(
                "datasets_kept",
                extra={
                    "fields": {
                        "reason": "their sources already have files; only sources without "
                        "files are generated",
                        "out": out,
                        "datasets": sorted(have_files),
                    }
                },
            )
        datasets = [d for d in datasets if d[0] not in have_files]
        unproducible = sorted(
            n for n, c in landed.items() if not c and n not in {d[0] for d in datasets}
        )
        if unproducible:
            log.warning(
                "sources_without_files",
                extra={
                    "fields": {
                        "reason": "declared sources with no files that the generator does "
                        "not produce",
                        "out": out,
                        "sources": unproducible,
                    }
                },
            )
    ctx.summary["generated"] = [d[0] for d in datasets if d[1] > 0]
    for name, rows, generator, extension in datasets:
        if rows == 0:
            continue
        files = max(1, -(-rows // settings.rows_per_file))
        started = time.monotonic()
        extra = {"shift": shifts} if name == "credit_clients" and shifts else {}
        lines = ctx.spark.range(0, rows, 1, files).transform(
            generator, settings=settings, files=files, **extra
        )
        written = write_lines(lines, out, name, settings.seed, extension)
        seconds = time.monotonic() - started
        ctx.summary[f"{name}.rows"] = rows
        ctx.summary[f"{name}.files"] = len(written)
        ctx.summary[f"{name}.seconds"] = round(seconds, 2)
        ctx.summary[f"{name}.rows_per_second"] = round(rows / seconds) if seconds else None
        log.info(
            "dataset_generated", extra={"fields": {"dataset": name, "rows": rows, "files": written}}
        )


def files_per_source(ctx: JobContext, landing: str) -> dict[str, int]:
    """How many files match each declared file source's glob under ``landing``.

    Files are counted as bronze would list them
    (:func:`featurelake.lakehouse.bronze.list_landed_files`: regular files, names not starting
    with ``.`` or ``_``). Database and API sources have no files and are not counted, nor are
    streaming sources (the generator writes none; the stream job reads them).
    """
    return {
        name: len(list_landed_files(spec, landing))
        for name, spec in sorted(load_sources(ctx.settings).items())
        if spec.is_file_source and not spec.is_streaming
    }


def write_lines(lines: DataFrame, out: str, dataset: str, seed: int, extension: str) -> list[str]:
    """Write the lines as gzip text, one file per partition, under stable names.

    Spark writes into a staging folder (ignored by bronze's globs); each part then replaces
    ``<out>/<dataset>/<dataset>-seed<seed>-part<NNNNN>.<extension>.gz`` atomically, and parts
    of an earlier, larger run with the same seed are removed.

    Returns:
        The final file paths.
    """
    staging = os.path.join(out, f"_generating-{dataset}-{uuid.uuid4().hex[:8]}")
    target = os.path.join(out, dataset)
    os.makedirs(target, exist_ok=True)
    try:
        lines.write.option(*_GZIP_LEVEL_OPTION).text(staging, compression="gzip")
        parts = sorted(glob.glob(os.path.join(staging, "part-*")))
        written = []
        for index, part in enumerate(parts):
            final = os.path.join(target, f"{dataset}-seed{seed}-part{index:05d}.{extension}.gz")
            os.replace(part, final)
            written.append(final)
        stale = set(glob.glob(os.path.join(target, f"{dataset}-seed{seed}-part*"))) - set(written)
        for path in sorted(stale):
            os.remove(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written
