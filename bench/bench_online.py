"""Online store and serving benchmark: write throughput, lookup latency in-process and over HTTP.

    .venv/bin/python bench/bench_online.py                       # SQLite and Redis, defaults
    .venv/bin/python bench/bench_online.py --stores sqlite --requests 5000

For each store (a SQLite file; a real redis-server started on 127.0.0.1 on a free port):

1. writes ``--entities`` synthetic rows of a 3-feature view through the store's monotonic
   write path (batches of ``online_store.write_batch_size``), then rewrites them with older
   event times (all refused) - rows/s for both;
2. in-process: ``--lookups`` single-entity lookups through a held ``OnlineFeatureService`` (what
   the server calls), random entities, p50/p99; then the same through the public
   ``get_online_features(..., settings=...)`` and its p50 ratio to the held service;
3. over HTTP: starts the real ``serve`` job (jobs/serve.py, uvicorn, one worker) in its own
   process against the same store, sends ``--requests`` POST /features requests from
   ``--clients`` keep-alive httpx clients (threads), and prints p50/p99 latency, requests/s and
   the error count (any non-200 or a value that is not status ``ok`` is an error).

With ``--materialize N`` it also times the ``materialize`` path with Spark (local[2]): a Delta
source of N entities x ``--days`` daily rows, a full run, then an incremental run after one more
day is appended (only the changed entities are offered), into each store.

Needs redis-server for the Redis part (bin/ensure-redis.sh installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))

from featurelake.core.config import load_settings  # noqa: E402
from featurelake.feature_store.definitions import load_feature_views_from  # noqa: E402
from featurelake.feature_store.online import (  # noqa: E402
    OnlineStore,
    RedisOnlineStore,
    SqliteOnlineStore,
    encode_entity_key,
    iter_batches,
    to_micros,
)
from featurelake.feature_store.online_api import (  # noqa: E402
    OnlineFeatureService,
    clear_online_cache,
    get_online_features,
)
from redis_server import free_port, running_redis_server  # noqa: E402

VIEW_YAML = """
feature_views:
  - name: bench_customer
    entity: customer
    join_keys: [customer_id]
    source: {layer: gold, table: bench_customer}
    event_timestamp_column: as_of_ts
    ttl: 30d
    features:
      - {name: spend_30d, dtype: double}
      - {name: orders_30d, dtype: long}
      - {name: country, dtype: string}
