"""JDBC sources: a PostgreSQL table into bronze incrementally, every row version exactly once.

The database is a real PostgreSQL server started for this module (tests/postgres_server.py;
bin/ensure-postgres.sh installs it). What bronze must hold is worked out independently of the
code under test: after each run, the server's own text of every row's (id, updated_at) is
added to the set of versions that existed at a run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
from featurelake.core.errors import DataError, TransientError, UserError
from featurelake.core.runner import run_job
from featurelake.delta import DeltaTables
from featurelake.jobs import load_job
from featurelake.lakehouse.bronze.jdbc import (
    JdbcIncrement,
    increment_query,
    jdbc_failure,
    last_cursor,
    plan_query,
    sql_string_literal,
)
from featurelake.lakehouse.connectors import JdbcOptions
from featurelake.lakehouse.sources import ColumnSpec, SourceSpec
from postgres_server import postgres  # noqa: F401 - pytest fixture
from pyspark.sql import functions as F
from redis_server import free_port

ROOT = Path(__file__).resolve().parents[1]
BRONZE = load_job("bronze")
SILVER = load_job("silver")
USER_ENV, PASSWORD_ENV = "FL_TEST_PG_USER", "FL_TEST_PG_PASSWORD"
COLUMNS = ("id", "customer", "amount", "updated_at")


def _ansi(name: str) -> str:
    return f'"{name}"'


OPTIONS = JdbcOptions(
    url="jdbc:postgresql://db:5432/shop",
    table="public.orders",
    user_env=USER_ENV,
    password_env=PASSWORD_ENV,
    cursor="updated_at",
)


# --------------------------------------------------------------------------------------------
# Queries and the high-water mark (no database)
# --------------------------------------------------------------------------------------------


def test_the_increment_is_read_past_the_mark_up_to_the_planned_maximum():
    query = increment_query(
        OPTIONS,
        ["id", "amount"],
        JdbcIncrement("2024-01-01 10:00:00", "2024-01-02 00:00:00"),
        _ansi,
    )
    assert query == (
        '(SELECT "id", "amount" FROM public.orders WHERE "updated_at" IS NOT NULL AND '
        "\"updated_at\" > '2024-01-01 10:00:00' AND \"updated_at\" <= '2024-01-02 00:00:00') "
        "featurelake_increment"
    )


def test_the_first_run_plans_from_the_start_with_the_partition_bounds():
    options = JdbcOptions.model_validate(
        {**OPTIONS.model_dump(), "partitioning": {"column": "id", "num_partitions": 4}}
    )
    assert plan_query(options, None, _ansi) == (
        '(SELECT MAX("updated_at") AS featurelake_high, MIN("id") AS featurelake_partition_low, '
        'MAX("id") AS featurelake_partition_high FROM public.orders WHERE "updated_at" IS NOT '
        "NULL) featurelake_plan"
    )


def test_cursor_literals_are_quoted_and_escapes_refused():
    assert sql_string_literal("it's") == "'it''s'"
    with pytest.raises(DataError, match="cannot be written"):
        sql_string_literal("a\\b")


def test_the_mark_is_the_cursor_of_the_latest_committed_increment():
    from datetime import datetime, timezone

    def at(hour: int) -> datetime:
        return datetime(2024, 1, 1, hour, tzinfo=timezone.utc)

    ledger = [
        {"cursor_to": "9", "status": "ingested", "ingested_at": at(1), "batch_id": "a"},
        {"cursor_to": "12", "status": "ingested", "ingested_at": at(3), "batch_id": "c"},
        {"cursor_to": "10", "status": "ingested", "ingested_at": at(2), "batch_id": "b"},
        {"cursor_to": None, "status": "ingested", "ingested_at": at(4), "batch_id": "d"},
    ]
    assert last_cursor(ledger) == "12" and last_cursor([]) is None


class _Throwable:
    """Stands for a Java exception reached through py4j: class name, SQLSTATE, message."""

    def __init__(self, name: str, message: str, state: str | None = None, cause=None):
        self._name, self._message, self._state, self._cause = name, message, state, cause

    def getClass(self):  # noqa: N802 - the Java method
        return SimpleNamespace(getName=lambda: self._name)

    def getSQLState(self):  # noqa: N802
        return self._state

    def getMessage(self):  # noqa: N802
        return self._message

    def getCause(self):  # noqa: N802
        return self._cause


def _spark_error(*chain: _Throwable) -> Exception:
    for outer, inner in zip(chain, chain[1:], strict=False):
        outer._cause = inner
    error = Exception("JVM stack trace, many lines")
    error.java_exception = chain[0]  # type: ignore[attr-defined]
    return error


SPEC = SourceSpec(
    name="orders_db",
    format="jdbc",
    jdbc=OPTIONS,
    columns=tuple(ColumnSpec(name=c) for c in COLUMNS),
)


@pytest.mark.parametrize(
    ("state", "kind", "words"),
    [
        ("28P01", UserError, "refused the credentials in FL_TEST_PG_USER/FL_TEST_PG_PASSWORD"),
        ("42P01", UserError, "check jdbc.table"),
        ("08001", UserError, "cannot connect"),
        ("57P03", TransientError, "busy or restarting"),
        ("22P02", DataError, "refused the read"),
    ],
)
def test_database_refusals_become_one_line_errors_by_sqlstate(state, kind, words):
    error = jdbc_failure(
        SPEC,
        _spark_error(
            _Throwable("org.apache.spark.sql.AnalysisException", "Failed JDBC"),
            _Throwable("org.postgresql.util.PSQLException", "FATAL: no\n  Position: 3", state),
        ),
        ["s3cret"],
    )
    assert type(error) is kind
    assert words in str(error) and f"(SQLSTATE {state})" in str(error)
    assert "\n" not in str(error) and "Position" not in str(error)


def test_an_unreachable_host_names_the_root_cause_and_never_the_password():
    error = jdbc_failure(
        SPEC,
        _spark_error(
            _Throwable("org.postgresql.util.PSQLException", "attempt s3cret failed", "08001"),
            _Throwable("java.net.UnknownHostException", "db.invalid"),
        ),
        ["s3cret"],
    )
    assert str(error) == (
        "source orders_db (jdbc:postgresql://db:5432/shop, table public.orders): cannot "
        "connect: attempt *** failed (UnknownHostException: db.invalid) (SQLSTATE 08001)"
    )


def test_a_missing_driver_says_why_its_jar_could_not_be_had(monkeypatch):
    found = SimpleNamespace(ok=False, reason="https://repo1.maven.org/maven2/ is unreachable")
    monkeypatch.setattr("featurelake.core.jvm_packages.resolve_packages", lambda c: found)
    error = jdbc_failure(
        SPEC,
        _spark_error(_Throwable("java.lang.ClassNotFoundException", "org.postgresql.Driver")),
    )
    assert isinstance(error, UserError)
    assert str(error).endswith(
        "JDBC driver org.postgresql.Driver unavailable: org.postgresql:postgresql:42.7.4: "
        "https://repo1.maven.org/maven2/ is unreachable"
    )


def test_an_error_that_is_not_the_databases_is_left_alone():
    assert jdbc_failure(SPEC, ValueError("a bug")) is None


# --------------------------------------------------------------------------------------------
# The bronze job against a real PostgreSQL server
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pg(postgres, spark, monkeypatch):  # noqa: F811 - the fixture imported above
    """The server, with the credentials in the environment and the driver on the classpath."""
    try:
        spark.sparkContext._jvm.org.apache.spark.util.Utils.classForName(
            "org.postgresql.Driver", True, False
        )
    except Exception as exc:  # noqa: BLE001 - the jar could not be had: say why and skip
        pytest.skip(
            f"the PostgreSQL JDBC driver is not on the classpath ({type(exc).__name__}): it could "
            "not be fetched from Maven Central (see the jvm_packages_unavailable log line)"
        )
    monkeypatch.setenv(USER_ENV, postgres.user)
    monkeypatch.setenv(PASSWORD_ENV, postgres.password)
    return postgres


def _table_name() -> str:
    return f"orders_{uuid.uuid4().hex[:8]}"


def _create_orders(pg, table: str, n: int) -> None:
    pg.sql(
        f"create table {table} (id bigint primary key, customer text, amount numeric(10, 2), "
        "updated_at timestamp not null);"
        f"insert into {table} select i, 'c' || (i % 97), (i % 1000) / 4.0, "
        f"timestamp '2024-01-01' + i * interval '1 second' from generate_series(1, {n}) i;"
    )


def _change_orders(pg, table: str, round_: int, inserts: int, every: int) -> None:
    """Update every ``every``-th row, then insert ids after the largest.

    Each round's updated_at values are later than every earlier round's, as a cursor must be.
    """
    pg.sql(
        f"update {table} set customer = 'upd' || {round_}, amount = amount + 1, "
        f"updated_at = timestamp '2025-06-01' + {round_} * interval '1 day' + id * interval "
        f"'1 millisecond' where id % {every} = {round_};"
        f"insert into {table} select i, 'new' || {round_}, 1.25, "
        f"timestamp '2025-06-01 12:00' + {round_} * interval '1 day' + i * interval '1 second' "
        f"from generate_series((select max(id) + 1 from {table}), "
        f"(select max(id) + {inserts} from {table})) i;"
    )


def _versions(pg, table: str) -> set[tuple[str, str]]:
    """Every row's (id, updated_at) as the server writes them: the versions present now."""
    out = pg.sql(f"select id::text || '|' || updated_at::text from {table}")
    return {tuple(line.split("|")) for line in out.splitlines() if line}  # type: ignore[misc]


