"""Silver: the declared tables on small hand-made bronze inputs, and the job end to end on Delta.

Bronze inputs follow docs/CONTRACTS.md: every source column as a string, ``_rescued_data``,
``_source_file``, ``_ingested_at``, ``_batch_id``. Expected values are worked out by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import json
from datetime import date, datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from featurelake.core.pipeline import load_job_module
from featurelake.delta import DeltaTables
from featurelake.lakehouse.silver import build_silver, load_table_specs
from pyspark.sql import functions as F
from pyspark.sql import types as T

ROOT = Path(__file__).resolve().parents[1]
SPECS = load_table_specs(ROOT / "conf" / "tables")
AS_OF = datetime(2012, 1, 1)
RUN_AT = datetime(2024, 1, 3, 12, 0)
KEY = b"silver-test-key"
T1, T2 = datetime(2024, 1, 1, 10, 0), datetime(2024, 1, 2, 10, 0)

RETAIL_COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
CREDIT_COLUMNS = (
    ["ID", "LIMIT_BAL", "SEX", "EDUCATION", "MARRIAGE", "AGE", "PAY_0"]
    + [f"PAY_{k}" for k in range(2, 7)]
    + [f"BILL_AMT{k}" for k in range(1, 7)]
    + [f"PAY_AMT{k}" for k in range(1, 7)]
    + ["default.payment.next.month"]
)
PROFILE_COLUMNS = ["customer_id", "name", "email", "phone", "birth_date", "country", "signup_date"]


def bronze_schema(columns: list[str]) -> T.StructType:
    fields = [T.StructField(c, T.StringType()) for c in [*columns, "_rescued_data", "_source_file"]]
    return T.StructType(
        [
            *fields,
            T.StructField("_ingested_at", T.TimestampType()),
            T.StructField("_batch_id", T.StringType()),
        ]
    )


def bronze_rows(spark, columns, rows):
    """rows: (values tuple, rescued, file, ingested_at, batch)."""
    data = [(*values, rescued, file, at, batch) for values, rescued, file, at, batch in rows]
    return spark.createDataFrame(data, bronze_schema(columns))


# Online Retail lines, each worked out by hand against conf/tables/transactions.yaml.
RETAIL = [
    # r1: a clean sale whose CustomerID is written as a float; duplicated by r2 in a later batch.
    (
        (
            "536365",
            "85123A",
            "  WHITE  HANGING HEART ",
            "6",
            "2010-12-01 08:26:00",
            "2.55",
            "17850.0",
            "United Kingdom",
        ),
        None,
        "f1.csv",
        T1,
        "b1",
    ),
    (
        (
            "536365",
            "85123A",
            "WHITE HANGING HEART",
            "6",
            "2010-12-01 08:26:00",
            "2.55",
            "17850",
            "United Kingdom",
        ),
        None,
        "f2.csv",
        T2,
        "b2",
    ),
    # r3: a cancellation: valid, negative quantity.
    (
        (
            "C536379",
            "D",
            "Discount",
            "-1",
            "2010-12-01 09:41:00",
            "27.50",
            "14527",
            "United Kingdom",
        ),
        None,
        "f1.csv",
        T1,
        "b1",
    ),
    # r4: the bad-debt adjustment: A prefix, no customer, negative price.
    (
        (
            "A563186",
            "B",
            "Adjust bad debt",
            "1",
            "2011-08-12 14:51:00",
            "-11062.06",
            "",
            "United Kingdom",
        ),
        None,
        "f1.csv",
        T1,
        "b1",
    ),
    # r5: an unparseable quantity.
    (
        ("536370", "22728", "ALARM CLOCK", "abc", "2010-12-01 08:45:00", "3.75", "12583", "France"),
        None,
        "f1.csv",
        T1,
        "b1",
    ),
    # r6: a date after the as-of time.
    (
        (
            "536371",
            "22727",
            "ALARM CLOCK RED",
            "2",
            "2030-01-01 10:00:00",
            "3.75",
            "12583",
            "France",
        ),
        None,
        "f1.csv",
        T1,
        "b1",
    ),
    # r7: a malformed line (bronze rescued it).
    (
        ("536372", "22726", "X", "1", "2010-12-01 08:45:00", "1.0", "13047", "United Kingdom"),
        "536372,22726,X,1,2010-12-01 08:45:00,1.0,13047,United Kingdom,extra",
        "f1.csv",
        T1,
        "b1",
    ),
    # r8: a sale with zero quantity.
    (
        ("536373", "22725", "Y", "0", "2010-12-01 08:45:00", "1.0", "13047", "United Kingdom"),
        None,
        "f1.csv",
        T1,
        "b1",
    ),
    # r9: missing customer and description.
    (
        ("536374", "22724", "", "2", "2010-12-01 09:00:00", "1.0", None, "United Kingdom"),
        None,
        "f1.csv",
        T1,
        "b1",
    ),
    # r10: clean, but no description (warn only).
    (
        ("536375", "22723", " ", "3", "2010-12-01 09:00:00", "0.85", "13047", "United Kingdom"),
        None,
        "f1.csv",
        T1,
        "b1",
    ),
]


def _retail_plan(spark):
    bronze = bronze_rows(spark, RETAIL_COLUMNS, RETAIL)
    return build_silver(
        bronze,
        SPECS["transactions"],
        as_of=AS_OF,
        run_id="run-1",
        quarantined_at=RUN_AT,
        pii_key=None,
    )


def _hmac(value: str) -> str:
    return hmac.new(KEY, value.encode("utf-8"), hashlib.sha256).hexdigest()


# --------------------------------------------------------------------------------------------
# Schemas: exactly docs/CONTRACTS.md
# --------------------------------------------------------------------------------------------

LINEAGE = [("_batch_id", "string"), ("_source_file", "string"), ("_ingested_at", "timestamp")]
CONTRACT = {
    "transactions": [
        ("invoice_no", "string"),
        ("stock_code", "string"),
        ("description", "string"),
        ("quantity", "int"),
        ("invoice_ts", "timestamp"),
        ("invoice_date", "date"),
        ("unit_price", "double"),
        ("customer_id", "string"),
        ("country", "string"),
        ("is_cancellation", "boolean"),
        ("line_amount", "double"),
        *LINEAGE,
    ],
    "credit_clients": [
        ("id", "bigint"),
        ("limit_bal", "double"),
        ("sex", "int"),
        ("education", "int"),
        ("marriage", "int"),
        ("age", "int"),
        *[(f"pay_status_{k}", "int") for k in range(1, 7)],
        *[(f"bill_amt_{k}", "double") for k in range(1, 7)],
        *[(f"pay_amt_{k}", "double") for k in range(1, 7)],
        ("default_next_month", "int"),
        *LINEAGE,
    ],
    "customers": [
        ("customer_id", "string"),
        ("country", "string"),
        ("signup_date", "date"),
        ("birth_year", "int"),
        ("name_hash", "string"),
        ("email_hash", "string"),
        ("phone_hash", "string"),
        *LINEAGE,
    ],
}
SOURCES = {
    "transactions": RETAIL_COLUMNS,
    "credit_clients": CREDIT_COLUMNS,
    "customers": PROFILE_COLUMNS,
}


@pytest.mark.parametrize("table", sorted(CONTRACT))
def test_silver_schema_is_the_contract(spark, table):
    empty = spark.createDataFrame([], bronze_schema(SOURCES[table]))
    plan = build_silver(
        empty, SPECS[table], as_of=AS_OF, run_id="r", quarantined_at=RUN_AT, pii_key=KEY
    )
    assert [(f.name, f.dataType.simpleString()) for f in plan.silver.schema.fields] == CONTRACT[
        table
    ]
    quarantine = [(f.name, f.dataType.simpleString()) for f in plan.quarantine.schema.fields]
    assert quarantine[-3:] == [
        ("_failed_rules", "array<string>"),
        ("_run_id", "string"),
        ("_quarantined_at", "timestamp"),
    ]


# --------------------------------------------------------------------------------------------
# transactions
# --------------------------------------------------------------------------------------------


def test_transactions_clean_rows(spark):
    got = _retail_plan(spark).silver
    expected = spark.createDataFrame(
        [
            (
                "536365",
                "85123A",
                "WHITE HANGING HEART",
                6,
                datetime(2010, 12, 1, 8, 26),
                date(2010, 12, 1),
                2.55,
                "17850",
                "United Kingdom",
                False,
                6 * 2.55,
                "b2",
                "f2.csv",
                T2,
            ),
            (
                "C536379",
                "D",
                "Discount",
                -1,
                datetime(2010, 12, 1, 9, 41),
                date(2010, 12, 1),
                27.5,
                "14527",
                "United Kingdom",
                True,
                -27.5,
                "b1",
                "f1.csv",
                T1,
            ),
            (
                "536375",
                "22723",
                None,
                3,
                datetime(2010, 12, 1, 9, 0),
                date(2010, 12, 1),
                0.85,
                "13047",
                "United Kingdom",
                False,
                3 * 0.85,
                "b1",
                "f1.csv",
                T1,
            ),
        ],
        got.schema,
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_transactions_quarantine_lists_every_broken_rule(spark):
    got = _retail_plan(spark).quarantine.select("InvoiceNo", "_failed_rules", "_run_id")
    expected = spark.createDataFrame(
        [
            (
                "A563186",
                ["regex:invoice_no", "not_null:customer_id", "positive_unit_price"],
                "run-1",
            ),
            # "abc" is unparseable: the typed value is missing, so the quantity rules fail too.
            ("536370", ["parse:quantity", "not_null:quantity", "positive_quantity"], "run-1"),
            ("536371", ["not_future:invoice_ts"], "run-1"),
            ("536372", ["malformed_line"], "run-1"),
            ("536373", ["positive_quantity"], "run-1"),
            ("536374", ["not_null:customer_id"], "run-1"),
        ],
        "InvoiceNo string, _failed_rules array<string>, _run_id string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_quarantine_keeps_raw_strings_and_lineage(spark):
    got = _retail_plan(spark).quarantine.filter(F.col("InvoiceNo") == "536370")
    row = got.collect()[0].asDict()
    assert {k: row[k] for k in [*RETAIL_COLUMNS, "_rescued_data", "_source_file", "_batch_id"]} == {
        "InvoiceNo": "536370",
        "StockCode": "22728",
        "Description": "ALARM CLOCK",
        "Quantity": "abc",
        "InvoiceDate": "2010-12-01 08:45:00",
        "UnitPrice": "3.75",
        "CustomerID": "12583",
        "Country": "France",
        "_rescued_data": None,
        "_source_file": "f1.csv",
        "_batch_id": "b1",
    }
    assert row["_quarantined_at"] == RUN_AT and row["_ingested_at"] == T1


def test_every_bronze_row_has_exactly_one_outcome(spark):
    classified = _retail_plan(spark).classified
    counts = {r["_outcome"]: r["count"] for r in classified.groupBy("_outcome").count().collect()}
    # 10 bronze rows: r1/r2 one line twice (1 duplicate), r4-r9 quarantined, r1|r2, r3, r10 clean.
    assert counts == {"clean": 3, "quarantined": 6, "duplicate": 1}


@pytest.mark.parametrize("plan_of", ["retail", "customers", "accounts_unique_email"])
def test_silver_and_quarantine_from_the_classified_rows_equal_those_from_bronze(spark, plan_of):
    # The stream persists the classified rows once and takes both outputs from them.
    plan = {
        "retail": _retail_plan,
        "customers": _customers_plan,  # PII hashed in silver and in the quarantine's raw values
        "accounts_unique_email": lambda s: _accounts_plan(s, "email")[1],  # a unique rule
    }[plan_of](spark)
    classified = plan.classified.persist()
    try:
        silver, quarantine = plan.split(classified)
        assert_df_equality(silver, plan.silver, ignore_row_order=True, ignore_nullable=True)
        assert_df_equality(quarantine, plan.quarantine, ignore_row_order=True, ignore_nullable=True)
        assert quarantine.count() > 0
    finally:
        classified.unpersist()


def test_dedup_keeps_the_latest_ingestion(spark):
    first, again = RETAIL[1], RETAIL[1]
    later = (first[0], None, "f3.csv", datetime(2024, 1, 5), "b3")
    bronze = bronze_rows(spark, RETAIL_COLUMNS, [first, again, later])
    plan = build_silver(
        bronze, SPECS["transactions"], as_of=AS_OF, run_id="r", quarantined_at=RUN_AT, pii_key=None
    )
    got = plan.silver.select("_batch_id", "_source_file").collect()
    assert [tuple(r) for r in got] == [("b3", "f3.csv")]


def test_silver_rows_come_out_ordered_by_the_first_key_column_within_each_task(spark):
    # 60 clean sales, invoices in scrambled order and two lines each, into 3 shuffle partitions:
    # each task's rows leave the dedup window sorted by invoice_no (the key's first column),
    # which is what keeps silver's files compact. Expected order: Python's sort of each task.
    base = RETAIL[1][0]
    invoices = [f"{540000 + (k * 37) % 60:06d}" for k in range(60)]
    rows = [
        ((inv, f"SKU{line}", *base[2:]), None, "f.csv", T1, "b1")
        for inv in invoices
        for line in (1, 2)
    ]
    bronze = bronze_rows(spark, RETAIL_COLUMNS, rows)
    confs = {
        "spark.sql.shuffle.partitions": "3",
        "spark.sql.adaptive.coalescePartitions.enabled": "false",
    }
    previous = {k: spark.conf.get(k) for k in confs}
    for k, v in confs.items():
        spark.conf.set(k, v)
    try:
        plan = build_silver(
            bronze,
            SPECS["transactions"],
            as_of=AS_OF,
            run_id="r",
            quarantined_at=RUN_AT,
            pii_key=None,
        )
        tasks = plan.silver.select("invoice_no").rdd.glom().collect()
    finally:
        for k, v in previous.items():
            spark.conf.set(k, v)
    got = [[r.invoice_no for r in task] for task in tasks]
    assert sum(len(t) for t in got) == 120
    assert sum(1 for t in got if t) > 1  # really spread over several tasks
    assert all(t == sorted(t) for t in got)


# --------------------------------------------------------------------------------------------
# credit_clients
# --------------------------------------------------------------------------------------------


def _credit(id_, limit, edu, mar, age, batch, at):
    return (
        (
            id_,
            limit,
            "2",
            edu,
            mar,
            age,
            "2",
            "2",
            "-1",
            "-1",
            "-2",
            "-2",
            "3913",
            "3102",
            "689",
            "0",
            "0",
            "0",
            "0",
            "689",
            "0",
            "0",
            "0",
            "0",
            "1",
        ),
        None,
        f"{batch}.csv",
        at,
        batch,
    )


def test_credit_codes_normalised_and_pay_columns_renamed(spark):
    bronze = bronze_rows(
        spark,
        CREDIT_COLUMNS,
        [
            _credit("1", "20000", "0", "0", "24", "b1", T1),
            _credit("1", "1.00E+05", "6", "0", "24", "b2", T2),  # newer record of client 1
            _credit("2", "50000", "5", "1", "nan", "b1", T1),
            _credit("3", "50000", "2", "2", "35", "b1", T1),
        ],
    )
    plan = build_silver(
        bronze,
        SPECS["credit_clients"],
        as_of=AS_OF,
        run_id="r",
        quarantined_at=RUN_AT,
        pii_key=None,
    )
    got = plan.silver.select(
        "id",
        "limit_bal",
        "education",
        "marriage",
        "age",
        "pay_status_1",
        "pay_status_3",
        "bill_amt_1",
        "pay_amt_2",
        "default_next_month",
        "_batch_id",
    )
    expected = spark.createDataFrame(
        [
            (1, 100000.0, 4, 3, 24, 2, -1, 3913.0, 689.0, 1, "b2"),
            (3, 50000.0, 2, 2, 35, 2, -1, 3913.0, 689.0, 1, "b1"),
        ],
        "id long, limit_bal double, education int, marriage int, age int, pay_status_1 int, "
        "pay_status_3 int, bill_amt_1 double, pay_amt_2 double, default_next_month int, "
        "_batch_id string",
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    quarantine = plan.quarantine.select("ID", "AGE", "_failed_rules").collect()
    assert [tuple(r) for r in quarantine] == [("2", "nan", ["parse:age", "not_null:age"])]


# --------------------------------------------------------------------------------------------
# customers: PII
# --------------------------------------------------------------------------------------------


def _customers_plan(spark):
    bronze = bronze_rows(
        spark,
        PROFILE_COLUMNS,
        [
            (
                (
                    "17850.0",
                    " Ada   Lovelace ",
                    " ADA@Example.COM ",
                    "+44 20 7946 0958",
                    "1985-12-10",
                    "United Kingdom",
                    "2010-01-01",
                ),
                None,
                "p1.json",
                T1,
                "b1",
            ),
            (
                ("", "Bob", "bob@example.com", "555", "1970-01-01", "France", "2010-02-01"),
                None,
                "p1.json",
                T1,
                "b1",
            ),
        ],
    )
    return build_silver(
        bronze, SPECS["customers"], as_of=AS_OF, run_id="r", quarantined_at=RUN_AT, pii_key=KEY
    )


def test_customers_pii_is_hashed_with_the_key(spark):
    got = _customers_plan(spark).silver.drop(*[c for c, _ in LINEAGE])
    expected = spark.createDataFrame(
        [
            (
                "17850",
                "United Kingdom",
                date(2010, 1, 1),
                1985,
                _hmac("Ada Lovelace"),
                _hmac("ada@example.com"),
                _hmac("+44 20 7946 0958"),
            )
        ],
        "customer_id string, country string, signup_date date, birth_year int, name_hash string, "
        "email_hash string, phone_hash string",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_customers_quarantine_holds_no_raw_pii(spark):
    quarantine = _customers_plan(spark).quarantine
    assert "birth_date" not in quarantine.columns
    row = quarantine.collect()[0].asDict()
    assert (row["name"], row["email"], row["phone"]) == (
        _hmac("Bob"),
        _hmac("bob@example.com"),
        _hmac("555"),
    )
    assert row["_failed_rules"] == ["not_null:customer_id"]


# --------------------------------------------------------------------------------------------
# The job on Delta tables: reconciliation, idempotent rerun, fail before commit, PII key
# --------------------------------------------------------------------------------------------


def _load_job():
    module = load_job_module("silver")
    return module


JOB = _load_job()


def run_silver_job(spark, root: Path, *extra: str) -> int:
    from featurelake.core.runner import run_job

    argv = [
        "--conf-dir",
        str(ROOT / "conf"),
        "--conf",
        f"lakehouse.root={root}",
        "--as-of",
        AS_OF.isoformat(),
        *extra,
    ]
    return run_job("silver", JOB.main, argv=argv, add_arguments=JOB.add_arguments, spark=spark)


@pytest.fixture(scope="module")
def lake(spark, tmp_path_factory):
    """A lakehouse whose bronze/online_retail holds RETAIL (two appends), after one silver run."""
    root = tmp_path_factory.mktemp("lake")
    tables = DeltaTables(spark)
    bronze = str(root / "bronze" / "online_retail")
    tables.write(
        bronze_rows(spark, RETAIL_COLUMNS, [r for r in RETAIL if r[4] == "b1"]), bronze, "append"
    )
    tables.write(
        bronze_rows(spark, RETAIL_COLUMNS, [r for r in RETAIL if r[4] == "b2"]), bronze, "append"
    )
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):  # the job logs its JSON lines to stderr
        assert run_silver_job(spark, root, "--table", "transactions", "--run-id", "first") == 0
    lake_path = LakeRun(root)
    lake_path.log = stderr.getvalue()
    return lake_path


class LakeRun(type(Path())):
    """The lakehouse root, with the first silver run's log lines in ``log``."""

    log = ""


