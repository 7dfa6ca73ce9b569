"""Gold assembly, configuration, the gold job on tiny Delta tables, and real-data RFM checks."""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import date, datetime, timezone
from pathlib import Path

import pandas as pd
import pytest
from deltalake import write_deltalake
from featurelake.core.config import ConfigError
from featurelake.core.runner import JobContext, execute_job, run_job
from featurelake.delta import DeltaTables
from featurelake.lakehouse.feature_library.customers import as_of_timestamps
from featurelake.lakehouse.feature_library.metadata import (
    MetadataMismatchError,
    credit_feature_specs,
    customer_feature_specs,
    describe_columns,
)
from featurelake.lakehouse.gold import (
    GOLD_CONFIG_FILE,
    SnapshotConfig,
    add_gold_arguments,
    build_credit_gold,
    build_customer_gold,
    gold_options_from_args,
    load_gold_config,
    parse_as_of,
    resolve_snapshot_range,
    run_gold,
)
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

PROJECT = Path(__file__).resolve().parents[1]
CONF = PROJECT / "conf"
MONTHS = range(1, 7)

CREDIT_SILVER = (
    "id long, limit_bal double, sex int, education int, marriage int, age int, "
    + ", ".join(f"pay_status_{k} int" for k in MONTHS)
    + ", "
    + ", ".join(f"bill_amt_{k} double" for k in MONTHS)
    + ", "
    + ", ".join(f"pay_amt_{k} double" for k in MONTHS)
    + ", default_next_month int"
)
TX_SILVER = (
    "invoice_no string, stock_code string, description string, quantity int, "
    "invoice_ts timestamp, invoice_date date, unit_price double, customer_id string, "
    "country string, is_cancellation boolean, line_amount double"
)