def _conf(tmp_path: Path, pg, table: str, **jdbc_options) -> Path:
    conf = tmp_path / "conf"
    if not conf.exists():
        shutil.copytree(ROOT / "conf", conf)
    declaration = {
        "description": "orders from the shop database (test)",
        "format": "jdbc",
        "jdbc": {
            "url": pg.jdbc_url,
            "table": f"public.{table}",
            "user_env": USER_ENV,
            "password_env": PASSWORD_ENV,
            "cursor": "updated_at",
            **jdbc_options,
        },
        "columns": [{"name": c} for c in COLUMNS],
    }
    (conf / "sources" / "orders_db.yaml").write_text(json.dumps(declaration))
    return conf


def _args(tmp_path: Path, conf: Path) -> list[str]:
    return [
        "--conf-dir", str(conf), "--conf", f"lakehouse.root={tmp_path / 'lake'}",
        "--source", "orders_db",
    ]  # fmt: skip


def _run(spark, tmp_path: Path, conf: Path) -> int:
    return run_job("bronze", BRONZE.main, argv=_args(tmp_path, conf),
                   add_arguments=BRONZE.add_arguments, spark=spark)  # fmt: skip


def _bronze_versions(spark, tmp_path: Path) -> list[tuple[str, str]]:
    bronze = DeltaTables(spark).read(str(tmp_path / "lake" / "bronze" / "orders_db"), record=False)
    return [(r["id"], r["updated_at"]) for r in bronze.select("id", "updated_at").collect()]