def _metrics(spark, root):
    return DeltaTables(spark).read(str(root / "ops" / "quality_metrics"), record=False)


def test_job_reports_reconciliation_in_its_run_summary(lake):
    events = [json.loads(x) for x in lake.log.splitlines() if x.startswith("{")]
    summary = next(e for e in events if e["event"] == "run_summary")["fields"]["silver"]
    got = summary["transactions"]
    assert (
        got["bronze_rows"],
        got["silver_rows"],
        got["quarantined"],
        got["duplicates_removed"],
        got["reconciled"],
    ) == (10, 3, 6, 1, True)
    assert got["quarantined_by_rule"]["not_null:customer_id"] == 2
    assert got["warnings"] == {"not_null:description": 2}


def test_job_reconciles_and_records_metrics(spark, lake):
    metrics = _metrics(spark, lake).filter("table = 'transactions'")
    total = metrics.filter("rule = '_total'").collect()
    assert len(total) == 1
    t = total[0]
    assert (t.rows_in, t.rows_out, t.rows_quarantined, t.rows_deduplicated) == (10, 3, 6, 1)
    assert t.rows_in == t.rows_out + t.rows_quarantined + t.rows_deduplicated
    per_rule = {
        r.rule: (r.severity, r.failed_count) for r in metrics.collect() if r.rule != "_total"
    }
    assert per_rule["not_null:customer_id"] == ("drop", 2)
    assert per_rule["positive_quantity"] == ("drop", 2)
    assert per_rule["malformed_line"] == ("drop", 1)
    assert per_rule["not_null:description"] == ("warn", 2)
    assert per_rule["max_null_rate:description"] == ("warn", 1)  # 1 of 3 clean rows
    assert per_rule["not_null:invoice_no"] == ("drop", 0)
    tables = DeltaTables(spark)
    assert tables.read(str(lake / "silver" / "transactions")).count() == 3
    assert tables.read(str(lake / "silver" / "transactions_quarantine")).count() == 6


