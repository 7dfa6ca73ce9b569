"""Feature catalog: apply, list, describe and search feature views.

    ./spark-submit.sh features apply [--dry-run] [--applied-by NAME]
    ./spark-submit.sh features list
    ./spark-submit.sh features describe customer_rfm
    ./spark-submit.sh features search spend [--tag churn] [--owner credit-risk]

``apply`` validates conf/features/*.yaml (and the schemas of source tables that exist) and
records new, changed and deleted views in the registry table (feature_store.registry_table);
unchanged views add nothing. The other actions print JSON lines to stdout.
"""

import argparse
import json
import sys

from featurelake.core.errors import UserError
from featurelake.core.runner import JobContext
from featurelake.feature_store.api import FeatureStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["apply", "list", "describe", "search"])
    parser.add_argument(
        "name", nargs="?", default=None, help="describe: the view name; search: text to look for"
    )
    parser.add_argument("--dry-run", action="store_true", help="apply: show the plan only")
    parser.add_argument(
        "--applied-by",
        default=None,
        help="apply: who applies (default $FEATURELAKE_USER or the login name)",
    )
    parser.add_argument("--tag", default=None, help="search: views or features with this tag")
    parser.add_argument("--owner", default=None, help="search: views or features of this owner")


def _emit(record: object) -> None:
    sys.stdout.write(json.dumps(record, default=str, sort_keys=False) + "\n")


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    store = FeatureStore(ctx.spark, ctx.settings, ctx.tables)
    if args.action == "apply":
        result = store.apply(applied_by=args.applied_by, run_id=ctx.run_id, dry_run=args.dry_run)
        outcome = {
            "dry_run": args.dry_run,
            "added": result.added,
            "changed": result.changed,
            "unchanged": result.unchanged,
            "deleted": result.deleted,
            "registry_version": result.registry_version,
        }
        ctx.summary.update(outcome)
        if not ctx.nested:  # in a pipeline the stage's line reports it
            _emit(outcome)
    elif args.action == "list":
        entries = store.list()
        for entry in entries:
            _emit(entry.summary())
        ctx.summary["views"] = len(entries)
    elif args.action == "describe":
        if not args.name:
            raise UserError("describe needs a view name: features describe <view>")
        _emit(store.describe(args.name))
    else:
        hits = store.search(args.name, tag=args.tag, owner=args.owner)
        for hit in hits:
            _emit(
                {
                    "name": hit.view_name,
                    "matched_in": hit.matched_in,
                    "features": hit.features,
                    "description": hit.entry.view.description if hit.entry.view else "",
                }
            )
        ctx.summary["hits"] = len(hits)
