"""Bronze -> gold on synthetic data: featurelake's jobs against one hand-written Spark SQL job.

    .venv/bin/python bench/bench_bronze_to_gold.py [--scales 1000000 10000000]
        [--repeat 3] [--warmup-runs 3] [--cold-runs 1] [--lines-per-customer 50] [--no-check]
        [--keep] [--driver-memory 6g]

Per scale, synthetic landing files are generated once into a temporary folder (job
``generate-data``, outside the timings; credit clients at the configured default). Then, in one
SparkSession:

(a) **featurelake**: the ``bronze`` job (sources online_retail and credit_clients: every line
    kept with lineage, ingest ledger, Delta commits) -> the ``silver`` job (tables transactions
    and credit_clients: strict parsing, every expectation, dedup, quarantine and quality
    metrics tables, reconciliation) -> the ``gold`` job (credit features and labels, customer
    features as of ``synthetic.end_date``, feature metadata), each through
    ``featurelake.core.runner.execute_job`` exactly as ``./spark-submit.sh`` runs it, into a fresh
    lakehouse;
(b) **baseline**: one Spark SQL job that reads the same raw CSV files, applies the same
    cleaning simply (malformed lines and values that do not parse dropped, the same row rules,
    exact-duplicate lines removed, one row per credit client), computes the same customer
    features as of the same timestamp and the same credit features, and writes Parquet
    (customer features, credit features, credit labels). No quarantine, lineage, ledger,
    metrics or metadata. It runs twice per round: **baseline** as written (its rule "not in
    the future" says ``current_timestamp()``, which Spark compiles into the scan stage's code
    as a new literal each run, so that stage's classes are compiled afresh and start cold in
    the JIT), and **baseline-stable**, the same query with that value kept out of the
    generated code (what featurelake's ``run_constant`` does for its run times), so the
    stage's compiled classes are reused from run to run.

Both sides build the *latest snapshot* only: gold runs with ``--no-daily`` (the daily
snapshot table, one row per customer and day, has no counterpart in the baseline). Customer
profiles (PII) are not ingested by either side.

Each side first runs ``--warmup-runs`` times per scale (default 3; printed, not compared),
then ``--repeat`` times, each side going first in turn (the machine's speed drifts):
every run's seconds are printed, and the comparison uses each side's median. Each run also
prints the JVM's JIT compile time during it (elapsed time summed over the compiler threads,
process-wide). The warm-up is at full scale and several runs long because the JIT keeps
compiling hot paths well past one run: on 2 cores its compiler threads compete with the tasks
for the CPU, and the three jobs' generated classes give it more work than one query (at 1M,
in one driver, featurelake's first three runs took 40, 17 and 10 JIT seconds, baseline-stable's
runs after them 20, 8 and 5; the fourth 7 and 4; from the fifth on both 3-4 s a run). With one
warm-up run, the timed runs measured that backlog more than the jobs (docs/PERFORMANCE.md).

Printed per scale: each run, then the median seconds per side (featurelake also per job),
rows/s (input transaction lines / median seconds), the ratios of the medians
featurelake/baseline (target <= 1.3x) and featurelake/baseline-stable, a sanity check per
baseline (customer and credit feature row counts of the last runs, and rows of the customer
features that differ from featurelake's, compared exactly).

Then, per scale, each side runs ``--cold-runs`` times (default 1) in a fresh driver, a new
Python process and JVM as one ``spark-submit`` gives it, the sides taking turns to go first:
featurelake's three jobs in one driver, as ``full-pipeline`` runs them; featurelake with a
fresh driver for each job, as the Airflow DAG (one ``spark-submit`` per stage) runs them; the
baseline. Printed: each run's seconds (timed as the warm runs are, without the sessions'
start, which is printed beside, with the JIT's compile time), the medians and their ratios to
the baseline's. In a fresh driver both baselines compile every stage once, so the cold runs use
the baseline as written. The cold runs' outputs are not compared (the warm runs' are).

Last, the growth of each side's median time between scales, warm and cold.

The machine's load average is printed at the start and end: on a shared machine the absolute
numbers move with it.
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
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from types import ModuleType

from featurelake.core.config import Settings, load_settings
from featurelake.core.runner import execute_job
from featurelake.core.session import build_spark_session
from featurelake.delta import DeltaTables
from featurelake.lakehouse.gold import GOLD_CONFIG_FILE, GoldConfig, load_gold_config
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StringType, StructField, StructType

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("online_retail", "credit_clients")
SILVER_TABLES = ("transactions", "credit_clients")
_CORRUPT = "_corrupt_record"
RETAIL_COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
MONTHS = (1, 2, 3, 4, 5, 6)
# Credit file columns by position; the header's names (PAY_0, default.payment.next.month) are
# replaced by plain ones so the SQL needs no quoting.
CREDIT_COLUMNS = (
    "id",
    "limit_bal",
    "sex",
    "education",
    "marriage",
    "age",
    *[f"pay_status_{k}" for k in MONTHS],
    *[f"bill_amt_{k}" for k in MONTHS],
    *[f"pay_amt_{k}" for k in MONTHS],
    "default_next_month",
)


def _load_job(name: str) -> ModuleType:
    from featurelake.core.pipeline import load_job_module

    return load_job_module(name)


JOBS = {name: _load_job(name) for name in ("generate_data", "bronze", "silver", "gold")}


def _run(spark: SparkSession, job: str, module: str, argv: list[str]) -> float:
    """Run one featurelake job in this session; return its wall-clock seconds."""
    mod = JOBS[module]
    started = time.perf_counter()
    outcome = execute_job(job, mod.main, argv=argv, add_arguments=mod.add_arguments, spark=spark)
    seconds = time.perf_counter() - started
    if outcome.code != 0:
        raise RuntimeError(f"job {job} failed ({outcome.code}): {outcome.summary.get('error')}")
    return seconds


def jit_seconds(spark: SparkSession) -> float:
    """The driver JVM's JIT compile time so far: elapsed seconds summed over compiler threads."""
    management = spark.sparkContext._jvm.java.lang.management.ManagementFactory
    return management.getCompilationMXBean().getTotalCompilationTime() / 1000