def test_job_rerun_leaves_identical_tables(spark, lake):
    tables = DeltaTables(spark)
    silver, quarantine = (
        str(lake / "silver" / "transactions"),
        str(lake / "silver" / "transactions_quarantine"),
    )
    before = tables.read(silver).collect()
    assert run_silver_job(spark, lake, "--table", "transactions", "--run-id", "second") == 0
    assert_df_equality(
        tables.read(silver),
        spark.createDataFrame(before, tables.read(silver).schema),
        ignore_row_order=True,
    )
    assert tables.read(quarantine).count() == 6
    runs = {r.run_id for r in _metrics(spark, lake).filter("table = 'transactions'").collect()}
    assert runs == {"second"}  # the first run's metrics over the same bronze were replaced


def test_a_rerun_reports_the_metrics_rows_it_wrote_not_those_it_kept(spark, lake, capsys):
    metrics_path = str(lake / "ops" / "quality_metrics")
    other = _metrics(spark, lake).limit(3).withColumn("table", F.lit("customers"))
    DeltaTables(spark).write(other, metrics_path, "append")  # another table's metrics, kept
    capsys.readouterr()
    assert run_silver_job(spark, lake, "--table", "transactions", "--run-id", "third") == 0
    events = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    written = next(e for e in events if e["event"] == "run_summary")["fields"]["rows_written"]
    held = _metrics(spark, lake).filter("table = 'transactions'")
    assert {r.run_id for r in held.collect()} == {"third"}
    assert written[metrics_path] == held.count()  # not the rows of other tables kept
    assert _metrics(spark, lake).filter("table = 'customers'").count() == 3


