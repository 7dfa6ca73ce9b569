"""Serve online features and model predictions over HTTP (FastAPI + uvicorn); runs until stopped.

    ./spark-submit.sh serve                      # host/port from conf/serving.yaml (server)
    ./spark-submit.sh serve --port 8080
    .venv/bin/python jobs/serve.py --port 8080   # the same without spark-submit

    curl -s -H 'X-API-Key: demo-analyst-key-0001' -H 'Content-Type: application/json' \
      -d '{"entities": [{"customer_id": "17850"}], "features": ["customer_rfm:*"]}' \
      http://127.0.0.1:8000/features
    curl -s -H 'X-API-Key: demo-scoring-key-0003' -H 'Content-Type: application/json' \
      -d '{"model": "credit_default", "entities": [{"id": 1}]}' http://127.0.0.1:8000/predict

A long-running job: it reads the online store that `materialize` fills and needs no Spark, so
it does not start a Spark session (unlike the other jobs, it does not go through run_job's
session set-up; it takes the same --env/--conf/--conf-dir options). Stop it with Ctrl-C or
SIGTERM; uvicorn finishes the requests in flight. With several workers each listens on its own
socket on the port (``SO_REUSEPORT``, featurelake.feature_store.workers), so the kernel spreads
new connections over them evenly.
"""

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from featurelake.core.config import ConfigError, load_settings
from featurelake.core.console import say
from featurelake.core.logs import configure_logging
from featurelake.core.runner import log_dir, parse_job_args
from featurelake.feature_store.online import load_serving_config
from featurelake.feature_store.workers import REUSE_PORT, serve_workers

log = logging.getLogger("featurelake.jobs.serve")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="interface to bind (default: server.host)")
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: server.port)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="uvicorn worker processes (default: server.workers)",
    )


def run(argv: Sequence[str] | None = None) -> int:
    """Parse options, validate the configuration and run uvicorn until stopped."""
    args = parse_job_args("serve", argv, add_arguments)
    try:
        import uvicorn

        from featurelake.feature_store.server import build_app
    except ModuleNotFoundError as exc:
        configure_logging("serve", args.run_id or "", console=args.log_format)
        say(
            f"featurelake serve: {exc.name} is not installed; the server needs the serving "
            "extra: pip install 'featurelake[serving]' (./spark-submit.sh installs it)"
        )
        return 2
    run_id = args.run_id or os.urandom(8).hex()
    conf_dir = args.conf_dir
    try:
        settings = load_settings(conf_dir, args.env, args.conf)
        serving = load_serving_config(settings)
        log_file = configure_logging(
            "serve",
            run_id,
            settings.logging.level,
            settings.logging.format,
            log_dir=log_dir(settings),
            console=args.log_format,
            verbose=args.verbose,
        )
        host = args.host or serving.server.host
        port = serving.server.port if args.port is None else args.port
        workers = args.workers or serving.server.workers
        if workers > 1:
            # Worker processes rebuild the app from the same configuration.
            os.environ["FEATURELAKE_CONF_DIR"] = conf_dir
            os.environ["FEATURELAKE_ENV"] = settings.env
            os.environ["FEATURELAKE_CONF_OVERRIDES"] = json.dumps(list(args.conf))
            build_app(settings)  # fail fast on a bad configuration
            target: Any = "featurelake.feature_store.server:app_from_environment"
        else:
            target = build_app(settings)
    except (ConfigError, ValueError) as exc:
        configure_logging("serve", run_id, console=args.log_format)
        say(f"featurelake serve: configuration error: {exc}")
        return 2
    log.info(
        "serve_started",
        extra={
            "fields": {
                "host": host,
                "port": port,
                "workers": workers,
                "store": serving.online_store.type,
                "audit_log": serving.server.audit_log,
            }
        },
    )
    if args.log_format == "human":
        sys.stderr.write(
            f"featurelake serve: serving on http://{host}:{port} ({workers} worker(s), "
            f"{serving.online_store.type} store)"
            + (f"; log: {log_file}" if log_file else "")
            + "; stop with Ctrl-C\n"
        )
    if workers > 1 and REUSE_PORT:
        # One listening socket per worker: connections spread over the workers evenly.
        try:
            code = serve_workers(target, host, port, workers)
        except OSError as exc:
            say(f"featurelake serve: cannot listen on {host}:{port}: {exc.strerror or exc}")
            return 2
        log.info("serve_stopped", extra={"fields": {"code": code}})
        return code
    # The audit log records every request; uvicorn's access log would only duplicate it.
    uvicorn.run(
        target,
        host=host,
        port=port,
        workers=workers,
        factory=workers > 1,
        access_log=False,
        log_level="warning",
    )
    log.info("serve_stopped")
    return 0