def _common(lake: Path, landing: Path) -> list[str]:
    return [
        "--conf-dir",
        str(ROOT / "conf"),
        "--conf",
        f"lakehouse.root={lake}",
        "--conf",
        f"lakehouse.landing={landing}",
        "--conf",
        "logging.level=WARNING",
    ]


# --------------------------------------------------------------------------------------------
# (a) featurelake
# --------------------------------------------------------------------------------------------


def generate(spark: SparkSession, landing: Path, transactions: int, customers: int) -> float:
    """Synthetic landing files for one scale (untimed by the comparison)."""
    argv = [
        *_common(landing.parent / "gen-lake", landing),
        "--out",
        str(landing),
        "--transactions",
        str(transactions),
        "--customers",
        str(customers),
    ]
    return _run(spark, "generate-data", "generate_data", argv)


FEATURELAKE_JOBS = ("bronze", "silver", "gold")


def run_featurelake(
    spark: SparkSession,
    lake: Path,
    landing: Path,
    as_of: date,
    jobs: tuple[str, ...] = FEATURELAKE_JOBS,
) -> dict[str, float]:
    """bronze -> silver -> gold (latest snapshot) into a lakehouse; seconds per job.

    ``jobs`` runs some of them only, on the lakehouse the earlier ones left.
    """
    common = _common(lake, landing)
    argv = {
        "bronze": [*common, *(arg for s in SOURCES for arg in ("--source", s))],
        "silver": [*common, *(arg for t in SILVER_TABLES for arg in ("--table", t))],
        "gold": [*common, "--as-of", as_of.isoformat(), "--no-daily"],
    }
    return {job: _run(spark, job, job, argv[job]) for job in jobs}


# --------------------------------------------------------------------------------------------
# (b) the baseline: one hand-written Spark SQL job
# --------------------------------------------------------------------------------------------


def _raw_csv(spark: SparkSession, folder: Path, columns: tuple[str, ...]) -> DataFrame:
    # The generator's files by name (a list, as bronze reads them; no glob for Spark to probe).
    files = sorted(str(p) for p in folder.glob("*.csv*") if not p.name.startswith((".", "_")))
    schema = StructType([StructField(c, StringType()) for c in (*columns, _CORRUPT)])
    return (
        spark.read.schema(schema)
        .options(
            header=True,
            quote='"',
            escape='"',
            mode="PERMISSIVE",
            columnNameOfCorruptRecord=_CORRUPT,
        )
        .csv(files)
    )