def test_each_table_records_only_the_tables_it_was_built_from(spark, lake):
    history = DeltaTables(spark).history(str(lake / "silver" / "transactions"), limit=1)[0]
    reads = json.loads(history["featurelake.reads"])
    assert set(reads) == {str(lake / "bronze" / "online_retail")}


def test_fail_rule_stops_before_anything_is_committed(spark, lake, tmp_path, capsys):
    declaration = (ROOT / "conf" / "tables" / "transactions.yaml").read_text()
    strict = declaration.replace(
        "{type: not_future, column: invoice_ts,",
        "{type: not_future, column: invoice_ts, severity: fail,",
    )
    assert strict != declaration
    (tmp_path / "transactions.yaml").write_text(strict)
    tables = DeltaTables(spark)
    paths = [
        str(lake / "silver" / "transactions"),
        str(lake / "silver" / "transactions_quarantine"),
        str(lake / "ops" / "quality_metrics"),
    ]
    versions = [tables.version(p) for p in paths]
    files = [sorted(Path(p).rglob("*.parquet")) for p in paths]
    capsys.readouterr()
    code = run_silver_job(
        spark, lake, "--table", "transactions", "--conf", f"silver.tables_dir={tmp_path}"
    )
    err = capsys.readouterr().err
    assert code == 2
    assert (
        "DataError: silver table transactions: rule not_future:invoice_ts (severity fail) "
        "broken by "
        "1 row(s): e.g. '2030-01-01 10:00:00'"
    ) in err
    assert "nothing was committed" in err
    assert [tables.version(p) for p in paths] == versions
    # The silver files written before the judgement were removed, not left as orphans.
    assert [sorted(Path(p).rglob("*.parquet")) for p in paths] == files


