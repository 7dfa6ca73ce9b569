"""A JDBC source's initial load into bronze against PostgreSQL's own ``COPY ... TO``.

    .venv/bin/python bench/bench_jdbc.py [--rows 1000000] [--partitions 4] [--repeat 1]
        [--warmup-rows 20000]

A private PostgreSQL server (tests/postgres_server.py; ``bin/ensure-postgres.sh`` installs it)
gets a table of ``--rows`` orders (id, customer, amount, updated_at), analysed and vacuumed
before any timing, and a warm-up table of ``--warmup-rows`` rows that the bronze job loads once,
untimed, so that the timed runs do not measure the session's first job (class loading, the
JIT). Then, ``--repeat`` times, each side going first in turn:

(a) **bronze**: the ``bronze`` job's initial load of the table (a ``jdbc`` source with the
    cursor ``updated_at``, read as ``--partitions`` parallel queries split on ``id``; 1: one
    query) into a fresh lakehouse, through ``featurelake.core.runner.run_job`` in one warm
    session: planning query, Spark's JDBC reader, lineage, one Delta commit, the ledger entry;
(b) **copy**: ``psql -c "COPY (SELECT the same columns FROM the table) TO STDOUT"`` into a
    local file: the database's fastest export of the same rows, as text.

Printed: every run's seconds, the median per side, rows/s and the ratio bronze/copy. The
bronze table's row count is checked against the table's. After the last initial load, three
incremental runs follow, each after 5,000 inserts and 1,000 updates (a later ``updated_at``):
bronze must then hold every row version exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "tests"))

from featurelake.core.config import DeltaSettings, SparkSettings  # noqa: E402
from featurelake.core.runner import run_job  # noqa: E402
from featurelake.core.session import build_spark_session  # noqa: E402
from featurelake.delta import DeltaTables  # noqa: E402
from featurelake.jobs import load_job  # noqa: E402
from featurelake.lakehouse.connectors import POSTGRESQL_DRIVER_PACKAGE  # noqa: E402
from postgres_server import PostgresServer, running_postgres_server  # noqa: E402

TABLE, WARMUP_TABLE = "bench_orders", "bench_warmup"
COLUMNS = ("id", "customer", "amount", "updated_at")
USER_ENV, PASSWORD_ENV = "FL_BENCH_PG_USER", "FL_BENCH_PG_PASSWORD"


def create_orders(pg: PostgresServer, table: str, rows: int) -> None:
    """The table: ids 1..rows, 97 customers, amounts, one update time per second."""
    pg.sql(
        f"create table {table} (id bigint primary key, customer text, amount numeric(10, 2), "
        "updated_at timestamp not null);"
        f"insert into {table} select i, 'c' || (i % 97), (i % 1000) / 4.0, "
        f"timestamp '2024-01-01' + i * interval '1 second' from generate_series(1, {rows}) i;"
        f"vacuum analyze {table};",
        timeout_s=3600,
    )


def write_conf(work: Path, pg: PostgresServer, table: str, partitions: int) -> Path:
    """A copy of conf/ whose only source is ``table``."""
    conf = work / f"conf-{table}"
    shutil.copytree(PROJECT / "conf", conf)
    for declaration in (conf / "sources").glob("*.yaml"):
        declaration.unlink()
    (conf / "monitoring.yaml").unlink()  # it watches the sources removed above
    jdbc: dict[str, object] = {
        "url": pg.jdbc_url,
        "table": f"public.{table}",
        "user_env": USER_ENV,
        "password_env": PASSWORD_ENV,
        "cursor": "updated_at",
    }
    if partitions > 1:
        jdbc["partitioning"] = {"column": "id", "num_partitions": partitions}
    declaration = {"format": "jdbc", "jdbc": jdbc, "columns": [{"name": c} for c in COLUMNS]}
    (conf / "sources" / "orders_db.yaml").write_text(json.dumps(declaration))
    return conf


def time_bronze(spark, conf: Path, lake: Path) -> float:
    """Seconds of the bronze job's initial load into a fresh lakehouse ``lake``."""
    bronze = load_job("bronze")
    argv = ["--conf-dir", str(conf), "--conf", f"lakehouse.root={lake}", "--source", "orders_db"]
    started = time.perf_counter()
    code = run_job(
        "bronze", bronze.main, argv=argv, add_arguments=bronze.add_arguments, spark=spark
    )
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"the bronze job failed with exit code {code}")
    return seconds