def ts(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def tx(
    invoice: str,
    stock: str,
    qty: int,
    at: datetime,
    customer: str | None,
    price: float,
) -> tuple:
    return (
        invoice,
        stock,
        stock,
        qty,
        at,
        at.date(),
        price,
        customer,
        "United Kingdom",
        invoice.startswith("C"),
        qty * price,
    )


def credit_silver(spark: SparkSession) -> DataFrame:
    rows = [
        (1, 1000.0, 1, 2, 1, 24, *[0] * 6, *[100.0] * 6, *[50.0] * 6, 0),
        (2, 5000.0, 2, 1, 2, 47, 2, 1, 0, 0, -1, -2, *[0.0] * 6, *[0.0] * 6, 1),
    ]
    return spark.createDataFrame(rows, CREDIT_SILVER)


TX_ROWS = [
    tx("1", "X", 2, ts(2011, 1, 1, 10), "A", 5.0),
    tx("2", "Y", 1, ts(2011, 1, 3, 10), "A", 4.0),
    tx("C3", "Y", -1, ts(2011, 1, 3, 12), "B", 4.0),
    tx("4", "X", 1, ts(2011, 1, 4, 9), None, 5.0),
]


# ------------------------------------------------------------------ configuration


def test_project_gold_config_loads() -> None:
    config = load_gold_config(CONF / GOLD_CONFIG_FILE)
    assert config.customers.windows_days == (30, 90, 365)
    assert config.credit.age_bin_edges[0] == 18


def test_gold_config_error_names_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "features_gold.yaml"
    path.write_text(
        "credit: {age_bin_edges: [30, 20], zero_bill_pay_ratio: 1.0}\n"
        "customers: {rfm_quantiles: 5, windows_days: [30]}\n"
    )
    with pytest.raises(ConfigError, match=r"features_gold.yaml: credit.age_bin_edges: .*increas"):
        load_gold_config(path)


def test_snapshot_range_prefers_arguments_then_conf_then_data() -> None:
    conf = SnapshotConfig(start=date(2011, 2, 1))
    first, last = date(2011, 1, 1), date(2011, 12, 9)
    assert resolve_snapshot_range(conf, first, last) == (date(2011, 2, 1), last)
    assert resolve_snapshot_range(
        conf, first, last, start=date(2011, 3, 1), end=date(2011, 3, 5)
    ) == (date(2011, 3, 1), date(2011, 3, 5))
    assert resolve_snapshot_range(SnapshotConfig(), first, last) == (first, last)


def test_snapshot_range_rejects_end_before_start() -> None:
    with pytest.raises(ValueError, match="before snapshot start"):
        resolve_snapshot_range(
            SnapshotConfig(), date(2011, 1, 1), date(2011, 1, 2), start=date(2011, 5, 1)
        )


def test_as_of_date_means_end_of_day_and_rejects_garbage() -> None:
    assert parse_as_of("2011-12-09") == datetime(2011, 12, 9, 23, 59, 59, 999999)
    assert parse_as_of("2011-12-09T10:30:00") == datetime(2011, 12, 9, 10, 30)
    with pytest.raises(ValueError, match="--as-of must be"):
        parse_as_of("yesterday")


# ------------------------------------------------------------------ assembly and metadata


def test_credit_gold_splits_features_and_labels_and_metadata_covers_them(
    spark: SparkSession,
) -> None:
    config = load_gold_config(CONF / GOLD_CONFIG_FILE)
    features, labels = build_credit_gold(credit_silver(spark), config.credit)
    records = describe_columns(features, credit_feature_specs())
    assert [r["feature"] for r in records] == features.columns
    assert {r["feature"]: r["type"] for r in records}["delinquent_months"] == "int"
    assert sorted(tuple(r) for r in labels.collect()) == [(1, 0), (2, 1)]


def test_customer_metadata_covers_every_column(spark: SparkSession) -> None:
    config = load_gold_config(CONF / GOLD_CONFIG_FILE)
    points = as_of_timestamps(spark, [ts(2011, 1, 5)])
    features = build_customer_gold(
        spark.createDataFrame(TX_ROWS, TX_SILVER), points, config.customers
    )
    records = describe_columns(features, customer_feature_specs(config.customers.windows_days))
    assert [r["feature"] for r in records] == features.columns


def test_metadata_mismatch_names_the_undescribed_column(spark: SparkSession) -> None:
    features, _ = build_credit_gold(
        credit_silver(spark), load_gold_config(CONF / GOLD_CONFIG_FILE).credit
    )
    with pytest.raises(MetadataMismatchError, match=r"without a description \['extra'\]"):
        describe_columns(features.withColumn("extra", F.lit(1)), credit_feature_specs())


# ------------------------------------------------------------------ the gold job


@pytest.fixture(scope="module")
def job_conf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's base settings and gold config, without an environment overlay."""
    conf = tmp_path_factory.mktemp("conf")
    (conf / "env").mkdir()
    (conf / "env" / "test.yaml").write_text("{}\n")
    for name in ("base.yaml", GOLD_CONFIG_FILE):
        shutil.copy(CONF / name, conf / name)
    return conf


@pytest.fixture(scope="module")
def lake(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory, job_conf: Path) -> Path:
    """A lakehouse with tiny silver tables and one gold run over them."""
    root = tmp_path_factory.mktemp("lake")
    tables = DeltaTables(spark)
    tables.write(credit_silver(spark), f"{root}/silver/credit_clients", "overwrite")
    tables.write(
        spark.createDataFrame(TX_ROWS, TX_SILVER), f"{root}/silver/transactions", "overwrite"
    )
    assert _run_gold(spark, job_conf, root) == 0
    return root


def _run_gold(spark: SparkSession, conf: Path, root: Path, *extra: str) -> int:
    argv = ["--conf-dir", str(conf), "--env", "test", "--conf", f"lakehouse.root={root}", *extra]
    return run_job("gold", _gold_main, argv=argv, add_arguments=add_gold_arguments, spark=spark)


def _gold_main(ctx: JobContext, args: argparse.Namespace) -> None:
    run_gold(ctx, gold_options_from_args(args))


def _snapshot(spark: SparkSession, path: Path) -> list[tuple]:
    return sorted(tuple(r) for r in DeltaTables(spark).read(str(path), record=False).collect())


def test_gold_job_writes_daily_snapshots_for_the_data_range(
    spark: SparkSession,
    lake: Path,
) -> None:
    daily = DeltaTables(spark).read(f"{lake}/gold/customer_features_daily", record=False)
    rows = sorted(
        (r["customer_id"], r["as_of_date"].isoformat(), r["frequency"]) for r in daily.collect()
    )
    # Data spans Jan 1..Jan 4 (line 4 has no customer but counts for the range); B appears on
    # Jan 3 with its cancelled order.
    assert rows == [
        ("A", "2011-01-01", 1),
        ("A", "2011-01-02", 1),
        ("A", "2011-01-03", 2),
        ("A", "2011-01-04", 2),
        ("B", "2011-01-03", 0),
        ("B", "2011-01-04", 0),
    ]
    assert DeltaTables(spark).partition_columns(f"{lake}/gold/customer_features_daily") == [
        "as_of_date"
    ]


def test_gold_job_latest_snapshot_is_the_last_date(spark: SparkSession, lake: Path) -> None:
    latest = DeltaTables(spark).read(f"{lake}/gold/customer_features", record=False)
    assert sorted((r["customer_id"], r["as_of_date"].isoformat()) for r in latest.collect()) == [
        ("A", "2011-01-04"),
        ("B", "2011-01-04"),
    ]


def test_gold_job_keeps_credit_labels_apart(spark: SparkSession, lake: Path) -> None:
    features = DeltaTables(spark).read(f"{lake}/gold/credit_features", record=False)
    assert "default_next_month" not in features.columns
    assert _snapshot(spark, lake / "gold" / "credit_labels") == [(1, 0), (2, 1)]


def test_gold_job_stores_metadata_for_the_version_written(spark: SparkSession, lake: Path) -> None:
    tables = DeltaTables(spark)
    version = tables.version(f"{lake}/gold/credit_features")
    meta = tables.read(f"{lake}/gold/_feature_metadata", record=False)
    rows = meta.where(
        (F.col("table") == "gold/credit_features") & (F.col("delta_version") == version)
    ).collect()
    assert {r["feature"] for r in rows} == set(
        tables.read(f"{lake}/gold/credit_features", record=False).columns
    )
    assert json.loads(rows[0]["preprocessing"])["credit"]["zero_bill_pay_ratio"] == 1.0
    commit = tables.history(f"{lake}/gold/credit_features", limit=1)[0]
    assert "bill_trend" in json.loads(commit["featurelake.features"])
    assert json.loads(commit["featurelake.preprocessing"])["credit"]["age_bin_edges"][0] == 18


def test_gold_job_rerun_leaves_identical_tables(
    spark: SparkSession, lake: Path, job_conf: Path
) -> None:
    names = ["credit_features", "credit_labels", "customer_features", "customer_features_daily"]
    before = {n: _snapshot(spark, lake / "gold" / n) for n in names}
    assert _run_gold(spark, job_conf, lake) == 0
    assert {n: _snapshot(spark, lake / "gold" / n) for n in names} == before


def test_gold_job_as_of_limits_the_latest_snapshot(
    spark: SparkSession, lake: Path, job_conf: Path
) -> None:
    # Rewrites gold/customer_features of the shared lake: keep this after the tests reading it.
    argv = ["--only", "customers", "--no-daily", "--as-of", "2011-01-02"]
    assert _run_gold(spark, job_conf, lake, *argv) == 0
    latest = DeltaTables(spark).read(f"{lake}/gold/customer_features", record=False)
    rows = [(r["customer_id"], r["frequency"], r["monetary"]) for r in latest.collect()]
    assert rows == [("A", 1, 10.0)]


def test_gold_job_reads_the_data_range_from_rows_when_files_have_no_statistics(
    spark: SparkSession, lake: Path, tmp_path: Path, job_conf: Path
) -> None:
    # The range and the rows without a customer come from the Delta log's file statistics
    # when there are any; a table written without them (here by delta-rs, told to index no
    # column) must give the same snapshots and counts, computed from the rows.
    write_deltalake(
        str(tmp_path / "silver" / "transactions"),
        spark.createDataFrame(TX_ROWS, TX_SILVER).toArrow(),
        configuration={"delta.dataSkippingNumIndexedCols": "0"},
    )
    assert (
        DeltaTables(spark).column_stats(str(tmp_path / "silver" / "transactions"), ["invoice_date"])
        is None
    )
    shutil.copytree(lake / "silver" / "credit_clients", tmp_path / "silver" / "credit_clients")
    argv = ["--conf-dir", str(job_conf), "--env", "test", "--conf", f"lakehouse.root={tmp_path}"]
    outcome = execute_job("gold", _gold_main, argv, add_gold_arguments, spark)
    assert outcome.code == 0
    # Line 4 of TX_ROWS has no customer; Jan 1 to Jan 4 is the range of its invoice dates.
    assert outcome.summary["transactions_without_customer"] == 1
    assert _snapshot(spark, tmp_path / "gold" / "customer_features_daily") == _snapshot(
        spark, lake / "gold" / "customer_features_daily"
    )


def test_gold_job_counts_rows_without_a_customer_from_file_statistics(
    spark: SparkSession, lake: Path, tmp_path: Path, job_conf: Path
) -> None:
    shutil.copytree(lake / "silver", tmp_path / "silver")
    assert (
        DeltaTables(spark).column_stats(str(tmp_path / "silver" / "transactions"), ["invoice_date"])
        is not None
    )
    argv = [
        "--conf-dir",
        str(job_conf),
        "--env",
        "test",
        "--conf",
        f"lakehouse.root={tmp_path}",
        "--only",
        "customers",
        "--no-daily",
    ]
    outcome = execute_job("gold", _gold_main, argv, add_gold_arguments, spark)
    assert outcome.code == 0
    assert outcome.summary["transactions_without_customer"] == 1


def test_gold_job_fails_clearly_without_silver(
    spark: SparkSession, tmp_path: Path, job_conf: Path
) -> None:
    assert _run_gold(spark, job_conf, tmp_path, "--only", "credit") == 2


# ------------------------------------------------------------------ real data: independent RFM


def _pandas_rfm(raw: pd.DataFrame, as_of: pd.Timestamp, quantiles: int) -> pd.DataFrame:
    """RFM and a few more features computed straight from the raw file with pandas."""
    df = raw[raw["CustomerID"].notna() & (raw["InvoiceDate"] <= as_of)].copy()
    df["amount"] = df["Quantity"] * df["UnitPrice"]
    df["cancelled"] = df["InvoiceNo"].str.startswith("C")
    buys = df[~df["cancelled"]]
    out = pd.DataFrame(
        {
            "frequency": buys.groupby("CustomerID")["InvoiceNo"].nunique(),
            "monetary": df.groupby("CustomerID")["amount"].sum(),
            "last": buys.groupby("CustomerID")["InvoiceDate"].max(),
            "first": buys.groupby("CustomerID")["InvoiceDate"].min(),
            "distinct_products": buys.groupby("CustomerID")["StockCode"].nunique(),
            "invoices": df.groupby("CustomerID")["InvoiceNo"].nunique(),
            "cancelled_invoices": df[df["cancelled"]].groupby("CustomerID")["InvoiceNo"].nunique(),
        }
    )
    recent = df[df["InvoiceDate"] > as_of - pd.Timedelta(days=90)]
    out["spend_90d"] = recent.groupby("CustomerID")["amount"].sum()
    out = out.fillna(
        {"frequency": 0, "distinct_products": 0, "cancelled_invoices": 0, "spend_90d": 0.0}
    )
    out["recency_days"] = (as_of - out["last"]) // pd.Timedelta(days=1)
    out["tenure_days"] = (as_of - out["first"]) // pd.Timedelta(days=1)
    out["cancellation_rate"] = out["cancelled_invoices"] / out["invoices"]
    scored = out[out["frequency"] > 0]
    n = len(scored)
    for name, value in (
        ("r_score", -scored["recency_days"]),
        ("f_score", scored["frequency"]),
        ("m_score", scored["monetary"].round(6)),
    ):
        k = value.rank(method="max").astype(int)
        out[name] = (quantiles * k + n - 1) // n
    return out


@pytest.mark.realdata
def test_rfm_on_online_retail_matches_pandas(spark: SparkSession, shared_data: Path) -> None:
    source = shared_data / "online_retail.csv.gz"
    raw = pd.read_csv(
        source,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str},
        parse_dates=["InvoiceDate"],
    )
    # The silver-like frame, built by Spark from the same file with the same rules: typed,
    # is_cancellation from the "C" prefix, line_amount = quantity * unit_price.
    lines = (
        spark.read.option("header", True)
        .option("escape", '"')
        .csv(str(source))
        .select(
            F.col("InvoiceNo").alias("invoice_no"),
            F.col("StockCode").alias("stock_code"),
            F.col("Description").alias("description"),
            F.col("Quantity").cast("int").alias("quantity"),
            F.to_timestamp("InvoiceDate", "yyyy-MM-dd HH:mm:ss").alias("invoice_ts"),
            F.col("UnitPrice").cast("double").alias("unit_price"),
            F.col("CustomerID").alias("customer_id"),
            F.col("Country").alias("country"),
        )
        .withColumn("invoice_date", F.to_date("invoice_ts"))
        .withColumn("is_cancellation", F.col("invoice_no").startswith("C"))
        .withColumn("line_amount", F.col("quantity") * F.col("unit_price"))
    )
    as_of = datetime(2011, 9, 30, 23, 59, 59, 999999)
    config = load_gold_config(CONF / GOLD_CONFIG_FILE).customers
    spark_rows = build_customer_gold(lines, as_of_timestamps(spark, [as_of]), config).toPandas()
    got = spark_rows.set_index("customer_id").sort_index()
    want = _pandas_rfm(raw, pd.Timestamp(as_of), config.rfm_quantiles).sort_index()

    assert list(got.index) == list(want.index)  # every customer with a transaction by t
    for column in (
        "frequency",
        "distinct_products",
        "recency_days",
        "tenure_days",
        "r_score",
        "f_score",
        "m_score",
    ):
        pd.testing.assert_series_equal(
            got[column].astype("Float64"),
            want[column].astype("Float64"),
            check_names=False,
            obj=column,
        )
    for column in ("monetary", "spend_90d", "cancellation_rate"):
        pd.testing.assert_series_equal(
            got[column], want[column].astype(float), check_names=False, atol=1e-6, obj=column
        )
    # A few named customers, spelled out: 12347 (regular), 12346 (one order, then cancelled).
    assert got.loc["12346", ["frequency", "monetary"]].tolist() == [1, 0.0]
    assert got.loc["12347", "frequency"] == want.loc["12347", "frequency"]