def test_unset_pii_key_fails_with_the_variable_name(spark, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FEATURELAKE_PII_KEY", raising=False)
    capsys.readouterr()
    # no key file either (the local overlay names one for the laptop demo)
    assert (
        run_silver_job(spark, tmp_path, "--table", "customers", "--conf", "silver.pii_key_file=")
        == 2
    )
    assert "environment variable FEATURELAKE_PII_KEY is not set" in capsys.readouterr().err


def test_missing_bronze_table_says_run_bronze_first(spark, tmp_path, capsys):
    capsys.readouterr()
    assert run_silver_job(spark, tmp_path, "--table", "credit_clients") == 2
    assert "bronze table credit_clients not found" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Real datasets: bronze job -> silver job, counts checked against duckdb over the raw files
# --------------------------------------------------------------------------------------------

_RETAIL_TYPED = r"""
    select upper(trim(InvoiceNo)) as inv, nullif(trim(StockCode), '') as sc,
           nullif(regexp_replace(trim(Description), '\s+', ' ', 'g'), '') as d,
           case when regexp_full_match(trim(Quantity), '[+-]?[0-9]+')
                then try_cast(trim(Quantity) as int) end as q,
           try_strptime(trim(InvoiceDate), '%Y-%m-%d %H:%M:%S') as ts,
           try_cast(trim(UnitPrice) as double) as p,
           nullif(regexp_replace(trim(CustomerID), '^([0-9]+)\.0+$', '\1'), '') as c,
           nullif(trim(Country), '') as co
    from read_csv('{path}', all_varchar = true, header = true)
"""
_RETAIL_CLEAN = """
    inv is not null and regexp_full_match(inv, 'C?[0-9]{{6,}}') and sc is not null and q is not null
    and ts is not null and p is not null and c is not null and regexp_full_match(c, '[0-9]+')
    and co is not null and (inv like 'C%' or q > 0) and (inv like 'C%' or p > 0)
    and (inv not like 'C%' or q < 0) and ts <= TIMESTAMP '{as_of}'
"""


def _independent_retail_counts(path: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"create view t as {_RETAIL_TYPED.format(path=path)}")
    clean = _RETAIL_CLEAN.format(as_of=AS_OF.isoformat(sep=" "))
    total, passing, no_customer = con.execute(
        f"select count(*), count(*) filter (where {clean}), "
        "count(*) filter (where c is null) from t"
    ).fetchone()
    distinct = con.execute(
        f"select count(*) from (select distinct * from t where {clean})"
    ).fetchone()[0]
    return {
        "rows_in": total,
        "rows_out": distinct,
        "rows_quarantined": total - passing,
        "rows_deduplicated": passing - distinct,
        "not_null:customer_id": no_customer,
    }


def _independent_credit_counts(path: Path) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    ints = [
        "ID",
        "SEX",
        "EDUCATION",
        "MARRIAGE",
        "AGE",
        "PAY_0",
        *[f"PAY_{k}" for k in range(2, 7)],
        '"default.payment.next.month"',
    ]
    doubles = [
        "LIMIT_BAL",
        *[f"BILL_AMT{k}" for k in range(1, 7)],
        *[f"PAY_AMT{k}" for k in range(1, 7)],
    ]
    parsed = " and ".join(
        [f"regexp_full_match(trim({c}), '[+-]?[0-9]+')" for c in ints]
        + [
            f"try_cast(trim({c}) as double) is not null and trim({c}) not ilike '%nan%'"
            for c in doubles
        ]
    )
    rules = (
        "try_cast(LIMIT_BAL as double) > 0 and SEX in ('1', '2') "
        "and try_cast(AGE as int) between 18 and 100"
        " and "
        + " and ".join(f"try_cast({c} as int) between -2 and 9" for c in ints[5:11])
        + " and "
        + " and ".join(f"try_cast(PAY_AMT{k} as double) >= 0" for k in range(1, 7))
        + """ and "default.payment.next.month" in ('0', '1')"""
    )
    total, passing, distinct = con.execute(
        f"select count(*), count(*) filter (where {parsed} and {rules}), "
        f"count(distinct ID) filter (where {parsed} and {rules}) "
        f"from read_csv('{path}', all_varchar = true, header = true)"
    ).fetchone()
    return {
        "rows_in": total,
        "rows_out": distinct,
        "rows_quarantined": total - passing,
        "rows_deduplicated": passing - distinct,
    }


@pytest.mark.realdata
def test_real_datasets_bronze_to_silver_reconcile_exactly(spark, tmp_path, shared_data, capsys):
    from featurelake.core.runner import run_job

    files = {"online_retail": "online_retail.csv.gz", "credit_clients": "uci_credit_card.csv.gz"}
    for source, name in files.items():
        (tmp_path / "landing" / source).mkdir(parents=True)
        (tmp_path / "landing" / source / name).symlink_to(shared_data / name)
    bronze_job = load_job_module("bronze")
    lake = tmp_path / "lake"
    overrides = [
        "--conf-dir",
        str(ROOT / "conf"),
        "--conf",
        f"lakehouse.root={lake}",
        "--conf",
        f"lakehouse.landing={tmp_path / 'landing'}",
    ]
    assert (
        run_job(
            "bronze",
            bronze_job.main,
            argv=[*overrides, "--source", "online_retail", "--source", "credit_clients"],
            add_arguments=bronze_job.add_arguments,
            spark=spark,
        )
        == 0
    )
    capsys.readouterr()
    assert (
        run_silver_job(
            spark,
            lake,
            "--conf",
            f"lakehouse.landing={tmp_path / 'landing'}",
            "--table",
            "transactions",
            "--table",
            "credit_clients",
        )
        == 0
    )
    lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    report = next(e for e in lines if e["event"] == "run_summary")["fields"]["silver"]
    with capsys.disabled():  # the measured numbers, for the record
        print("\nsilver on real data:", json.dumps(report, indent=1))

    metrics = {(r.table, r.rule): r for r in _metrics(spark, lake).collect()}
    expected = {
        "transactions": _independent_retail_counts(shared_data / files["online_retail"]),
        "credit_clients": _independent_credit_counts(shared_data / files["credit_clients"]),
    }
    for table, want in expected.items():
        total = metrics[(table, "_total")]
        got = {
            "rows_in": total.rows_in,
            "rows_out": total.rows_out,
            "rows_quarantined": total.rows_quarantined,
            "rows_deduplicated": total.rows_deduplicated,
        }
        assert got == {k: want[k] for k in got}, table
        assert (
            got["rows_in"] == got["rows_out"] + got["rows_quarantined"] + got["rows_deduplicated"]
        )
        assert report[table]["reconciled"] is True
        silver = DeltaTables(spark).read(str(lake / "silver" / table)).count()
        quarantine = DeltaTables(spark).read(str(lake / "silver" / f"{table}_quarantine")).count()
        assert (silver, quarantine) == (want["rows_out"], want["rows_quarantined"])
    assert (
        expected["transactions"]["rows_in"] == 541_909
        and expected["credit_clients"]["rows_in"] == 30_000
    )
    assert (
        metrics[("transactions", "not_null:customer_id")].failed_count
        == expected["transactions"]["not_null:customer_id"]
    )


def test_bad_file_through_bronze_and_silver_quarantines_each_bad_row(spark, tmp_path):
    """Malformed lines, wrong types and an extra field: no crash, each bad row with reasons."""
    from featurelake.core.runner import run_job

    landing = tmp_path / "landing" / "online_retail"
    landing.mkdir(parents=True)
    (landing / "bad.csv").write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        "536366,22633,HAND WARMER,six,2010-12-01 08:28:00,1.85,17850,United Kingdom\n"
        "536367,84879,BIRD,32,2010-13-01 08:34:00,1.69,13047,United Kingdom\n"
        "536368,22960,JAR,6,2010-12-01 08:34:00,4.25,13047,United Kingdom,EXTRA\n"
        "536369,21756,BATH\n"
    )
    bronze_job = load_job_module("bronze")
    lake = tmp_path / "lake"
    argv = [
        "--conf-dir",
        str(ROOT / "conf"),
        "--conf",
        f"lakehouse.root={lake}",
        "--conf",
        f"lakehouse.landing={tmp_path / 'landing'}",
        "--source",
        "online_retail",
    ]
    assert (
        run_job(
            "bronze",
            bronze_job.main,
            argv=argv,
            add_arguments=bronze_job.add_arguments,
            spark=spark,
        )
        == 0
    )
    assert run_silver_job(spark, lake, "--table", "transactions") == 0
    tables = DeltaTables(spark)
    silver = tables.read(str(lake / "silver" / "transactions")).select("invoice_no", "customer_id")
    assert [tuple(r) for r in silver.collect()] == [("536365", "17850")]
    quarantine = tables.read(str(lake / "silver" / "transactions_quarantine"))
    got = {r["InvoiceNo"]: r["_failed_rules"] for r in quarantine.collect()}
    assert set(got) == {"536366", "536367", "536368", "536369"}
    assert got["536366"][0] == "parse:quantity"
    assert got["536367"][0] == "parse:invoice_ts"
    assert got["536368"][0] == "malformed_line"
    assert got["536369"][0] == "malformed_line" and "not_null:customer_id" in got["536369"]