"""
SERVING_YAML = """
online_store:
  type: ${FEATURELAKE_ONLINE_STORE:-sqlite}
  sqlite_path: online/features.db
  redis_url: ${FEATURELAKE_REDIS_URL:-redis://127.0.0.1:6379/0}
  key_prefix: bench
  write_batch_size: 1000
server:
  audit_log: ops/audit.jsonl
access:
  roles:
    bench: {views: [bench_customer]}
  api_keys:
    - {id: bench, role: bench, key: bench-key-0123456789}
"""
API_KEY = "bench-key-0123456789"
FEATURES = ["bench_customer:spend_30d", "bench_customer:orders_30d", "bench_customer:country"]
COUNTRIES = ["United Kingdom", "France", "Germany", "EIRE", "Spain", "Netherlands"]
EntityRow = Callable[[int], dict[str, Any]]


def customer_row(i: int) -> dict[str, Any]:
    """The entity row of the ``i``-th synthetic customer of ``bench_customer``."""
    return {"customer_id": f"c{i}"}


def percentiles(samples: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


def make_conf(root: Path, view_yaml: str = VIEW_YAML, serving_yaml: str = SERVING_YAML) -> Path:
    """A conf directory under ``root`` with one feature view file and ``serving.yaml``."""
    conf = root / "conf"
    (conf / "env").mkdir(parents=True)
    (conf / "features").mkdir()
    (conf / "base.yaml").write_text("{}\n", encoding="utf-8")
    (conf / "env" / "local.yaml").write_text("{}\n", encoding="utf-8")
    (conf / "features" / "bench.yaml").write_text(view_yaml, encoding="utf-8")
    (conf / "serving.yaml").write_text(serving_yaml, encoding="utf-8")
    return conf


def fill_store(store: OnlineStore, entities: int, batch: int) -> dict[str, float]:
    rng = random.Random(42)
    now = datetime.now(timezone.utc)

    def rows(at: datetime) -> Any:
        for i in range(entities):
            payload = json.dumps(
                {
                    "spend_30d": round(rng.uniform(0, 5000), 2),
                    "orders_30d": rng.randint(0, 40),
                    "country": COUNTRIES[i % len(COUNTRIES)],
                }
            )
            yield encode_entity_key([f"c{i}"]), to_micros(at), payload

    started = time.perf_counter()
    written = sum(
        store.write_rows("bench_customer", b)
        for b in iter_batches(rows(now - timedelta(hours=1)), batch)
    )
    write_s = time.perf_counter() - started
    started = time.perf_counter()
    refused_written = sum(
        store.write_rows("bench_customer", b)
        for b in iter_batches(rows(now - timedelta(days=1)), batch)
    )
    stale_s = time.perf_counter() - started
    assert written == entities, f"wrote {written} of {entities}"
    assert refused_written == 0, "older rows replaced newer ones"
    return {"write_rows_per_s": entities / write_s, "older_rows_refused_per_s": entities / stale_s}


def in_process(
    service: OnlineFeatureService,
    entities: int,
    lookups: int,
    batch: int,
    *,
    features: Sequence[str] = FEATURES,
    entity: EntityRow = customer_row,
) -> dict[str, float]:
    """Lookups of ``batch`` random entities through a held service; p50/p99 and lookups/s."""
    rng = random.Random(1)
    latencies = []
    for _ in range(lookups):
        request = [entity(rng.randrange(entities)) for _ in range(batch)]
        started = time.perf_counter()
        result = service.get(request, features)
        latencies.append(time.perf_counter() - started)
        assert result.values[0][features[0]].status == "ok"
    p50, p99 = percentiles(latencies)
    return {"p50_ms": p50, "p99_ms": p99, "lookups_per_s": lookups / sum(latencies)}


def public_api(
    settings: Any,
    entities: int,
    lookups: int,
    batch: int,
    *,
    features: Sequence[str] = FEATURES,
    entity: EntityRow = customer_row,
) -> dict[str, float]:
    """``get_online_features`` (the public function, settings given) timed like in_process."""
    rng = random.Random(1)
    get_online_features([entity(0)], features, settings=settings)  # first call
    latencies = []
    for _ in range(lookups):
        request = [entity(rng.randrange(entities)) for _ in range(batch)]
        started = time.perf_counter()
        records = get_online_features(request, features, settings=settings)
        latencies.append(time.perf_counter() - started)
        assert records[0]["values"][features[0]]["status"] == "ok"
    p50, p99 = percentiles(latencies)
    return {"p50_ms": p50, "p99_ms": p99, "lookups_per_s": lookups / sum(latencies)}


def start_serve(
    conf: Path, root: Path, env: dict[str, str], workers: int = 1
) -> tuple[subprocess.Popen, str]:
    """Start the real ``serve`` job with ``workers`` uvicorn workers; its process and URL."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(PROJECT / "jobs" / "serve.py"),
            "--conf-dir",
            str(conf),
            "--conf",
            f"lakehouse.root={root}",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            detail = process.stderr.read().decode() if process.stderr else ""
            raise RuntimeError(f"serve exited: {detail}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("serve did not start within 60 s")
        time.sleep(0.2)


def over_http(url: str, entities: int, requests: int, clients: int, batch: int) -> dict[str, float]:
    def worker(seed: int, count: int) -> tuple[list[float], int]:
        rng = random.Random(seed)
        latencies, errors = [], 0
        with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": API_KEY}) as client:
            for _ in range(count):
                body = {
                    "entities": [
                        {"customer_id": f"c{rng.randrange(entities)}"} for _ in range(batch)
                    ],
                    "features": FEATURES,
                }
                started = time.perf_counter()
                try:
                    response = client.post("/features", json=body)
                    ok = response.status_code == 200 and all(
                        v["status"] == "ok"
                        for r in response.json()["results"]
                        for v in r["values"].values()
                    )
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += 0 if ok else 1
        return latencies, errors

    share = [requests // clients + (1 if i < requests % clients else 0) for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        parts = list(pool.map(worker, range(clients), share))
    wall = time.perf_counter() - started
    latencies = [x for part, _ in parts for x in part]
    p50, p99 = percentiles(latencies)
    return {
        "requests": len(latencies),
        "errors": sum(e for _, e in parts),
        "p50_ms": p50,
        "p99_ms": p99,
        "req_per_s": len(latencies) / wall,
    }


def materialize_runs(store: OnlineStore, entities: int, days: int, work: Path) -> dict[str, Any]:
    """Full then incremental materialisation of a synthetic daily source (Spark, delta-rs)."""
    from featurelake.core.config import LakehouseSettings, Settings, SparkSettings
    from featurelake.core.session import build_spark_session
    from featurelake.delta import DeltaTables
    from featurelake.feature_store.materialize import materialize_view
    from pyspark.sql import functions as F

    # Executors run this interpreter (the one with featurelake), as spark-submit.sh arranges.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = build_spark_session(
        "bench-online",
        SparkSettings(
            master="local[2]",
            shuffle_partitions=4,
            log_level="ERROR",
            conf={"spark.ui.showConsoleProgress": "false"},
        ),
    )
    settings = Settings(lakehouse=LakehouseSettings(root=str(work / "lake")))
    view = next(iter(load_feature_views_from([work / "conf" / "features" / "bench.yaml"]).values()))
    tables = DeltaTables(spark, "delta-rs")
    path = view.source.path(settings)
    start = datetime(2024, 1, 1, tzinfo=timezone.utc)

    def daily(first_day: int, n_days: int) -> Any:
        return (
            spark.range(entities * n_days)
            .select(
                (F.col("id") % entities).alias("e"), (F.col("id") / entities).cast("int").alias("d")
            )
            .select(
                F.concat(F.lit("c"), F.col("e").cast("string")).alias("customer_id"),
                (F.lit(start) + F.make_interval(days=F.col("d") + first_day)).alias("as_of_ts"),
                (F.rand(7) * 5000).alias("spend_30d"),
                (F.rand(8) * 40).cast("long").alias("orders_30d"),
                F.lit("United Kingdom").alias("country"),
            )
        )

    tables.write(daily(0, days), path, mode="overwrite")
    out: dict[str, Any] = {"source_rows": entities * days}
    started = time.perf_counter()
    full = materialize_view(tables, settings, view, store, full=True)
    out["full_s"] = time.perf_counter() - started
    out["full_entities"] = full.entities_written
    changed = max(1, entities // 10)
    tables.write(
        daily(days, 1).where(F.expr(f"cast(substr(customer_id, 2) as int) < {changed}")),
        path,
        mode="append",
    )
    started = time.perf_counter()
    incremental = materialize_view(tables, settings, view, store)
    out["incremental_s"] = time.perf_counter() - started
    out["incremental_mode"] = incremental.mode
    out["incremental_offered"] = incremental.entities_offered
    out["incremental_written"] = incremental.entities_written
    return out


def run_store(kind: str, args: argparse.Namespace, work: Path, stack: ExitStack) -> dict[str, Any]:
    root = work / kind / "lake"
    conf = make_conf(work / kind)
    env = dict(os.environ, FEATURELAKE_ONLINE_STORE=kind)
    if kind == "redis":
        url = stack.enter_context(running_redis_server(work / kind / "redis"))
        env["FEATURELAKE_REDIS_URL"] = url
        store: OnlineStore = RedisOnlineStore(url, key_prefix="bench")
    else:
        store = SqliteOnlineStore(root / "online" / "features.db")
    views = load_feature_views_from([conf / "features" / "bench.yaml"])
    result: dict[str, Any] = {"store": kind, "entities": args.entities}
    if args.materialize:
        # First: its rows are dated 2024, so the fresher rows written next replace them.
        result["materialize"] = materialize_runs(store, args.materialize, args.days, work / kind)
    result["write"] = fill_store(store, args.entities, 1000)
    result["in_process"] = in_process(
        OnlineFeatureService(views, store), args.entities, args.lookups, args.batch
    )
    store.close()
    # The public function reads conf/serving.yaml, whose store type and URL come from these.
    names = ("FEATURELAKE_ONLINE_STORE", "FEATURELAKE_REDIS_URL")
    previous = {k: os.environ.get(k) for k in names}
    os.environ.update({k: v for k, v in env.items() if k in names})
    try:
        settings = load_settings(conf, "local", [f"lakehouse.root={root}"])
        result["public_api"] = public_api(settings, args.entities, args.lookups, args.batch)
    finally:
        clear_online_cache()
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    process, url = start_serve(conf, root, env)
    try:
        over_http(url, args.entities, min(500, args.requests), args.clients, args.batch)  # warm-up
        result["http"] = over_http(url, args.entities, args.requests, args.clients, args.batch)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=20_000, help="in-process lookups")
    parser.add_argument("--requests", type=int, default=20_000, help="HTTP requests")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients")
    parser.add_argument("--batch", type=int, default=1, help="entities per lookup / request")
    parser.add_argument(
        "--materialize",
        type=int,
        default=0,
        metavar="N",
        help="also time materialisation of N entities x --days rows (Spark)",
    )
    parser.add_argument(
        "--days", type=int, default=10, help="daily rows per entity (--materialize)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per store")
    args = parser.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    if "redis" in stores and shutil.which("redis-server") is None:
        print("redis-server not installed (bin/ensure-redis.sh); skipping Redis", file=sys.stderr)
        stores.remove("redis")
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="featurelake-bench-online-") as tmp,
        ExitStack() as stack,
    ):
        for kind in stores:
            result = run_store(kind, args, Path(tmp), stack)
            results.append(result)
            report(result, args)
    return 0 if all(r["http"]["errors"] == 0 for r in results) else 1


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    """Print one store's results (a line of JSON with --json)."""
    if args.json:
        print(json.dumps(r), flush=True)
        return
    w, p, h = r["write"], r["in_process"], r["http"]
    print(f"[{r['store']}] {r['entities']:,} entities x 3 features, {args.batch} entity/lookup")
    print(
        f"  write      {w['write_rows_per_s']:>10,.0f} rows/s   "
        f"(older rows refused: {w['older_rows_refused_per_s']:,.0f} rows/s)"
    )
    print(
        f"  in-process p50 {p['p50_ms']:.3f} ms  p99 {p['p99_ms']:.3f} ms  "
        f"{p['lookups_per_s']:,.0f} lookups/s ({args.lookups:,} lookups)"
    )
    g = r["public_api"]
    print(
        f"  get_online_features p50 {g['p50_ms']:.3f} ms  p99 {g['p99_ms']:.3f} ms  "
        f"{g['lookups_per_s']:,.0f} lookups/s; p50 ratio to the held service "
        f"{g['p50_ms'] / p['p50_ms']:.2f}x (target <= 1.5x)"
    )
    print(
        f"  HTTP       p50 {h['p50_ms']:.2f} ms  p99 {h['p99_ms']:.2f} ms  "
        f"{h['req_per_s']:,.0f} req/s  {h['requests']:,} requests, {h['errors']} errors "
        f"({args.clients} clients)"
    )
    m = r.get("materialize")
    if m:
        print(
            f"  materialize full {m['source_rows']:,} source rows -> {m['full_entities']:,} "
            f"entities in {m['full_s']:.1f} s; {m['incremental_mode']} after +1 day for "
            f"{m['incremental_offered']:,} entities: {m['incremental_s']:.1f} s "
            f"({m['incremental_written']:,} written)"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