def _ledger(spark, tmp_path: Path) -> list:
    ledger = DeltaTables(spark).read(
        str(tmp_path / "lake" / "bronze" / "_ingested_files"), record=False
    )
    return sorted(ledger.collect(), key=lambda r: r["ingested_at"])


def test_initial_load_and_incremental_runs_hold_every_row_version_once(spark, tmp_path, pg):
    table = _table_name()
    _create_orders(pg, table, 3000)
    conf = _conf(tmp_path, pg, table, partitioning={"column": "id", "num_partitions": 3})
    expected = _versions(pg, table)
    assert _run(spark, tmp_path, conf) == 0
    for round_ in (1, 2, 3):
        _change_orders(pg, table, round_, inserts=200, every=20)
        expected |= _versions(pg, table)
        assert _run(spark, tmp_path, conf) == 0
        got = _bronze_versions(spark, tmp_path)
        assert len(got) == len(set(got)) and set(got) == expected, round_
    # rounds update ids = round (mod 20) among 3000, 3200, 3400 rows, and insert 200 each
    assert len(expected) == 3000 + 150 + 160 + 170 + 3 * 200
    ledger = _ledger(spark, tmp_path)
    assert [r["path"] for r in ledger] == [f"jdbc:public.{table}"] * 4
    assert [r["cursor_from"] for r in ledger][1:] == [r["cursor_to"] for r in ledger][:-1]
    assert ledger[0]["cursor_from"] is None and ledger[0]["rows"] == 3000
    assert ledger[-1]["cursor_to"] == max(v[1] for v in expected)
    # nothing changed: a rerun commits nothing
    table_path = str(tmp_path / "lake" / "bronze" / "orders_db")
    version = DeltaTables(spark).version(table_path)
    assert _run(spark, tmp_path, conf) == 0
    assert DeltaTables(spark).version(table_path) == version


