"""Feast's side of bench_feast.py, run by the Python of a venv with Feast 0.67, not featurelake.

    FEAST_PY bench/feast_side.py setup --repo DIR --features F.parquet --online O.parquet \\
        --ttl-seconds 604800
    FEAST_PY bench/feast_side.py pit --repo DIR --entities E.parquet --out R.parquet [...]
    FEAST_PY bench/feast_side.py materialize --repo DIR --entities 10000 --lookups 2000
    FEAST_PY bench/feast_side.py serve --repo DIR --port P --workers 2

``setup`` writes a Feast repository in ``--repo`` (``feature_store.yaml``: provider ``local``, no
``offline_store`` key so 0.67's default applies - ``dask``, the ``DaskOfflineStore`` over
``FileSource`` Parquet - and the ``sqlite`` online store) and applies an entity ``entity``
(join key ``entity_id``, INT64) and two feature views with the same TTL: ``bench_pit`` over
the feature rows (offline only) and ``bench_online`` over the latest row per entity (what
``materialize`` loads into SQLite).

``pit`` times reading the ``--entities`` file with pandas, Feast's
``get_historical_features(...).to_df()`` and writing the result to ``--out`` with pandas (the
same end points as featurelake's side: entity rows in a Parquet file -> result in a Parquet
file), after an untimed warm-up on ``--warmup`` when given. ``materialize`` times
``FeatureStore.materialize`` of ``bench_online`` and then ``--lookups`` in-process
``get_online_features`` calls of one random entity. ``serve`` runs ``feast serve`` tuned for
throughput (see bench_feast.py). Each command but ``serve`` prints one JSON object on stdout;
Feast's own printing goes to stderr.

It imports nothing of featurelake (Feast runs in its own venv).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import resource
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

FEATURES = ["f1", "f2", "f3"]

FEATURE_STORE_YAML = """\
project: featurelake_bench
registry: data/registry.db
provider: local
online_store:
    type: sqlite
    path: data/online_store.db
entity_key_serialization_version: 3
auth:
    type: no_auth
"""


def _store(repo: str) -> Any:
    from feast import FeatureStore

    return FeatureStore(repo_path=repo)


def command_setup(args: argparse.Namespace) -> dict[str, Any]:
    import feast
    from feast import Entity, FeatureView, Field, FileSource, ValueType
    from feast.types import Float64, Int64

    repo = Path(args.repo)
    (repo / "data").mkdir(parents=True, exist_ok=True)
    (repo / "feature_store.yaml").write_text(FEATURE_STORE_YAML, encoding="utf-8")
    entity = Entity(name="entity", join_keys=["entity_id"], value_type=ValueType.INT64)
    schema = [
        Field(name="entity_id", dtype=Int64),
        Field(name="f1", dtype=Float64),
        Field(name="f2", dtype=Int64),
        Field(name="f3", dtype=Float64),
    ]
    ttl = timedelta(seconds=args.ttl_seconds)
    views = [
        FeatureView(
            name="bench_pit",
            entities=[entity],
            ttl=ttl,
            schema=schema,
            online=False,
            source=FileSource(
                name="bench_features", path=str(args.features), timestamp_field="event_ts"
            ),
        ),
        FeatureView(
            name="bench_online",
            entities=[entity],
            ttl=ttl,
            schema=schema,
            online=True,
            source=FileSource(
                name="bench_latest", path=str(args.online), timestamp_field="event_ts"
            ),
        ),
    ]
    store = _store(args.repo)
    store.apply([entity, *views])
    return {
        "feast_version": feast.__version__,
        "offline_store": type(store.config.offline_store).__name__,
    }


def _retrieve(store: Any, entity_file: str, out: str | None) -> dict[str, float]:
    import pandas as pd

    started = time.perf_counter()
    entity_df = pd.read_parquet(entity_file).rename(columns={"ts": "event_timestamp"})
    read = time.perf_counter()
    result = store.get_historical_features(
        entity_df=entity_df, features=[f"bench_pit:{f}" for f in FEATURES]
    ).to_df()
    retrieved = time.perf_counter()
    if out:
        result.to_parquet(out, index=False)
    done = time.perf_counter()
    return {
        "rows_in": len(entity_df),
        "rows_out": len(result),
        "read_s": read - started,
        "retrieve_s": retrieved - read,
        "write_s": done - retrieved,
        "total_s": done - started,
    }


def command_pit(args: argparse.Namespace) -> dict[str, Any]:
    import feast

    store = _store(args.repo)
    if args.warmup:
        _retrieve(store, args.warmup, None)
    return {
        "feast_version": feast.__version__,
        "offline_store": type(store.config.offline_store).__name__,
        **_retrieve(store, args.entities, args.out),
        # Linux: kilobytes. The process's peak, the warm-up's included.
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def command_materialize(args: argparse.Namespace) -> dict[str, Any]:
    store = _store(args.repo)
    now = datetime.now(timezone.utc)
    started = time.perf_counter()
    store.materialize(
        start_date=now - timedelta(days=2),
        end_date=now + timedelta(minutes=1),
        feature_views=["bench_online"],
    )
    materialize_s = time.perf_counter() - started
    refs = [f"bench_online:{f}" for f in FEATURES]
    rng = random.Random(1)
    store.get_online_features(features=refs, entity_rows=[{"entity_id": 0}]).to_dict()
    latencies = []
    for _ in range(args.lookups):
        row = [{"entity_id": rng.randrange(args.entities)}]
        started = time.perf_counter()
        answer = store.get_online_features(features=refs, entity_rows=row).to_dict()
        latencies.append(time.perf_counter() - started)
        assert answer["f1"][0] is not None, answer
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "materialize_s": materialize_s,
        "lookups": args.lookups,
        "get_online_features_p50_ms": q[49] * 1000,
        "get_online_features_p99_ms": q[98] * 1000,
    }


def command_serve(args: argparse.Namespace) -> None:
    from feast.cli.cli import cli

    # --max-requests 0: gunicorn never recycles a worker (its default here is 1000 +- 50).
    cli.main(
        args=[
            "--chdir",
            args.repo,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(args.port),
            "--workers",
            str(args.workers),
            "--max-requests",
            "0",
            "--max-requests-jitter",
            "0",
            "--no-access-log",
        ],
        prog_name="feast",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    setup = commands.add_parser("setup")
    setup.add_argument("--features", required=True, help="feature rows (Parquet)")
    setup.add_argument("--online", required=True, help="latest row per entity (Parquet)")
    setup.add_argument("--ttl-seconds", type=int, required=True)
    pit = commands.add_parser("pit")
    pit.add_argument("--entities", required=True, help="entity rows (Parquet)")
    pit.add_argument("--out", required=True, help="the result (Parquet)")
    pit.add_argument("--warmup", help="entity rows for an untimed first retrieval")
    materialize = commands.add_parser("materialize")
    materialize.add_argument("--entities", type=int, required=True, help="keys 0..N-1")
    materialize.add_argument("--lookups", type=int, default=2000)
    serve = commands.add_parser("serve")
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--workers", type=int, default=2)
    for command in (setup, pit, materialize, serve):
        command.add_argument("--repo", required=True)
    args = parser.parse_args(argv)
    if args.command == "serve":
        command_serve(args)
        return 0
    handler = {"setup": command_setup, "pit": command_pit, "materialize": command_materialize}
    out = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        result = handler[args.command](args)
    out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