def test_values_that_would_parse_to_something_else_are_quarantined_by_name(spark, tmp_path):
    """1e400 (Infinity as a double), an amount overflowing a double, a byte not in UTF-8."""
    from featurelake.core.runner import run_job

    landing = tmp_path / "landing" / "online_retail"
    landing.mkdir(parents=True)
    (landing / "hostile.csv").write_bytes(
        b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        b"536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"
        b"536366,22633,WARMER,6,2010-12-01 08:28:00,1e400,17850,United Kingdom\n"
        b"536367,84879,BIRD,2000000000,2010-12-01 08:34:00,1e300,13047,United Kingdom\n"
        b"536368,22960,JAR,6,2010-12-01 08:34:00,4.25,13047,Espa\xf1a\n"
    )
    bronze_job = load_job_module("bronze")
    lake = tmp_path / "lake"
    argv = [
        "--conf-dir",
        str(ROOT / "conf"),
        "--conf",
        f"lakehouse.root={lake}",
        "--conf",
        f"lakehouse.landing={tmp_path / 'landing'}",
        "--source",
        "online_retail",
    ]
    code = run_job(
        "bronze", bronze_job.main, argv=argv, add_arguments=bronze_job.add_arguments, spark=spark
    )
    assert code == 0
    assert run_silver_job(spark, lake, "--table", "transactions") == 0
    tables = DeltaTables(spark)
    silver = tables.read(str(lake / "silver" / "transactions"))
    assert [r["invoice_no"] for r in silver.collect()] == ["536365"]
    quarantine = tables.read(str(lake / "silver" / "transactions_quarantine"))
    got = {r["InvoiceNo"]: r["_failed_rules"] for r in quarantine.collect()}
    assert got["536366"][0] == "parse:unit_price"
    assert got["536367"] == ["finite:line_amount"]  # 2e9 * 1e300 overflows a double
    assert got["536368"] == ["malformed_line", "invalid_encoding"]
    metrics = {
        r["rule"]: r["failed_count"]
        for r in _metrics(spark, lake).collect()
        if r["table"] == "transactions"
    }
    assert metrics["invalid_encoding"] == 1 and metrics["finite:line_amount"] == 1