CUSTOMER_SQL = """
WITH typed AS (
  SELECT upper(nullif(trim(InvoiceNo), ''))                                   AS invoice_no,
         nullif(trim(StockCode), '')                                          AS stock_code,
         regexp_replace(nullif(trim(Description), ''), '\\\\s+', ' ')         AS description,
         try_cast(trim(Quantity) AS INT)                                      AS quantity,
         try_to_timestamp(trim(InvoiceDate), 'yyyy-MM-dd HH:mm:ss')           AS invoice_ts,
         try_cast(trim(UnitPrice) AS DOUBLE)                                  AS unit_price,
         regexp_replace(nullif(trim(CustomerID), ''), '^([0-9]+)\\\\.0+$', '$1') AS customer_id,
         regexp_replace(nullif(trim(Country), ''), '\\\\s+', ' ')             AS country
  FROM {raw}
  WHERE _corrupt_record IS NULL
),
clean AS (  -- the silver rules; then exact duplicates removed
  SELECT DISTINCT invoice_no, stock_code, description, quantity, invoice_ts, unit_price,
         customer_id, country, startswith(invoice_no, 'C') AS is_cancellation,
         CAST(quantity * unit_price AS DOUBLE) AS line_amount
  FROM typed
  WHERE invoice_no RLIKE '^C?[0-9]{{{{6,}}}}$' AND stock_code IS NOT NULL
    AND quantity IS NOT NULL AND invoice_ts IS NOT NULL AND unit_price IS NOT NULL
    AND customer_id RLIKE '^[0-9]+$' AND country IS NOT NULL
    AND (startswith(invoice_no, 'C') OR (quantity > 0 AND unit_price > 0))
    AND (NOT startswith(invoice_no, 'C') OR quantity < 0)
    AND invoice_ts <= {now}
),
lines AS (
  SELECT *, CAST(line_amount AS DECIMAL(24,6)) AS amount FROM clean WHERE invoice_ts <= {as_of}
),
invoices AS (  -- an invoice counts from its first line; its country is that line's
  SELECT customer_id, invoice_no, is_cancellation, min(invoice_ts) AS first_ts,
         min(struct(invoice_ts, country)).country AS country
  FROM lines GROUP BY customer_id, invoice_no, is_cancellation
),
per_invoice AS (
  SELECT customer_id,
         count_if(NOT is_cancellation)                                   AS frequency,
         count(*)                                                        AS invoices,
         count_if(is_cancellation)                                       AS cancelled_invoices,
         {orders}
  FROM invoices GROUP BY customer_id
),
top_country AS (
  SELECT customer_id, min(struct(-n, country)).country AS country
  FROM (SELECT customer_id, country, count(*) AS n FROM invoices GROUP BY customer_id, country)
  GROUP BY customer_id
),
per_line AS (
  SELECT customer_id,
         min(CASE WHEN NOT is_cancellation THEN invoice_ts END)          AS first_purchase_ts,
         max(CASE WHEN NOT is_cancellation THEN invoice_ts END)          AS last_purchase_ts,
         CAST(sum(amount) AS DOUBLE)                                     AS monetary,
         CAST(sum(CASE WHEN NOT is_cancellation THEN amount ELSE 0 END) AS DOUBLE)
                                                                         AS purchase_amount,
         CAST(sum(CASE WHEN NOT is_cancellation THEN quantity ELSE 0 END) AS BIGINT)
                                                                         AS purchase_quantity,
         count(DISTINCT CASE WHEN NOT is_cancellation THEN stock_code END)
                                                                         AS distinct_products,
         {spend}
  FROM lines GROUP BY customer_id
),
features AS (
  SELECT l.*, i.frequency, i.invoices, i.cancelled_invoices, {orders_cols}, c.country,
         CAST(floor((unix_micros({as_of}) - unix_micros(last_purchase_ts)) / 86400000000)
              AS INT) AS recency_days,
         CAST(floor((unix_micros({as_of}) - unix_micros(first_purchase_ts)) / 86400000000)
              AS INT) AS tenure_days,
         i.frequency > 0 AS scored
  FROM per_line l JOIN per_invoice i USING (customer_id) JOIN top_country c USING (customer_id)
),
scored AS (  -- score = ceil(q * k / n), k = scored customers no better than this one
  SELECT *,
    CASE WHEN scored THEN CAST(({q} * count(*) OVER (PARTITION BY scored ORDER BY recency_days DESC)
         + count(*) OVER (PARTITION BY scored) - 1) DIV count(*) OVER (PARTITION BY scored)
         AS INT) END AS r_score,
    CASE WHEN scored THEN CAST(({q} * count(*) OVER (PARTITION BY scored ORDER BY frequency)
         + count(*) OVER (PARTITION BY scored) - 1) DIV count(*) OVER (PARTITION BY scored)
         AS INT) END AS f_score,
    CASE WHEN scored THEN CAST(({q} * count(*) OVER (PARTITION BY scored ORDER BY monetary)
         + count(*) OVER (PARTITION BY scored) - 1) DIV count(*) OVER (PARTITION BY scored)
         AS INT) END AS m_score
  FROM features
)
SELECT customer_id, {as_of} AS as_of_ts, to_date({as_of}) AS as_of_date, recency_days,
       frequency, monetary, r_score, f_score, m_score,
       CAST(r_score + f_score + m_score AS INT) AS rfm_score, tenure_days,
       CAST(CASE WHEN frequency > 0 THEN purchase_amount / frequency END AS DOUBLE)
         AS avg_basket_value,
       CAST(CASE WHEN frequency > 0 THEN purchase_quantity / frequency END AS DOUBLE)
         AS avg_basket_size,
       distinct_products,
       CAST(CASE WHEN invoices > 0 THEN cancelled_invoices / invoices END AS DOUBLE)
         AS cancellation_rate,
       {window_cols}, country
FROM scored
"""


