"""Feast 0.67 against featurelake on the same data: point-in-time retrieval and HTTP serving.

    .venv/bin/python bench/bench_feast.py --entity-rows 100000 1000000 --entities 10000 \\
        --days 90 --ttl-days 7 --http-seconds 30 --concurrency 8 32 --workers 2 [--json]
        [--feast-python /path/to/venv/bin/python]

Feast runs in its own venv, as a subprocess (``bench/feast_side.py``, which imports nothing of
featurelake): ``--feast-python`` names its interpreter; without it the bench uses
``.cache/feast-venv`` (git-ignored), creating it with ``pip install feast==0.67.0`` on first
use. Everything else runs in this interpreter (featurelake's).

**Data** (one copy, read by both sides): the feature rows of bench_pit.py (``--entities`` x
``--days`` daily rows, features ``f1`` double, ``f2`` long, ``f3`` double, key ``entity_id``),
and per ``--entity-rows`` scale its entity rows (``row``, ``entity_id`` - 1% unknown - and a
random microsecond time ``ts`` over the same days), each one Parquet file written by Spark
(timestamps as UTC microseconds). For serving, the latest feature row of each entity,
re-stamped one hour before the run (so the TTL, enforced on read by both, keeps every row):
``latest.parquet``.

**Point in time.** featurelake: ``as_of_join`` (its default method without a known-time
filter, the sort-merge) of the entity rows with the feature rows, TTL ``--ttl-days``, in a
``local[*]`` Spark session, the result written to Parquet. Feast: ``get_historical_features``
of the feature view ``bench_pit`` (a ``FileSource`` on the same file, the same TTL) with the
default offline store of 0.67 (``dask``: ``DaskOfflineStore``), ``to_df()``, written to
Parquet with pandas. Each side is timed from the entity-row file to the result file, after an
untimed warm-up on 20,000 entity rows (fewer when every ``--entity-rows`` is smaller); Spark's
session start and Feast's import and ``apply`` are not. Spark is stopped before Feast runs,
so the two never share the machine; Feast runs each scale in a fresh process (a failure, such
as running out of memory, is reported for that scale and the bench goes on). The results are
compared row for row on ``row``: rows only one side returns, rows with values on one side
only, and rows where both have values that differ (exact equality). The TTL boundaries differ
by one instant (featurelake keeps ``t - ttl < event_time <= t``, Feast
``t - ttl <= event_time <= t``); with random microsecond entity times and daily feature rows no
row falls on it. Feast's dask store would also collapse entity rows with the same key and time
into one (random times make none here).

**Online.** featurelake: the 3-feature view ``bench_online`` (same TTL) in its SQLite online
store, filled with ``latest.parquet`` through the store's write path (as bench_online.py fills
it); Feast: ``materialize`` of its view ``bench_online`` (a ``FileSource`` on the same file)
into its SQLite online store. In process: bench_online.py's lookups through a held
``OnlineFeatureService`` and through the public ``get_online_features`` (target: p50 within
1.5x of the held service), and Feast's ``FeatureStore.get_online_features`` beside them. Then
both servers run at once, each idle while the other is measured:

- featurelake: the real ``serve`` job with ``--workers N`` (jobs/serve.py: ``uvicorn.run``
  with N worker processes, uvloop and httptools, ``access_log=False``; uvicorn recycles no
  worker unless ``limit_max_requests`` is set, which ``serve`` never does; the audit log line
  per request stays on, as shipped); ``POST /features`` with an API key;
- Feast: ``feast serve`` (a gunicorn arbiter with N ``uvicorn_worker.UvicornWorker`` workers;
  uvloop and httptools are among Feast's dependencies) with ``--workers N --max-requests 0
  --max-requests-jitter 0 --no-access-log`` (``--max-requests`` defaults to 1000: each worker
  would restart every ~1000 requests; 0 turns that off). ``--keep-alive-timeout`` (30 s, longer
  than any pause of a connection here) and ``--registry_ttl_sec`` (60 s: a registry re-read in
  the background) stay at their defaults; ``POST /get-online-features``.

Before the load, ``--compare-keys`` keys (1% unknown) are asked of both servers and their
values compared with each other and with ``latest.parquet``.

**HTTP load** (``bench/_http_load.py``, in its own process): ``--concurrency`` keep-alive
connections, each with one single-entity request at a time on random keys; the requests started
in ``--http-seconds`` after ``--http-warmup-seconds`` on the same connections count. For each
concurrency, featurelake then Feast. Per side: requests/s, p50, p99, errors (a transport error,
a status other than 200, or a value not ``ok`` / not ``PRESENT``), the servers' CPU milliseconds
per request, and the load per worker: requests (each connection traced through ``/proc`` to the
worker process holding it) and CPU seconds (``/proc/<pid>/stat``). A keep-alive connection stays
with the worker that accepted it, and both servers' workers share one listening socket: every
idle worker wakes for a new connection and the first to run accepts all that are waiting, so
connections opened together often all land on one worker (seen on both sides: 8 of 8). The
generator therefore re-opens connections until each worker holds an equal share (``connections
per worker`` and the number re-opened are reported); ``--no-balance`` keeps the kernel's
placement. Requests per worker can still differ when the workers get unequal CPU (a loaded
machine). Whether the generator is the bottleneck: before the runs it drives a server that
answers at once (``_http_load.py canned``) at the highest concurrency, which gives its ceiling,
and every run reports the generator's CPU time per second of wall time; the servers' rates
should sit far below the ceiling and the generator well below one core. On a 2-core machine the
generator's CPU is taken from the servers' (alike for both).

Exit status 1 when any request failed, Feast failed at a scale, or any compared value
differed. Figures and their commands go in docs/PERFORMANCE.md; the targets (issue 34 d) are
printed beside each figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
PROJECT = BENCH.parent
sys.path.insert(0, str(PROJECT / "tests"))
sys.path.insert(0, str(BENCH))

import bench_online  # noqa: E402
from bench_pit import entity_rows, feature_rows, jvm_peak_rss_mb  # noqa: E402
from redis_server import free_port  # noqa: E402

FEAST_VERSION = "0.67.0"
FEATURES = ["f1", "f2", "f3"]
VIEW = "bench_online"
REFS = [f"{VIEW}:{f}" for f in FEATURES]
API_KEY = "bench-feast-key-0123456789"
WARMUP_ROWS = 20_000
# Request bodies of one entity; _http_load.py puts a random key in place of %d.
REQUEST_BODIES = {
    "featurelake": '{"entities": [{"entity_id": %d}], "features": ' + json.dumps(REFS) + "}",
    "feast": '{"features": ' + json.dumps(REFS) + ', "entities": {"entity_id": [%d]}}',
    "canned": '{"entity_id": %d}',
}
SERVING_YAML = f"""
online_store: {{type: sqlite, sqlite_path: online/features.db}}
server:
  audit_log: ops/audit.jsonl