# --------------------------------------------------------------------------------------------
# unique rules after deduplication
# --------------------------------------------------------------------------------------------


def _accounts_spec(unique_column: str | None, *more_rules: dict):
    """A small declaration: accounts deduplicated on id, a unique rule on ``unique_column``
    (no rule when None), then ``more_rules``."""
    from featurelake.lakehouse.silver import SilverTableSpec

    rules = [{"type": "unique", "column": unique_column}] if unique_column else []
    rules += more_rules
    return SilverTableSpec.model_validate(
        {
            "name": "accounts",
            "source": "accounts",
            "columns": [
                {"name": "id", "source": "id", "type": "long"},
                {"name": "email", "source": "email", "type": "string"},
            ],
            "dedup": {"key": ["id"]},
            "expectations": rules,
        }
    )


def _accounts_bronze(spark):
    return bronze_rows(
        spark,
        ["id", "email"],
        [
            (("1", "a@x.org"), None, "f1.csv", T1, "b1"),
            (("1", "a@x.org"), None, "f2.csv", T2, "b2"),  # id 1 again, later: a duplicate
            (("2", "a@x.org"), None, "f1.csv", T1, "b1"),  # shares id 1's email
            (("3", "b@x.org"), None, "f1.csv", T1, "b1"),
        ],
    )


def _accounts_plan(spark, unique_column, *more_rules):
    spec = _accounts_spec(unique_column, *more_rules)
    plan = build_silver(
        _accounts_bronze(spark),
        spec,
        as_of=AS_OF,
        run_id="r",
        quarantined_at=RUN_AT,
        pii_key=None,
        observe=True,
    )
    silver_ids = sorted(r["id"] for r in plan.silver.collect())  # the action the counts need
    return spec, plan, silver_ids


def test_unique_rule_off_the_dedup_key_quarantines_every_sharer(spark):
    spec, plan, silver_ids = _accounts_plan(spark, "email")
    # After dedup: ids 1 (batch b2), 2, 3; ids 1 and 2 share a@x.org and both break the rule.
    assert silver_ids == [3]
    got = sorted(
        (r["id"], r["_batch_id"], list(r["_failed_rules"])) for r in plan.quarantine.collect()
    )
    assert got == [("1", "b2", ["unique:email"]), ("2", "b1", ["unique:email"])]
    counts = plan.counts(spec)
    assert (counts.rows_in, counts.rows_out, counts.rows_quarantined, counts.rows_deduplicated) == (
        4,
        1,
        2,
        1,
    )
    assert counts.rule_failures[("unique:email", "drop")] == 2


def test_unique_rule_on_the_dedup_key_holds_after_dedup(spark):
    spec, plan, silver_ids = _accounts_plan(spark, "id")
    # id 1 twice: the later record is kept, the other is a duplicate, not a unique failure.
    assert silver_ids == [1, 2, 3]
    assert plan.quarantine.count() == 0
    counts = plan.counts(spec)
    assert (counts.rows_in, counts.rows_out, counts.rows_quarantined, counts.rows_deduplicated) == (
        4,
        3,
        0,
        1,
    )
    assert counts.rule_failures[("unique:id", "drop")] == 0


def test_each_row_counts_once_for_every_rule_it_broke_whatever_its_outcome(spark):
    # Silver's counts come from the rows that passed the row rules (counted after the dedup
    # window) and from the rejected ones (counted as the quarantine is written): a warn rule
    # broken by a clean row, by that row's duplicate and by a rejected row counts 3.
    no_description = ("536380", "22720", " ", "2", "2010-12-01 09:00:00", "1.00", "13047", "France")
    rows = [
        (no_description, None, "f1.csv", T1, "b1"),  # a duplicate of the next row
        (no_description, None, "f2.csv", T2, "b2"),  # clean (the latest), warned
        (
            ("536381", "22721", "", "1", "2010-12-01 09:00:00", "2.00", None, "France"),
            None,
            "f1.csv",
            T1,
            "b1",
        ),  # rejected: no customer; warned
        (
            ("536382", "22722", "CLOCK", "1", "2010-12-01 09:00:00", "3.00", "13047", "France"),
            None,
            "f1.csv",
            T1,
            "b1",
        ),  # clean
    ]
    spec = SPECS["transactions"]
    plan = build_silver(
        bronze_rows(spark, RETAIL_COLUMNS, rows),
        spec,
        as_of=AS_OF,
        run_id="r",
        quarantined_at=RUN_AT,
        pii_key=None,
        observe=True,
    )
    assert sorted(r["invoice_no"] for r in plan.silver.collect()) == ["536380", "536382"]
    assert [r["InvoiceNo"] for r in plan.quarantine.collect()] == ["536381"]
    counts = plan.counts(spec)
    assert (counts.rows_in, counts.rows_out, counts.rows_quarantined, counts.rows_deduplicated) == (
        4,
        2,
        1,
        1,
    )
    failures = counts.rule_failures
    assert failures[("not_null:description", "warn")] == 3
    assert failures[("not_null:customer_id", "drop")] == 1
    assert failures[("regex:customer_id", "drop")] == 0  # a null passes the regex rule
    assert sum(n for (_, severity), n in failures.items() if severity == "drop") == 1