# "Now" for the baseline's not-in-the-future rule. As hand-written: current_timestamp(), which
# Spark turns into a literal compiled into the scan stage's code, new each run. Kept out of
# the code (as featurelake's run_constant does): the same value, the stage's classes reused.
NOW_AS_WRITTEN = "current_timestamp()"
NOW_OUT_OF_CODE = "element_at(array(current_timestamp()), spark_partition_id() * 0 + 1)"


def customer_sql(config: GoldConfig, as_of: datetime, now: str = NOW_AS_WRITTEN) -> str:
    """The baseline's customer-features query over ``{raw}`` (the raw CSV rows)."""
    windows = config.customers.windows_days
    ts = f"TIMESTAMP '{as_of.isoformat(sep=' ')}'"

    def since(w: int, column: str) -> str:
        return f"{column} > {ts} - INTERVAL {int(w)} DAYS"

    orders = ",\n         ".join(
        f"count_if(NOT is_cancellation AND {since(w, 'first_ts')}) AS orders_{w}d" for w in windows
    )
    spend = ",\n         ".join(
        f"CAST(sum(CASE WHEN {since(w, 'invoice_ts')} THEN amount ELSE 0 END) AS DOUBLE) "
        f"AS spend_{w}d"
        for w in windows
    )
    window_cols = ", ".join([f"spend_{w}d" for w in windows] + [f"orders_{w}d" for w in windows])
    return CUSTOMER_SQL.format(
        raw="{raw}",
        as_of=ts,
        now=now,
        orders=orders,
        spend=spend,
        q=config.customers.rfm_quantiles,
        orders_cols=", ".join(f"i.orders_{w}d" for w in windows),
        window_cols=window_cols,
    )