def time_copy(pg: PostgresServer, target: Path) -> float:
    """Seconds of ``COPY (SELECT the columns) TO STDOUT`` into ``target``."""
    query = f"COPY (SELECT {', '.join(COLUMNS)} FROM {TABLE}) TO STDOUT"
    started = time.perf_counter()
    with open(target, "wb") as out:
        subprocess.run(
            [pg.psql_binary, "-X", "-h", pg.host, "-p", str(pg.port), "-U", pg.user,
             "-d", pg.database, "-c", query],
            env={**os.environ, "PGPASSWORD": pg.password},
            stdout=out,
            check=True,
        )  # fmt: skip
    return time.perf_counter() - started


def incremental_rounds(spark, pg: PostgresServer, conf: Path, lake: Path, rows: int) -> None:
    """Three rounds of inserts and updates, each followed by a bronze run on ``lake`` (which
    holds the initial load); then every row version must be in bronze exactly once."""
    inserts, updates = 5_000, 1_000
    for r in range(1, 4):
        base = f"timestamp '2030-01-01' + {r} * interval '1 day'"
        first = rows + (r - 1) * inserts + 1
        pg.sql(
            f"insert into {TABLE} select i, 'c' || (i % 97), (i % 1000) / 4.0, "
            f"{base} + i * interval '1 microsecond' "
            f"from generate_series({first}, {first + inserts - 1}) i;"
            f"update {TABLE} set amount = amount + 1, "
            f"updated_at = {base} + id * interval '1 microsecond' "
            f"where id <= {rows} and id % {rows // updates} = {r};",
            timeout_s=600,
        )
        seconds = time_bronze(spark, conf, lake)
        print(f"incremental run {r}: {inserts:,} inserts and {updates:,} updates, {seconds:.2f} s")
    bronze = DeltaTables(spark).read(str(lake / "bronze" / "orders_db"), record=False)
    expected = rows + 3 * (inserts + updates)
    versions = bronze.select("id", "updated_at").distinct().count()
    total = bronze.count()
    print(f"after 3 incremental runs: {total:,} rows, {versions:,} distinct row versions")
    if (total, versions) != (expected, expected):
        raise SystemExit(f"bronze holds {total} rows / {versions} versions, not {expected}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--warmup-rows", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-jdbc-"))
    # Its own folder: as root the server runs as the postgres user, who cannot enter ``work``.
    cluster = tempfile.mkdtemp(prefix="bench-jdbc-postgres-")
    try:
        with running_postgres_server(cluster) as pg:
            started = time.perf_counter()
            create_orders(pg, TABLE, args.rows)
            print(f"table of {args.rows:,} rows created in {time.perf_counter() - started:.1f} s")
            create_orders(pg, WARMUP_TABLE, args.warmup_rows)
            os.environ[USER_ENV], os.environ[PASSWORD_ENV] = pg.user, pg.password
            conf = write_conf(work, pg, TABLE, args.partitions)
            spark = build_spark_session(
                "bench-jdbc",
                SparkSettings(
                    master="local[*]",
                    shuffle_partitions=8,
                    conf={"spark.jars.packages": POSTGRESQL_DRIVER_PACKAGE},
                ),
                DeltaSettings(),
            )
            warmup = time_bronze(
                spark, write_conf(work, pg, WARMUP_TABLE, args.partitions), work / "lake-warmup"
            )
            print(f"warm-up: bronze of {args.warmup_rows:,} rows {warmup:.2f} s (not compared)")
            times: dict[str, list[float]] = {"bronze": [], "copy": []}
            for i in range(args.repeat):
                order = ["bronze", "copy"] if i % 2 == 0 else ["copy", "bronze"]
                for side in order:
                    if side == "bronze":
                        lake = work / f"lake-{i}"
                        seconds = time_bronze(spark, conf, lake)
                        table = str(lake / "bronze" / "orders_db")
                        landed = DeltaTables(spark).read(table, record=False).count()
                        if landed != args.rows:
                            raise SystemExit(f"bronze holds {landed} rows, not {args.rows}")
                        if i == args.repeat - 1:
                            incremental_rounds(spark, pg, conf, lake, args.rows)
                        shutil.rmtree(lake)
                    else:
                        target = work / "copy.txt"
                        seconds = time_copy(pg, target)
                        target.unlink()
                    times[side].append(seconds)
                    print(f"run {i + 1}: {side:6s} {seconds:8.2f} s")
            medians = {side: statistics.median(values) for side, values in times.items()}
            for side, seconds in medians.items():
                print(f"median {side:6s} {seconds:8.2f} s  {args.rows / seconds:12,.0f} rows/s")
            print(f"ratio bronze/copy: {medians['bronze'] / medians['copy']:.2f}x")
            spark.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(cluster, ignore_errors=True)


if __name__ == "__main__":
    main()
