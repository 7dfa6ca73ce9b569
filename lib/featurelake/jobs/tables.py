"""Table maintenance: history, vacuum and compaction of one Delta table.

./spark-submit.sh tables history silver/transactions
./spark-submit.sh tables vacuum silver/transactions --retention-hours 168
./spark-submit.sh tables compact gold/customer_features
./spark-submit.sh tables compact silver/transactions --zorder customer_id
"""

import argparse
import json
import logging
import sys

from featurelake.core.errors import UserError
from featurelake.core.runner import JobContext

log = logging.getLogger("featurelake.jobs.tables")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["history", "vacuum", "compact"])
    parser.add_argument("table", help="<layer>/<table>, e.g. silver/transactions")
    parser.add_argument("--retention-hours", type=int, default=None)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument(
        "--zorder",
        action="append",
        default=[],
        metavar="COLUMN",
        help="compact: cluster rows by this column (repeatable; Z-order)",
    )


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    layer, _, name = args.table.partition("/")
    if not name:
        raise UserError(f"table must be <layer>/<table>, got {args.table!r}")
    path = ctx.path(layer, name)
    if args.action == "history":
        for entry in ctx.tables.history(path, limit=args.limit):
            sys.stdout.write(json.dumps(entry, default=str) + "\n")
    elif args.action == "vacuum":
        hours = args.retention_hours
        if hours is None:
            hours = ctx.settings.delta.vacuum_retention_hours
        deleted = ctx.tables.vacuum(path, hours)
        ctx.summary["files_deleted"] = len(deleted)
    else:
        ctx.summary["compaction"] = ctx.tables.compact(
            path, ctx.settings.delta.compact_target_file_mb, zorder_by=args.zorder
        )