def credit_sql(config: GoldConfig) -> str:
    """The baseline's credit query over ``{raw}``: features and the label in one frame."""
    cred = config.credit
    edges = list(cred.age_bin_edges)
    labels = [
        f"<{edges[0]}",
        *[f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:], strict=False)],
        f"{edges[-1]}+",
    ]
    age_bin = (
        "CASE WHEN age IS NULL THEN NULL "
        + " ".join(
            f"WHEN age < {e} THEN '{label}'" for e, label in zip(edges, labels, strict=False)
        )
        + f" ELSE '{labels[-1]}' END"
    )
    ints = [
        "sex",
        "education",
        "marriage",
        "age",
        *[f"pay_status_{k}" for k in MONTHS],
        "default_next_month",
    ]
    doubles = ["limit_bal", *[f"bill_amt_{k}" for k in MONTHS], *[f"pay_amt_{k}" for k in MONTHS]]
    typed = ", ".join(
        ["try_cast(trim(id) AS BIGINT) AS id"]
        + [f"try_cast(trim({c}) AS INT) AS {c}" for c in ints]
        + [f"try_cast(trim({c}) AS DOUBLE) AS {c}" for c in doubles]
    )
    not_null = " AND ".join(f"{c} IS NOT NULL" for c in ("id", *ints, *doubles))
    rules = " AND ".join(
        [
            "limit_bal > 0",
            "sex IN (1, 2)",
            "education IN (1, 2, 3, 4)",
            "marriage IN (1, 2, 3)",
            "age BETWEEN 18 AND 100",
            "default_next_month IN (0, 1)",
        ]
        + [f"pay_status_{k} BETWEEN -2 AND 9" for k in MONTHS]
        + [f"pay_amt_{k} >= 0" for k in MONTHS]
    )
    # least-squares slope of the bills against x = 6 - k (x grows toward the recent month)
    trend = "(0.0 " + " ".join(f"+ {(6 - k) - 2.5} * bill_amt_{k}" for k in MONTHS) + ") / 17.5"
    ratios = ", ".join(
        f"CASE WHEN bill_amt_{k} IS NULL OR pay_amt_{k} IS NULL THEN NULL "
        f"WHEN bill_amt_{k} <= 0 THEN CAST({float(cred.zero_bill_pay_ratio)} AS DOUBLE) "
        f"ELSE pay_amt_{k} / bill_amt_{k} END AS pay_ratio_{k}"
        for k in MONTHS
    )
    utils = ", ".join(
        f"CASE WHEN limit_bal > 0 THEN bill_amt_{k} / limit_bal END AS utilization_{k}"
        for k in MONTHS
    )
    util_sum = "(0.0D " + " ".join(f"+ coalesce(utilization_{k}, 0.0D)" for k in MONTHS) + ")"
    util_n = " + ".join(f"CAST(utilization_{k} IS NOT NULL AS INT)" for k in MONTHS)
    delinquent = " + ".join(f"CASE WHEN pay_status_{k} > 0 THEN 1 ELSE 0 END" for k in MONTHS)
    statuses = ", ".join(f"pay_status_{k}" for k in MONTHS)
    columns = ", ".join(CREDIT_COLUMNS)
    normalized = columns.replace(
        "education,", "CASE WHEN education IN (0, 5, 6) THEN 4 ELSE education END AS education,"
    ).replace("marriage,", "CASE WHEN marriage = 0 THEN 3 ELSE marriage END AS marriage,")
    return f"""
WITH typed AS (
  SELECT {typed} FROM {{raw}} WHERE _corrupt_record IS NULL
),
normalized AS (
  SELECT {normalized} FROM typed WHERE {not_null}
),
clients AS (  -- one row per client
  SELECT {columns} FROM (
    SELECT *, row_number() OVER (PARTITION BY id ORDER BY id) AS _n
    FROM normalized WHERE {rules}
  ) WHERE _n = 1
),
with_ratios AS (
  SELECT *, {age_bin} AS age_bin, CAST({trend} AS DOUBLE) AS bill_trend, {ratios}, {utils}
  FROM clients
)
SELECT id, limit_bal, age, age_bin, sex, education, marriage, bill_trend,
       {", ".join(f"pay_ratio_{k}" for k in MONTHS)},
       {", ".join(f"utilization_{k}" for k in MONTHS)},
       CAST(CASE WHEN {util_n} > 0 THEN {util_sum} / ({util_n}) END AS DOUBLE)
         AS avg_utilization,
       CAST({delinquent} AS INT) AS delinquent_months,
       CAST(greatest(greatest({statuses}), 0) AS INT) AS worst_delay,
       {statuses}, {", ".join(f"bill_amt_{k}" for k in MONTHS)},
       {", ".join(f"pay_amt_{k}" for k in MONTHS)}, default_next_month
FROM with_ratios
"""


def run_baseline(
    spark: SparkSession,
    landing: Path,
    out: Path,
    config: GoldConfig,
    as_of: datetime,
    now: str = NOW_AS_WRITTEN,
) -> float:
    """One Spark SQL job: raw CSV -> cleaned -> features -> Parquet. Returns seconds."""
    started = time.perf_counter()
    retail = _raw_csv(spark, landing / "online_retail", RETAIL_COLUMNS)
    credit = _raw_csv(spark, landing / "credit_clients", CREDIT_COLUMNS)
    customers = spark.sql(customer_sql(config, as_of, now), raw=retail)
    customers.write.mode("overwrite").parquet(str(out / "customer_features"))
    clients = spark.sql(credit_sql(config), raw=credit).cache()
    try:
        clients.drop("default_next_month").write.mode("overwrite").parquet(
            str(out / "credit_features")
        )
        clients.select("id", "default_next_month").write.mode("overwrite").parquet(
            str(out / "credit_labels")
        )
    finally:
        clients.unpersist()
    return time.perf_counter() - started


# --------------------------------------------------------------------------------------------
# Comparison and reporting
# --------------------------------------------------------------------------------------------


@dataclass
class ScaleResult:
    transactions: int
    featurelake_runs: list[dict[str, float]] = field(default_factory=list)
    baseline_runs: list[float] = field(default_factory=list)
    stable_runs: list[float] = field(default_factory=list)  # baseline, "now" out of the code
    cold_featurelake: list[float] = field(default_factory=list)  # each in a fresh driver
    cold_per_job: list[float] = field(default_factory=list)  # a fresh driver for each job
    cold_baseline: list[float] = field(default_factory=list)

    @property
    def featurelake(self) -> dict[str, float]:
        """Median seconds per job."""
        return {
            job: statistics.median(run[job] for run in self.featurelake_runs)
            for job in self.featurelake_runs[0]
        }

    @property
    def featurelake_total(self) -> float:
        """Median of the runs' total seconds."""
        return statistics.median(sum(run.values()) for run in self.featurelake_runs)

    @property
    def baseline(self) -> float:
        return statistics.median(self.baseline_runs)

    @property
    def stable(self) -> float:
        return statistics.median(self.stable_runs)