def _killed_at(tmp_path: Path, conf: Path, commit: int) -> int:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "crash_job.py"), str(commit), "bronze",
         *_args(tmp_path, conf), "--conf", "spark.master=local[1]"],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    return done.returncode


def _failing_before_the_first_commit(monkeypatch) -> None:
    """Every table commit of this process fails (on either backend) until the patch is undone."""
    from featurelake.delta import native, rs

    def refuse(*args, **kwargs):
        raise OSError("the process died here")

    monkeypatch.setattr(rs, "commit_adds", refuse)
    monkeypatch.setattr(native.NativeBackend, "_save", refuse)


@pytest.mark.scenario  # kills child jobs and reruns them (CI runs the scenario tier)
def test_runs_dying_mid_way_then_rerun_hold_every_row_version_once(
    spark, tmp_path, pg, monkeypatch
):
    table = _table_name()
    _create_orders(pg, table, 2000)
    conf = _conf(tmp_path, pg, table)
    expected = _versions(pg, table)
    assert _run(spark, tmp_path, conf) == 0
    _change_orders(pg, table, 1, inserts=100, every=10)
    expected |= _versions(pg, table)
    # a run dying at its bronze commit lands nothing
    with monkeypatch.context() as dying:
        _failing_before_the_first_commit(dying)
        assert _run(spark, tmp_path, conf) != 0
    assert len(_bronze_versions(spark, tmp_path)) == 2000
    # a run killed between the bronze commit and the ledger's (a separate process, killed as
    # SIGKILL would): the next run completes the ledger from the bronze commit's metadata
    assert _killed_at(tmp_path, conf, 2) == 137
    assert len(_ledger(spark, tmp_path)) == 1
    assert _run(spark, tmp_path, conf) == 0
    got = _bronze_versions(spark, tmp_path)
    assert len(got) == len(set(got)) and set(got) == expected
    ledger = _ledger(spark, tmp_path)
    assert [r["rows"] for r in ledger] == [2000, 100 + 200]
    assert ledger[1]["cursor_from"] == ledger[0]["cursor_to"]


def _told(stderr: str) -> str:
    told = [line for line in stderr.splitlines() if line.startswith("featurelake bronze:")]
    assert len(told) == 1, stderr
    return told[0]


