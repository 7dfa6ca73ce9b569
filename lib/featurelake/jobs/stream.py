"""Stream events into silver, windowed feature views and the online store (Structured Streaming).

    ./spark-submit.sh stream                         # continuous: every streaming source and view
    ./spark-submit.sh stream --available-now         # what is there now, then stop (tests, cron)
    ./spark-submit.sh stream --transport files --trigger-seconds 5
    ./spark-submit.sh stream --source order_events --view customer_orders_1h

Streaming sources are the conf/sources/ declarations with a stream: section; windowed views
the conf/features/ views with a window: section. SIGTERM (or Ctrl-C) lets each query finish
its micro-batch, then stops. Checkpoints: <lakehouse>/<streaming.checkpoint_dir>/<query>.
See featurelake.streaming and docs/STREAMING.md.
"""

import argparse

from featurelake.core.runner import JobContext
from featurelake.streaming.runner import StreamRunOptions, run_stream


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME",
        help="streaming source to ingest (repeatable; default: every declared one)",
    )
    parser.add_argument(
        "--view",
        action="append",
        default=[],
        metavar="NAME",
        help="windowed view to keep up to date (repeatable; default: every view over the sources)",
    )
    parser.add_argument(
        "--transport",
        choices=["kafka", "files"],
        default=None,
        help="read the sources from Kafka or from files landed under their path "
        "(default: each source's stream.transport)",
    )
    parser.add_argument(
        "--available-now",
        action="store_true",
        help="process what the sources hold now, then stop (default: run until stopped)",
    )
    parser.add_argument(
        "--trigger-seconds",
        type=float,
        default=None,
        metavar="S",
        help="micro-batch interval of a continuous run (default: streaming.trigger_seconds)",
    )
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=None,
        metavar="S",
        help="stop a continuous run after this long",
    )
    parser.add_argument(
        "--no-online", action="store_true", help="do not write the online store (gold only)"
    )


def main(ctx: JobContext, args: argparse.Namespace) -> None:
    options = StreamRunOptions(
        sources=tuple(args.source),
        views=tuple(args.view),
        transport=args.transport,
        available_now=args.available_now,
        trigger_seconds=args.trigger_seconds,
        online=not args.no_online,
        timeout_seconds=args.timeout_seconds,
    )
    ctx.summary["stream"] = run_stream(ctx, options)