def compare_outputs(spark: SparkSession, lake: Path, out: Path) -> str:
    """Row counts of both sides and the customer-feature rows that differ (exact compare)."""
    tables = DeltaTables(spark)
    gold = tables.read(str(lake / "gold" / "customer_features"), record=False)
    base = spark.read.parquet(str(out / "customer_features")).select(*gold.columns)
    base = base.select(*[F.col(f.name).cast(f.dataType) for f in gold.schema.fields])
    gold_credit = tables.read(str(lake / "gold" / "credit_features"), record=False).count()
    base_credit = spark.read.parquet(str(out / "credit_features")).count()
    gold_rows, base_rows = gold.count(), base.count()
    only_gold, only_base = gold.exceptAll(base).count(), base.exceptAll(gold).count()
    verdict = (
        "OK"
        if (gold_rows == base_rows and gold_credit == base_credit and only_gold == only_base == 0)
        else "MISMATCH"
    )
    return (
        f"customer_features rows: featurelake {gold_rows:,} baseline {base_rows:,}; "
        f"rows differing: {only_gold:,} only in featurelake, {only_base:,} only in baseline; "
        f"credit_features rows: featurelake {gold_credit:,} baseline {base_credit:,} "
        f"-> {verdict}"
    )


COLD_RESULT = "cold-result: "
COLD_SIDES = {  # side -> the fresh drivers it takes, one after another
    "featurelake": ("featurelake",),
    "featurelake, a driver per job": tuple(f"featurelake-{job}" for job in FEATURELAKE_JOBS),
    "baseline": ("baseline",),
}


def cold_side(side: str, landing: Path, out: Path, driver_memory: str) -> dict[str, float]:
    """One cold run of a side: its drivers in turn, into a fresh ``out``; their seconds summed."""
    shutil.rmtree(out, ignore_errors=True)
    total = {"work": 0.0, "session": 0.0, "process": 0.0, "jit": 0.0}
    for driver in COLD_SIDES[side]:
        for key, value in cold_run(driver, landing, out, driver_memory).items():
            total[key] += value
    return total


def cold_run(side: str, landing: Path, out: Path, driver_memory: str) -> dict[str, float]:
    """One side (or one featurelake job) in a fresh driver, Python and JVM, as one
    spark-submit runs it.

    Returns the side's seconds (``work``, as the warm runs time it), the session's start
    (``session``), the whole process (``process``) and the JIT's compile time (``jit``).
    """
    command = [
        sys.executable,
        __file__,
        "--cold-side",
        side,
        "--cold-landing",
        str(landing),
        "--cold-out",
        str(out),
        "--driver-memory",
        driver_memory,
    ]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, errors="replace")
    process = time.perf_counter() - started
    results = [line for line in proc.stdout.splitlines() if line.startswith(COLD_RESULT)]
    if proc.returncode != 0 or not results:
        raise RuntimeError(
            f"cold run of {side} failed (exit {proc.returncode}"
            f"{'' if results else ', no result line'}):\n"
            f"stdout:\n{proc.stdout[-1500:]}\nstderr:\n{proc.stderr[-3000:]}"
        )
    return {**json.loads(results[-1][len(COLD_RESULT) :]), "process": process}


def _cold_child(args: argparse.Namespace, settings: Settings, config: GoldConfig) -> None:
    """The child of ``cold_run``: start a session, run one side once, print its seconds."""
    as_of_day = date.fromisoformat(str(settings.synthetic.end_date))
    started = time.perf_counter()
    spark = _session(settings, args.driver_memory)
    session = time.perf_counter() - started
    try:
        landing, out = Path(args.cold_landing), Path(args.cold_out)
        if args.cold_side.startswith("featurelake"):
            _, _, job = args.cold_side.partition("-")
            work = sum(
                run_featurelake(
                    spark, out, landing, as_of_day, (job,) if job else FEATURELAKE_JOBS
                ).values()
            )
        else:
            work = run_baseline(spark, landing, out, config, datetime.combine(as_of_day, dtime.max))
        jit = jit_seconds(spark)
    finally:
        spark.stop()
    print(COLD_RESULT + json.dumps({"session": session, "work": work, "jit": jit}), flush=True)


