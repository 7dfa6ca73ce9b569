"""Load the latest feature values per entity into the online store (incremental).

    ./spark-submit.sh materialize                       # every online view but windowed ones
    ./spark-submit.sh materialize --view customer_rfm --up-to 2011-12-09T00:00:00Z
    ./spark-submit.sh materialize --full                # ignore the bookmarks, reload all

The store (SQLite file or Redis) comes from conf/serving.yaml (online_store). Each view's
bookmark (source Delta version and cut-off of the last run) is kept in the store, so a rerun
only loads rows added or changed since; see featurelake.feature_store.materialize.
"""

import argparse
from collections.abc import Sequence

from pyspark.sql import SparkSession

from featurelake.core.errors import UserError
from featurelake.core.runner import JobContext, instant_argument, run_job
from featurelake.feature_store.definitions import load_feature_views
from featurelake.feature_store.materialize import materialize_view
from featurelake.feature_store.online import load_serving_config, open_online_store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--view",
        action="append",
        default=[],
        metavar="NAME",
        help="feature view to materialise (repeatable; default: every online view)",
    )
    parser.add_argument(
        "--up-to",
        type=instant_argument,
        default=None,
        metavar="TIMESTAMP",
        help="only rows with event time at or before this time (UTC if no zone)",
    )
    parser.add_argument(
        "--full", action="store_true", help="ignore the bookmarks and consider every source row"
    )


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    views = load_feature_views(ctx.settings)
    unknown = [v for v in args.view if v not in views]
    if unknown:
        raise UserError(f"unknown feature view(s) {unknown}; declared: {sorted(views)}")
    # Windowed views are loaded by the stream job as their windows change; named, they are
    # materialised from their gold table like any view.
    chosen = (
        [views[v] for v in args.view]
        if args.view
        else [v for v in views.values() if v.online and v.window is None]
    )
    serving = load_serving_config(ctx.settings)
    store = open_online_store(serving.online_store)
    try:
        results = [
            materialize_view(
                ctx.tables,
                ctx.settings,
                view,
                store,
                up_to=args.up_to,
                full=args.full,
                batch_size=serving.online_store.write_batch_size,
            )
            for view in chosen
        ]
    finally:
        store.close()
    ctx.summary["online_store"] = repr(store)
    ctx.summary["views"] = {r.view: r.as_dict() for r in results}
    for result in results:
        ctx.outputs[f"online store/{result.view}"] = result.entities_written


def run_materialize(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """Run the job (tests and the pipeline pass a session)."""
    return run_job("materialize", main, argv=argv, add_arguments=add_arguments, spark=spark)