access:
  roles:
    bench: {{views: [{VIEW}]}}
  api_keys:
    - {{id: bench, role: bench, key: {API_KEY}}}
"""


def say(message: str) -> None:
    """Progress on stderr (the results go to stdout)."""
    print(f"bench_feast: {message}", file=sys.stderr, flush=True)


def view_yaml(ttl_seconds: int) -> str:
    return f"""
feature_views:
  - name: {VIEW}
    entity: entity
    join_keys: [entity_id]
    source: {{layer: gold, table: bench_latest}}
    event_timestamp_column: event_ts
    ttl: {ttl_seconds}s
    features:
      - {{name: f1, dtype: double}}
      - {{name: f2, dtype: long}}
      - {{name: f3, dtype: double}}
"""


def entity_row(i: int) -> dict[str, Any]:
    return {"entity_id": i}


# --- Feast's venv ------------------------------------------------------------------------


def feast_python(given: str | None) -> Path:
    """The interpreter of a venv with Feast; ``.cache/feast-venv`` is made on first use."""
    if given:
        python = Path(given)
    else:
        venv = PROJECT / ".cache" / "feast-venv"
        python = venv / "bin" / "python"
        if _feast_version(python) is None:
            say(
                f"creating {venv} with feast=={FEAST_VERSION} (first use: python -m venv, "
                "pip install; a few minutes)"
            )
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", f"feast=={FEAST_VERSION}"],
                check=True,
            )
    version = _feast_version(python)
    if version is None:
        raise SystemExit(f"bench_feast: {python} cannot import feast")
    if version != FEAST_VERSION:
        say(f"warning: {python} has feast {version}, not {FEAST_VERSION}")
    return python


def _feast_version(python: Path) -> str | None:
    if not python.exists():
        return None
    done = subprocess.run(
        [str(python), "-c", "import feast; print(feast.__version__)"],
        capture_output=True,
        text=True,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def run_feast(python: Path, *args: str) -> dict[str, Any]:
    """Run a feast_side.py command; its JSON answer (Feast's output passes to stderr)."""
    done = subprocess.run(
        [str(python), str(BENCH / "feast_side.py"), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"feast_side.py {args[0]} exited with {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- data and featurelake's point-in-time side (Spark) -----------------------------------


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr meanwhile: the JVM started then prints its warnings on
    the stdout it inherits, which must hold only the results (``--json``)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def write_single_parquet(df: Any, path: Path) -> Path:
    """``df`` as one Parquet file (so that both sides read exactly the same file)."""
    df.coalesce(1).write.mode("overwrite").parquet(str(path))
    return next(path.glob("part-*.parquet"))


def spark_side(args: argparse.Namespace, work: Path, ttl: timedelta) -> dict[str, Any]:
    """Write the data; time featurelake's as_of_join at each scale. Stops Spark when done."""
    from featurelake.core.config import SparkSettings
    from featurelake.core.session import build_spark_session
    from featurelake.feature_store.offline import as_of_join
    from pyspark.sql import functions as F

    spark = build_spark_session(
        "bench-feast",
        SparkSettings(
            master="local[*]",
            shuffle_partitions=args.shuffle_partitions,
            conf={
                "spark.driver.memory": args.driver_memory,
                "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
                "spark.ui.showConsoleProgress": "false",
            },
        ),
    )
    try:
        files: dict[str, Any] = {}
        files["features"] = write_single_parquet(
            feature_rows(spark, args.entities, args.days), work / "features"
        )
        features = spark.read.parquet(str(files["features"]))
        stamp = int(time.time()) - 3600
        latest = (
            features.groupBy("entity_id")
            .agg(F.max_by(F.struct(*FEATURES), "event_ts").alias("v"))
            .select("entity_id", F.timestamp_seconds(F.lit(stamp)).alias("event_ts"), "v.*")
        )
        files["latest"] = write_single_parquet(latest, work / "latest")
        files["warmup"] = write_single_parquet(
            entity_rows(spark, min(WARMUP_ROWS, *args.entity_rows), args.entities, args.days),
            work / "entities-warmup",
        )
        files["entities"] = {
            rows: write_single_parquet(
                entity_rows(spark, rows, args.entities, args.days), work / f"entities-{rows}"
            )
            for rows in args.entity_rows
        }
        say(
            f"data: {args.entities:,} entities x {args.days} days = "
            f"{args.entities * args.days:,} feature rows; entity rows {args.entity_rows}"
        )

        def retrieve(entity_file: Path, out: Path) -> float:
            started = time.perf_counter()
            as_of_join(
                spark.read.parquet(str(entity_file)),
                spark.read.parquet(str(files["features"])),
                join_keys=["entity_id"],
                entity_timestamp_column="ts",
                event_timestamp_column="event_ts",
                feature_columns=FEATURES,
                ttl=ttl,
            ).write.mode("overwrite").parquet(str(out))
            return time.perf_counter() - started

        retrieve(files["warmup"], work / "featurelake-warmup")
        seconds = {}
        for rows, entity_file in files["entities"].items():
            seconds[rows] = retrieve(entity_file, work / f"featurelake-pit-{rows}")
            say(f"featurelake as_of_join, {rows:,} entity rows: {seconds[rows]:.2f} s")
        files["featurelake_seconds"] = seconds
        files["cores"] = spark.sparkContext.defaultParallelism
        files["jvm_peak_mb"] = jvm_peak_rss_mb(spark)
        return files
    finally:
        spark.stop()


def point_in_time(
    python: Path, work: Path, files: dict[str, Any], rows: int, offline_store: str
) -> dict[str, Any]:
    """Feast's retrieval at one scale (its own process: a failure, such as running out of
    memory, costs that scale only), beside featurelake's, and the row-for-row comparison."""
    say(f"Feast get_historical_features ({offline_store}), {rows:,} entity rows")
    out = work / f"feast-pit-{rows}.parquet"
    ours = files["featurelake_seconds"][rows]
    result: dict[str, Any] = {"entity_rows": rows, "featurelake_s": ours}
    try:
        detail = run_feast(
            python,
            "pit",
            "--repo",
            str(work / "feast_repo"),
            "--warmup",
            str(files["warmup"]),
            "--entities",
            str(files["entities"][rows]),
            "--out",
            str(out),
        )
    except RuntimeError as exc:
        say(f"Feast failed at {rows:,} entity rows: {exc}")
        return result | {"feast_s": None, "speedup": None, "feast_error": str(exc)}
    say(f"Feast {rows:,} entity rows: {detail['total_s']:.2f} s")
    return result | {
        "feast_s": detail["total_s"],
        "speedup": detail["total_s"] / ours,
        "feast_detail": detail,
        "compare": compare_pit(work / f"featurelake-pit-{rows}", out),
    }


def compare_pit(ours_path: Path, theirs_path: Path) -> dict[str, int]:
    """Row-for-row comparison of two point-in-time results on ``row``."""
    import numpy as np
    import pyarrow.parquet as pq

    columns = ["row", *FEATURES]
    ours = pq.read_table(ours_path, columns=columns).to_pandas()
    theirs = pq.read_table(theirs_path, columns=columns).to_pandas()
    both = ours.merge(theirs, on="row", how="outer", suffixes=("_fl", "_feast"), indicator=True)
    matched = both[both["_merge"] == "both"]
    a = matched[[f"{f}_fl" for f in FEATURES]].to_numpy(dtype=float, na_value=np.nan)
    b = matched[[f"{f}_feast" for f in FEATURES]].to_numpy(dtype=float, na_value=np.nan)
    a_has, b_has = ~np.isnan(a).all(axis=1), ~np.isnan(b).all(axis=1)
    both_have = a_has & b_has
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return {
        "rows_featurelake": len(ours),
        "rows_feast": len(theirs),
        "duplicate_row_ids_featurelake": int(ours["row"].duplicated().sum()),
        "duplicate_row_ids_feast": int(theirs["row"].duplicated().sum()),
        "rows_only_featurelake": int((both["_merge"] == "left_only").sum()),
        "rows_only_feast": int((both["_merge"] == "right_only").sum()),
        "rows_values_both": int(both_have.sum()),
        "rows_values_equal": int((both_have & same.all(axis=1)).sum()),
        "rows_values_differ": int((both_have & ~same.all(axis=1)).sum()),
        "rows_values_only_featurelake": int((a_has & ~b_has).sum()),
        "rows_values_only_feast": int((~a_has & b_has).sum()),
        "rows_values_neither": int((~a_has & ~b_has).sum()),
    }


# --- online: fill, in process, servers ---------------------------------------------------


def fill_featurelake_store(latest: Path, db: Path) -> dict[str, float]:
    """Write the latest rows into featurelake's SQLite store through its write path."""
    import pyarrow.parquet as pq
    from featurelake.feature_store.online import (
        SqliteOnlineStore,
        encode_entity_key,
        iter_batches,
        to_micros,
    )

    rows = pq.read_table(latest).to_pylist()
    started = time.perf_counter()
    store = SqliteOnlineStore(db)
    written = sum(
        store.write_rows(VIEW, batch)
        for batch in iter_batches(
            (
                (
                    encode_entity_key([r["entity_id"]]),
                    to_micros(r["event_ts"]),
                    json.dumps({f: r[f] for f in FEATURES}),
                )
                for r in rows
            ),
            1000,
        )
    )
    store.close()
    return {"rows": written, "seconds": time.perf_counter() - started}


def featurelake_in_process(conf: Path, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """bench_online's held-service and public get_online_features lookups on this store."""
    from featurelake.core.config import load_settings
    from featurelake.feature_store.definitions import load_feature_views_from
    from featurelake.feature_store.online import SqliteOnlineStore
    from featurelake.feature_store.online_api import OnlineFeatureService, clear_online_cache

    views = load_feature_views_from([conf / "features" / "bench.yaml"])
    store = SqliteOnlineStore(root / "online" / "features.db")
    held = bench_online.in_process(
        OnlineFeatureService(views, store),
        args.entities,
        args.lookups,
        1,
        features=REFS,
        entity=entity_row,
    )
    store.close()
    settings = load_settings(conf, "local", [f"lakehouse.root={root}"])
    try:
        public = bench_online.public_api(
            settings, args.entities, args.lookups, 1, features=REFS, entity=entity_row
        )
    finally:
        clear_online_cache()
    return {"held_service": held, "get_online_features": public}


@contextmanager
def feast_server(python: Path, repo: Path, workers: int, log: Path) -> Iterator[tuple[int, str]]:
    """``feast serve`` (tuned, see the docstring) on a free port; its pid and URL."""
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(python), str(BENCH / "feast_side.py"), "serve", "--repo", str(repo)]
            + ["--port", str(port), "--workers", str(workers)],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(process, url, log)
        yield process.pid, url
    finally:
        _stop(process)


@contextmanager
def featurelake_server(conf: Path, root: Path, workers: int) -> Iterator[tuple[int, str]]:
    """The real ``serve`` job (bench_online.start_serve) with ``workers`` workers."""
    process, url = bench_online.start_serve(conf, root, dict(os.environ), workers=workers)
    try:
        yield process.pid, url
    finally:
        _stop(process)


def _wait_healthy(process: subprocess.Popen, url: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"feast serve exited: {log.read_text()[-2000:]}")
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"feast serve did not answer /health within {timeout:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def compare_online(
    fl_url: str, feast_url: str, latest: Path, entities: int, keys: int
) -> dict[str, int]:
    """Ask both servers for the same keys (1% unknown); compare values with each other and
    with the latest rows."""
    import pyarrow.parquet as pq

    truth = {r["entity_id"]: r for r in pq.read_table(latest).to_pylist()}
    rng = random.Random(7)
    sample = [rng.randrange(int(entities * 1.01)) for _ in range(keys)]
    counts = ("keys", "both_found_equal", "both_found_differ", "both_not_found")
    out = dict.fromkeys((*counts, "only_featurelake", "only_feast", "differ_from_source"), 0)
    with (
        httpx.Client(base_url=fl_url, headers={"X-API-Key": API_KEY}, timeout=30) as fl,
        httpx.Client(base_url=feast_url, timeout=30) as feast,
    ):
        for start in range(0, len(sample), 500):
            part = sample[start : start + 500]
            ours = fl.post(
                "/features", json={"entities": [entity_row(k) for k in part], "features": REFS}
            )
            theirs = feast.post(
                "/get-online-features", json={"features": REFS, "entities": {"entity_id": part}}
            )
            ours.raise_for_status()
            theirs.raise_for_status()
            names = theirs.json()["metadata"]["feature_names"]
            columns = {n: theirs.json()["results"][i] for i, n in enumerate(names)}
            for j, (key, result) in enumerate(zip(part, ours.json()["results"], strict=True)):
                out["keys"] += 1
                values = result["values"]
                fl_found = all(values[r]["status"] == "ok" for r in REFS)
                fl_row = [values[r]["value"] for r in REFS]
                feast_found = all(columns[f]["statuses"][j] == "PRESENT" for f in FEATURES)
                feast_row = [columns[f]["values"][j] for f in FEATURES]
                if fl_found and feast_found:
                    out["both_found_equal" if fl_row == feast_row else "both_found_differ"] += 1
                elif fl_found:
                    out["only_featurelake"] += 1
                elif feast_found:
                    out["only_feast"] += 1
                else:
                    out["both_not_found"] += 1
                expected = [truth[key][f] for f in FEATURES] if key in truth else None
                for found, row in ((fl_found, fl_row), (feast_found, feast_row)):
                    if (row if found else None) != expected:
                        out["differ_from_source"] += 1
    return out


def http_load(
    url: str, path: str, server_pid: int, side: str, concurrency: int, seconds: float, args: Any
) -> dict[str, Any]:
    """One run of _http_load.py against a server; latencies summarised."""
    extra = ["--check", side if side in ("featurelake", "feast") else "any"]
    if side == "featurelake":
        extra += ["--header", f"X-API-Key: {API_KEY}"]
    with tempfile.TemporaryDirectory(prefix="bench-feast-load-") as tmp:
        out = Path(tmp) / "load.json"
        subprocess.run(
            [sys.executable, str(BENCH / "_http_load.py"), "run", "--url", f"{url}{path}"]
            + ["--body", REQUEST_BODIES[side], "--entities", str(args.entities)]
            + ["--concurrency", str(concurrency)]
            + ["--seconds", str(seconds), "--warmup-seconds", str(args.http_warmup_seconds)]
            + ["--server-pid", str(server_pid), "--out", str(out), *extra]
            + ([] if args.no_balance else ["--balance"]),
            check=True,
        )
        result = json.loads(out.read_text())
    latencies = result.pop("latencies_s")
    result["p50_ms"], result["p99_ms"] = bench_online.percentiles(latencies)
    result["max_ms"] = max(latencies) * 1000
    total = sum(w["requests"] for w in result["per_worker"].values()) or 1
    cpu = sum(w["cpu_s"] for w in result["per_worker"].values()) or 1
    for w in result["per_worker"].values():
        w["request_share"] = w["requests"] / total
        w["cpu_share"] = w["cpu_s"] / cpu
    result["server_cpu_ms_per_request"] = cpu * 1000 / max(result["requests"], 1)
    return result


@contextmanager
def canned_server() -> Iterator[tuple[int, str]]:
    port = free_port()
    answer = json.dumps(
        {
            "features": REFS,
            "results": [
                {
                    "entity": {"entity_id": 1234},
                    "values": {
                        r: {"value": 0.123456789, "event_timestamp": "2026-01-01T00:00:00Z"}
                        | {"staleness_seconds": 3600.0, "status": "ok"}
                        for r in REFS
                    },
                }
            ],
        }
    )
    process = subprocess.Popen(
        [sys.executable, str(BENCH / "_http_load.py"), "canned", "--port", str(port)]
        + ["--answer", answer]
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.post(f"http://127.0.0.1:{port}/", content=b"{}", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield process.pid, f"http://127.0.0.1:{port}"
    finally:
        _stop(process)


def serving_side(args: argparse.Namespace, work: Path, python: Path, latest: Path) -> dict:
    """Fill both online stores, compare in process, then both servers under the same load."""
    ttl_seconds = int(args.ttl_days * 86400)
    conf = bench_online.make_conf(work / "fl", view_yaml(ttl_seconds), SERVING_YAML)
    root = work / "fl" / "lake"
    out: dict[str, Any] = {
        "featurelake_fill": fill_featurelake_store(latest, root / "online" / "features.db")
    }
    out["feast_materialize"] = run_feast(
        python,
        "materialize",
        "--repo",
        str(work / "feast_repo"),
        "--entities",
        str(args.entities),
        "--lookups",
        str(args.lookups),
    )
    out["in_process"] = featurelake_in_process(conf, root, args)
    say("in-process lookups done; starting both servers")
    runs = []
    with ExitStack() as stack:
        fl_pid, fl_url = stack.enter_context(featurelake_server(conf, root, args.workers))
        feast_pid, feast_url = stack.enter_context(
            feast_server(python, work / "feast_repo", args.workers, work / "feast-serve.log")
        )
        out["values"] = compare_online(fl_url, feast_url, latest, args.entities, args.compare_keys)
        with canned_server() as (canned_pid, canned_url):
            out["generator_ceiling"] = http_load(
                canned_url,
                "/",
                canned_pid,
                "canned",
                max(args.concurrency),
                min(args.http_seconds, 3.0),
                args,
            )
        for concurrency in args.concurrency:
            run: dict[str, Any] = {"concurrency": concurrency}
            for side, url, path, pid in (
                ("featurelake", fl_url, "/features", fl_pid),
                ("feast", feast_url, "/get-online-features", feast_pid),
            ):
                run[side] = http_load(url, path, pid, side, concurrency, args.http_seconds, args)
                say(
                    f"HTTP {side} c={concurrency}: {run[side]['req_per_s']:,.0f} req/s, "
                    f"p99 {run[side]['p99_ms']:.1f} ms, {run[side]['errors']} errors"
                )
            runs.append(run)
    out["http"] = runs
    return out


# --- report -------------------------------------------------------------------------------


def report(result: dict[str, Any]) -> None:
    """The figures side by side, with the targets of issue 34 (d)."""
    c = result["config"]
    print(
        f"Feast {result['feast_version']} ({result['feast_offline_store']}, sqlite online) "
        f"against featurelake; {c['entities']:,} entities x {c['days']} days x 3 features, "
        f"TTL {c['ttl_days']:g} d; Spark local[*] ({result['cores']} cores)"
    )
    print("\nPoint-in-time retrieval (entity-row file -> result Parquet file)")
    for p in result["pit"]:
        target = 10.0 if p["entity_rows"] >= 1_000_000 else 1.0
        if p["feast_s"] is None:
            print(
                f"  {p['entity_rows']:>9,} rows  featurelake {p['featurelake_s']:8.2f} s  "
                f"Feast failed: {p['feast_error']}"
            )
            continue
        fd, cmp_ = p["feast_detail"], p["compare"]
        print(
            f"  {p['entity_rows']:>9,} rows  featurelake {p['featurelake_s']:8.2f} s  "
            f"Feast {p['feast_s']:8.2f} s (read {fd['read_s']:.2f}, retrieve "
            f"{fd['retrieve_s']:.2f}, write {fd['write_s']:.2f})  Feast/featurelake "
            f"{p['speedup']:.2f}x (target >= {target:g}x: {_yes(p['speedup'] >= target)})"
        )
        print(
            f"      rows: featurelake {cmp_['rows_featurelake']:,}, Feast {cmp_['rows_feast']:,}"
            f", only featurelake {cmp_['rows_only_featurelake']}, only Feast "
            f"{cmp_['rows_only_feast']}; values on both {cmp_['rows_values_both']:,}: equal "
            f"{cmp_['rows_values_equal']:,}, differ {cmp_['rows_values_differ']}; values only "
            f"featurelake {cmp_['rows_values_only_featurelake']}, only Feast "
            f"{cmp_['rows_values_only_feast']}, neither {cmp_['rows_values_neither']:,}"
        )
    peaks = [f"{p['feast_detail']['peak_rss_mb']:,.0f} MB" for p in result["pit"] if p["feast_s"]]
    jvm = result["featurelake_jvm_peak_mb"]
    print(
        "  peak memory: featurelake driver JVM "
        + (f"{jvm:,.0f} MB (VmHWM since start, data generation included)" if jvm else "unknown")
        + f", heap cap {c['driver_memory']}; Feast process per scale {', '.join(peaks) or '-'}"
        + " (warm-up included)"
    )
    s = result["serving"]
    held = s["in_process"]["held_service"]
    public = s["in_process"]["get_online_features"]
    fm = s["feast_materialize"]
    ratio = public["p50_ms"] / held["p50_ms"]
    print("\nOnline store and in-process lookups (one entity)")
    print(
        f"  fill: featurelake write path {s['featurelake_fill']['rows']:,} rows in "
        f"{s['featurelake_fill']['seconds']:.2f} s; Feast materialize {fm['materialize_s']:.2f} s"
    )
    print(
        f"  featurelake held service p50 {held['p50_ms']:.3f} ms, p99 {held['p99_ms']:.3f} ms; "
        f"get_online_features p50 {public['p50_ms']:.3f} ms, p99 {public['p99_ms']:.3f} ms = "
        f"{ratio:.2f}x the held service (target <= 1.5x: {_yes(ratio <= 1.5)})"
    )
    print(
        f"  Feast FeatureStore.get_online_features p50 {fm['get_online_features_p50_ms']:.3f} ms"
        f", p99 {fm['get_online_features_p99_ms']:.3f} ms"
    )
    v = s["values"]
    print(
        f"  values of {v['keys']:,} keys from both servers: equal {v['both_found_equal']:,}, "
        f"differ {v['both_found_differ']}, both not found {v['both_not_found']}, only "
        f"featurelake {v['only_featurelake']}, only Feast {v['only_feast']}; answers differing "
        f"from latest.parquet {v['differ_from_source']}"
    )
    g = s["generator_ceiling"]
    print(
        f"\nHTTP, single-entity lookups, {c['workers']} workers each, {c['http_seconds']:g} s "
        f"per run; generator ceiling (canned server, c={g['concurrency']}): "
        f"{g['req_per_s']:,.0f} req/s at {g['generator_cpu_share']:.0%} of a core"
    )
    for run in s["http"]:
        fl, fe = run["featurelake"], run["feast"]
        speedup = fl["req_per_s"] / fe["req_per_s"] if fe["req_per_s"] else float("inf")
        p99_target = (
            f" (featurelake target <= 10 ms: {_yes(fl['p99_ms'] <= 10)})"
            if run["concurrency"] == 8
            else ""
        )
        print(
            f"  c={run['concurrency']:<3} featurelake/Feast req/s {speedup:.2f}x "
            f"(target >= 1.5x: {_yes(speedup >= 1.5)}){p99_target}"
        )
        for name, r in (("featurelake", fl), ("Feast", fe)):
            spread = ", ".join(
                f"pid {pid}: {r['connections_per_worker'][pid]} conn, {w['requests']:,} req "
                f"({w['request_share']:.0%}), {w['cpu_s']:.1f} s CPU ({w['cpu_share']:.0%})"
                for pid, w in r["per_worker"].items()
            )
            print(
                f"    {name:<11} {r['req_per_s']:>8,.0f} req/s  p50 {r['p50_ms']:6.2f} ms  "
                f"p99 {r['p99_ms']:6.2f} ms  errors {r['errors']}  server CPU "
                f"{r['server_cpu_ms_per_request']:.2f} ms/request  generator "
                f"{r['generator_cpu_share']:.0%} of a core; {spread}"
                + (f"; unattributed {n}" if (n := r["unattributed_requests"]) else "")
                + f"; connections re-opened to balance {r['connections_reopened_to_balance']}"
            )


def _yes(ok: bool) -> str:
    return "yes" if ok else "NO"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entity-rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--entities", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--ttl-days", type=float, default=7.0)
    parser.add_argument("--http-seconds", type=float, default=30.0, help="measured, per run")
    parser.add_argument("--http-warmup-seconds", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument(
        "--no-balance",
        action="store_true",
        help="keep the connections where the kernel puts them (see the docstring)",
    )
    parser.add_argument("--lookups", type=int, default=5000, help="in-process lookups per kind")
    parser.add_argument("--compare-keys", type=int, default=2000, help="online keys compared")
    parser.add_argument("--feast-python", help="Python of a venv with feast (default: made)")
    parser.add_argument("--driver-memory", default="4g")
    parser.add_argument("--shuffle-partitions", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    python = feast_python(args.feast_python)
    ttl = timedelta(seconds=int(args.ttl_days * 86400))
    work = Path(tempfile.mkdtemp(prefix="bench-feast-"))
    try:
        with stdout_to_stderr():
            files = spark_side(args, work, ttl)
        feast_setup = run_feast(
            python,
            "setup",
            "--repo",
            str(work / "feast_repo"),
            "--features",
            str(files["features"]),
            "--online",
            str(files["latest"]),
            "--ttl-seconds",
            str(int(ttl.total_seconds())),
        )
        pit = [
            point_in_time(python, work, files, rows, feast_setup["offline_store"])
            for rows in files["entities"]
        ]
        result = {
            "config": {
                k: getattr(args, k)
                for k in (
                    "entity_rows",
                    "entities",
                    "days",
                    "ttl_days",
                    "http_seconds",
                    "concurrency",
                    "workers",
                    "lookups",
                    "driver_memory",
                )
            },
            "feast_version": feast_setup["feast_version"],
            "feast_offline_store": feast_setup["offline_store"],
            "cores": files["cores"],
            "featurelake_jvm_peak_mb": files["jvm_peak_mb"],
            "pit": pit,
            "serving": serving_side(args, work, python, files["latest"]),
        }
    finally:
        if args.keep:
            say(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        report(result)
    serving = result["serving"]
    failed = (
        any(r[side]["errors"] for r in serving["http"] for side in ("featurelake", "feast"))
        or any(p["feast_s"] is None for p in result["pit"])
        or any(p["compare"]["rows_values_differ"] for p in result["pit"] if "compare" in p)
        or serving["values"]["both_found_differ"]
        or serving["values"]["differ_from_source"]
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