def _session(settings: Settings, driver_memory: str) -> SparkSession:
    spark_settings = settings.spark.model_copy(
        update={
            "conf": {
                **settings.spark.conf,
                "spark.driver.memory": driver_memory,
                "spark.ui.showConsoleProgress": "false",
            }
        }
    )
    spark = build_spark_session("bench-bronze-to-gold", spark_settings)
    # Quiet: the baseline's positional CSV schema differs from the header names on purpose.
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run_scale(
    spark: SparkSession,
    settings: Settings,
    config: GoldConfig,
    work: Path,
    transactions: int,
    customers: int,
    *,
    repeat: int = 3,
    warmup: int = 3,
    cold: int = 1,
    driver_memory: str = "6g",
    check: bool = True,
) -> ScaleResult:
    """Generate one scale, warm up, time both sides ``repeat`` times, compare and print;
    then run each side ``cold`` times in a fresh driver."""
    scale_dir = work / f"scale-{transactions}"
    landing = scale_dir / "landing"
    gen_s = generate(spark, landing, transactions, customers)
    as_of_day = date.fromisoformat(str(settings.synthetic.end_date))
    as_of = datetime.combine(as_of_day, dtime.max)
    result = ScaleResult(transactions)
    print(
        f"\n== {transactions:,} transactions, {customers:,} customers "
        f"(generated in {gen_s:.1f} s, untimed)",
        flush=True,
    )
    order = ["featurelake", "baseline", "baseline-stable"]
    for run in range(warmup + repeat):
        timed = run >= warmup
        for side in order[run % 3 :] + order[: run % 3]:  # each side goes first in turn
            jit_before = jit_seconds(spark)
            if side == "featurelake":
                shutil.rmtree(scale_dir / "lake", ignore_errors=True)
                jobs = run_featurelake(spark, scale_dir / "lake", landing, as_of_day)
                if timed:
                    result.featurelake_runs.append(jobs)
                detail = ", ".join(f"{k} {v:.1f}" for k, v in jobs.items())
                line = f"{side:<16}{sum(jobs.values()):6.1f} s ({detail})"
            else:
                now = NOW_AS_WRITTEN if side == "baseline" else NOW_OUT_OF_CODE
                shutil.rmtree(scale_dir / side, ignore_errors=True)
                seconds = run_baseline(spark, landing, scale_dir / side, config, as_of, now)
                if timed:
                    (result.baseline_runs if side == "baseline" else result.stable_runs).append(
                        seconds
                    )
                line = f"{side:<16}{seconds:6.1f} s"
            label = f"run {run - warmup + 1}/{repeat}" if timed else f"warm-up {run + 1}/{warmup}"
            print(
                f"  {label:<12} {line}  [JIT {jit_seconds(spark) - jit_before:.1f} s]", flush=True
            )
    fl, base, stable = result.featurelake_total, result.baseline, result.stable
    stages = ", ".join(f"{k} {v:.1f}" for k, v in result.featurelake.items())
    print(f"median of {repeat} timed run(s) per side:")
    print(f"featurelake      {fl:8.1f} s  {transactions / fl:>10,.0f} rows/s   ({stages})")
    print(f"baseline         {base:8.1f} s  {transactions / base:>10,.0f} rows/s   (as written)")
    print(
        f"baseline-stable  {stable:8.1f} s  {transactions / stable:>10,.0f} rows/s   "
        f"(its 'now' kept out of the generated code)"
    )
    print(
        f"ratio featurelake/baseline: {fl / base:.2f}x (target <= 1.3x); "
        f"featurelake/baseline-stable: {fl / stable:.2f}x"
    )
    if check:
        for side in ("baseline", "baseline-stable"):
            print(
                f"sanity ({side}): " + compare_outputs(spark, scale_dir / "lake", scale_dir / side),
                flush=True,
            )
    if cold:
        print(
            f"cold: each side in a fresh driver, {cold} time(s), taking turns to go first "
            f"(there the baseline compiles everything once, as written or not):",
            flush=True,
        )
        runs = {
            "featurelake": result.cold_featurelake,
            "featurelake, a driver per job": result.cold_per_job,
            "baseline": result.cold_baseline,
        }
        sides = list(COLD_SIDES)
        for run in range(cold):
            for side in sides[run % 3 :] + sides[: run % 3]:
                seconds = cold_side(side, landing, scale_dir / "cold", driver_memory)
                runs[side].append(seconds["work"])
                print(
                    f"  cold {run + 1}/{cold}   {side:<30}{seconds['work']:6.1f} s  (session "
                    f"start {seconds['session']:.1f} s, whole process "
                    f"{seconds['process']:.1f} s)  [JIT {seconds['jit']:.1f} s, with the "
                    f"session's start]",
                    flush=True,
                )
        base_cold = statistics.median(result.cold_baseline)
        print(f"cold medians: baseline {base_cold:.1f} s ({transactions / base_cold:,.0f} rows/s)")
        for side in sides[:2]:
            seconds = statistics.median(runs[side])
            print(
                f"  {side:<30}{seconds:6.1f} s ({transactions / seconds:,.0f} rows/s): ratio "
                f"{seconds / base_cold:.2f}x",
                flush=True,
            )
    return result


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=[1_000_000, 10_000_000],
        help="transaction lines per scale",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="timed runs per side and scale, alternating which side goes first; "
        "the medians are compared (default 3)",
    )
    parser.add_argument(
        "--lines-per-customer",
        type=int,
        default=50,
        help="customers = transactions / this (default 50)",
    )
    parser.add_argument(
        "--warmup-runs",
        type=int,
        default=3,
        help="untimed runs per side and scale before the timed ones (default 3)",
    )
    parser.add_argument(
        "--cold-runs",
        type=int,
        default=1,
        help="runs per side and scale, after the timed ones, each in a fresh "
        "driver as one spark-submit runs it (default 1; 0 for none)",
    )
    parser.add_argument("--no-check", action="store_true", help="skip the output comparison")
    # A cold run's child process (see cold_run).
    parser.add_argument(
        "--cold-side",
        help=argparse.SUPPRESS,
        choices=[driver for side in COLD_SIDES.values() for driver in side],
    )
    parser.add_argument("--cold-landing", help=argparse.SUPPRESS)
    parser.add_argument("--cold-out", help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the generated data and tables")
    parser.add_argument("--driver-memory", default="6g")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.warmup_runs < 0 or args.cold_runs < 0:
        parser.error("--warmup-runs and --cold-runs must be 0 or more")
    if args.cold_side and not (args.cold_landing and args.cold_out):
        parser.error("--cold-side needs --cold-landing and --cold-out")

    settings = load_settings(ROOT / "conf")
    config = load_gold_config(settings.conf_path(GOLD_CONFIG_FILE))
    if args.cold_side:
        _cold_child(args, settings, config)
        return
    spark = _session(settings, args.driver_memory)
    work = Path(tempfile.mkdtemp(prefix="bench-bronze-to-gold-"))
    print(
        f"load average at start: {_load()}; master {spark.sparkContext.master}, shuffle "
        f"partitions {settings.spark.shuffle_partitions}, driver memory {args.driver_memory}; "
        f"as of {settings.synthetic.end_date}; latest snapshot only (gold --no-daily); "
        f"work dir {work}",
        flush=True,
    )
    results: list[ScaleResult] = []
    try:
        for scale in args.scales:
            results.append(
                run_scale(
                    spark,
                    settings,
                    config,
                    work,
                    scale,
                    max(1, scale // args.lines_per_customer),
                    repeat=args.repeat,
                    warmup=args.warmup_runs,
                    cold=args.cold_runs,
                    driver_memory=args.driver_memory,
                    check=not args.no_check,
                )
            )
            if not args.keep:
                shutil.rmtree(work / f"scale-{scale}", ignore_errors=True)
        if len(results) > 1:
            first = results[0]
            print()
            for later in results[1:]:
                factor = later.transactions / first.transactions
                print(
                    f"growth {first.transactions:,} -> {later.transactions:,} ({factor:.0f}x "
                    f"data): featurelake {later.featurelake_total / first.featurelake_total:.2f}x"
                    f" time, baseline {later.baseline / first.baseline:.2f}x, baseline-stable "
                    f"{later.stable / first.stable:.2f}x"
                )
                if first.cold_featurelake and later.cold_featurelake:
                    cold = {
                        name: [statistics.median(getattr(r, name)) for r in (first, later)]
                        for name in ("cold_featurelake", "cold_per_job", "cold_baseline")
                    }
                    growth = {name: f"{b / a:.2f}x" for name, (a, b) in cold.items()}
                    print(
                        f"  cold: featurelake {growth['cold_featurelake']} time (a driver per "
                        f"job {growth['cold_per_job']}), baseline {growth['cold_baseline']}"
                    )
        print(f"load average at end: {_load()}")
    finally:
        if args.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        spark.stop()


if __name__ == "__main__":
    main()