WRONG_PASSWORD = "Wr0ng-Secret-77x"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong password", "refused the credentials in FL_TEST_PG_USER/FL_TEST_PG_PASSWORD"),
        ("unknown table", 'relation "public.no_such_table" does not exist (SQLSTATE 42P01)'),
        ("unreachable host", "cannot connect: Connection to 127.0.0.1:"),
        ("unset variable", "environment variable FL_TEST_PG_PASSWORD (jdbc.password_env)"),
    ],
)
def test_database_problems_end_in_one_line_without_traceback_or_secret(
    spark, tmp_path, pg, capsys, monkeypatch, case, expected
):
    table = _table_name()
    _create_orders(pg, table, 10)
    conf = _conf(tmp_path, pg, table)
    if case == "wrong password":
        monkeypatch.setenv(PASSWORD_ENV, WRONG_PASSWORD)
    elif case == "unknown table":
        conf = _conf(tmp_path, pg, "no_such_table")
    elif case == "unreachable host":
        conf = _conf(tmp_path, pg, table, url=f"jdbc:postgresql://127.0.0.1:{free_port()}/x")
    else:
        monkeypatch.delenv(PASSWORD_ENV)
    assert _run(spark, tmp_path, conf) == 2
    stderr = capsys.readouterr().err
    told = _told(stderr)
    assert told.startswith("featurelake bronze: UserError: source orders_db") and expected in told
    logs = "".join(p.read_text() for p in (tmp_path / "lake" / "ops" / "logs").glob("*.log"))
    for text in (stderr, logs):
        assert "Traceback" not in text and "JVM stacktrace" not in text
        assert pg.password not in text and WRONG_PASSWORD not in text
    assert not (tmp_path / "lake" / "bronze" / "orders_db").exists()


def test_spark_submit_loads_the_driver_and_a_refused_login_is_one_line_without_secret(
    tmp_path, pg, monkeypatch
):
    table = _table_name()
    _create_orders(pg, table, 10)
    conf = _conf(tmp_path, pg, table)
    monkeypatch.setenv(PASSWORD_ENV, WRONG_PASSWORD)
    done = subprocess.run(
        [str(ROOT / "spark-submit.sh"), "bronze", *_args(tmp_path, conf)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-3000:]
    # the driver came from the declaration: the database itself refused the login
    assert "refused the credentials in FL_TEST_PG_USER/FL_TEST_PG_PASSWORD" in _told(output)
    assert "Traceback" not in output and WRONG_PASSWORD not in output
    assert pg.password not in output


def test_silver_reads_a_jdbc_source_through_its_table_declaration(spark, tmp_path, pg):
    table = _table_name()
    _create_orders(pg, table, 500)
    conf = _conf(tmp_path, pg, table)
    assert _run(spark, tmp_path, conf) == 0
    _change_orders(pg, table, 1, inserts=10, every=50)
    assert _run(spark, tmp_path, conf) == 0
    (conf / "tables" / "orders.yaml").write_text(
        json.dumps(
            {
                "name": "orders",
                "source": "orders_db",
                "columns": [
                    {"name": "order_id", "source": "id", "type": "long"},
                    {"name": "customer", "source": "customer", "type": "string"},
                    {"name": "amount", "source": "amount", "type": "double"},
                    {"name": "updated_at", "source": "updated_at", "type": "timestamp",
                     "format": "yyyy-MM-dd HH:mm:ss[.SSSSSS]"},
                ],
                "dedup": {"key": ["order_id"], "latest_by": ["updated_at"]},
                "expectations": [{"type": "not_null", "column": "order_id"}],
            }
        )
    )  # fmt: skip
    argv = [*_args(tmp_path, conf)[:4], "--table", "orders", "--as-of", "2030-01-01T00:00:00"]
    assert run_job("silver", SILVER.main, argv=argv, add_arguments=SILVER.add_arguments,
                   spark=spark) == 0  # fmt: skip
    silver = DeltaTables(spark).read(str(tmp_path / "lake" / "silver" / "orders"), record=False)
    latest = {
        tuple(line.split("|"))
        for line in pg.sql(f"select id || '|' || customer || '|' || amount from {table}").split()
    }
    got = {
        (str(r["order_id"]), r["customer"], f"{r['amount']:.2f}")
        for r in silver.select("order_id", "customer", "amount").collect()
    }
    assert silver.count() == 510 and got == latest
    assert silver.where(F.col("customer") == "upd1").count() == 10  # ids 1, 51, ..., 451