def test_a_row_quarantined_by_a_unique_rule_counts_its_warnings_once(spark):
    # Rows that pass the row rules and then break a unique rule are counted with the passed
    # rows, not again with the quarantine's. The warn rule is broken by the three a@x.org
    # rows: id 1's older record (a duplicate), id 1's latest and id 2 (both quarantined by
    # unique:email); b@x.org keeps it.
    warn_rule = {"type": "regex", "column": "email", "pattern": "b@.*", "severity": "warn"}
    spec, plan, silver_ids = _accounts_plan(spark, "email", warn_rule)
    assert silver_ids == [3]
    assert sorted(r["id"] for r in plan.quarantine.collect()) == ["1", "2"]
    counts = plan.counts(spec)
    assert (counts.rows_in, counts.rows_out, counts.rows_quarantined, counts.rows_deduplicated) == (
        4,
        1,
        2,
        1,
    )
    assert counts.rule_failures[("regex:email", "warn")] == 3
    assert counts.rule_failures[("unique:email", "drop")] == 2


def test_a_rule_may_not_take_a_name_the_parser_counts():
    with pytest.raises(ValueError, match=r"rule names used twice: \['malformed_line'\]"):
        _accounts_spec(None, {"type": "expression", "name": "malformed_line", "expr": "id > 0"})


# --------------------------------------------------------------------------------------------
# which record of a key is kept
# --------------------------------------------------------------------------------------------


def _accounts_dedup(spark, rows):
    """silver rows (id, email, batch) and the classified outcomes, of accounts keyed on id."""
    spec = _accounts_spec(None)
    plan = build_silver(
        bronze_rows(spark, ["id", "email"], rows),
        spec,
        as_of=AS_OF,
        run_id="r",
        quarantined_at=RUN_AT,
        pii_key=None,
        observe=True,
    )
    silver = sorted((r["id"], r["email"], r["_batch_id"]) for r in plan.silver.collect())
    assert plan.quarantine.count() == 0  # counts need both actions
    clean = sorted(
        (r["id"], r["email"], r["_batch_id"])
        for r in plan.classified.where("_outcome = 'clean'").collect()
    )
    return silver, clean, plan.counts(spec)


def test_the_latest_record_is_kept_whole_not_column_by_column(spark):
    # The older record has the greater email: a column-wise maximum would mix the two records.
    silver, clean, counts = _accounts_dedup(
        spark,
        [
            (("1", "z@x.org"), None, "f1.csv", T1, "b1"),
            (("1", "a@x.org"), None, "f2.csv", T2, "b2"),
        ],
    )
    assert silver == [(1, "a@x.org", "b2")]
    assert clean == silver  # the classified rows (a window) make the same choice
    assert (counts.rows_in, counts.rows_out, counts.rows_deduplicated) == (2, 1, 1)


def test_a_record_without_ingest_time_loses_to_one_with_it(spark):
    # latest_by sorts descending with nulls last: a null _ingested_at is the oldest.
    silver, clean, _ = _accounts_dedup(
        spark,
        [
            (("1", "a@x.org"), None, "f9.csv", None, "b9"),
            (("1", "b@x.org"), None, "f1.csv", T1, "b1"),
        ],
    )
    assert silver == clean == [(1, "b@x.org", "b1")]


def test_ties_on_every_lineage_column_go_to_the_same_record_in_silver_and_classified(spark):
    # Same key, file, batch and time: the hash of the raw row decides, the same way both times.
    rows = [((("1", f"{c}@x.org")), None, "f1.csv", T1, "b1") for c in "abcdefgh"]
    silver, clean, counts = _accounts_dedup(spark, rows)
    assert len(silver) == 1 and silver == clean
    assert (counts.rows_in, counts.rows_out, counts.rows_deduplicated) == (8, 1, 7)


def test_a_silver_table_whose_quarantine_is_of_another_run_is_refused(spark, tmp_path):
    from featurelake.lakehouse.silver import SilverPairError, read_silver, read_silver_pair

    tables = DeltaTables(spark)
    silver, quarantine = str(tmp_path / "t"), str(tmp_path / "t_quarantine")
    rows = spark.createDataFrame([(1,)], "id long")
    tables.write(rows, quarantine, metadata={"silver_run": "r1", "bronze_version": "3"})
    tables.write(
        rows, quarantine, "overwrite", metadata={"silver_run": "r2", "bronze_version": "4"}
    )
    tables.write(rows, silver, metadata={"silver_run": "r1", "bronze_version": "3"})
    # silver of run r1 goes with the quarantine's version 0, not its latest (run r2)
    pair = read_silver_pair(tables, silver, quarantine)
    assert (pair.run_id, pair.bronze_version, pair.quarantine_version) == ("r1", 3, 0)
    tables.write(rows, silver, "overwrite", metadata={"silver_run": "r9", "bronze_version": "5"})
    with pytest.raises(SilverPairError, match=r"no quarantine version of run r9"):
        read_silver(tables, silver, quarantine)


def test_silver_enforces_its_row_rules_on_any_later_writer(spark, lake):
    from featurelake.delta import ConstraintViolationError

    tables = DeltaTables(spark)
    if tables.backend != "native":
        pytest.skip("CHECK constraints are kept on the native backend only")
    path = str(lake / "silver" / "transactions")
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()["properties"]
    assert detail["delta.constraints.fl_not_null_customer_id"] == "`customer_id` IS NOT NULL"
    assert "delta.constraints.fl_not_future_invoice_ts" not in detail  # needs the run's time
    assert "delta.constraints.fl_not_null_description" not in detail  # a warn rule
    bad = tables.read(path).limit(1).withColumn("customer_id", F.lit(None).cast("string"))
    with pytest.raises(ConstraintViolationError, match="CHECK constraint"):
        tables.write(bad, path, "append")
