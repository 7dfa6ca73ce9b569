"""Synthetic generator: deterministic, the declared layouts, and dirt at the configured rates.

Rates are checked on the generated text with Python's csv/json modules (an independent parse),
with tolerances of about four standard deviations for the sample sizes used.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
from datetime import datetime
from pathlib import Path

import pytest
from featurelake.core.config import SyntheticSettings, load_settings
from featurelake.core.runner import run_job
from featurelake.delta import DeltaTables
from featurelake.devtools.synthetic import (
    CREDIT_CLIENT_COLUMNS,
    CUSTOMER_PROFILE_COLUMNS,
    FIRST_CUSTOMER_ID,
    ONLINE_RETAIL_COLUMNS,
    credit_client_lines,
    customer_profile_lines,
    online_retail_lines,
)
from featurelake.lakehouse.sources import load_sources

ROOT = Path(__file__).resolve().parents[1]
DIRTY = SyntheticSettings(
    seed=7,
    transactions=6000,
    customers=300,
    credit_clients=3000,
    lines_per_invoice=4,
    missing_customer_rate=0.2,
    cancellation_rate=0.1,
    bad_price_rate=0.05,
    duplicate_rate=0.05,
    malformed_rate=0.04,
    out_of_range_code_rate=0.1,
    future_date_rate=0.03,
)


def _lines(spark, generator, settings, rows, files=2):
    df = spark.range(0, rows, 1, files).transform(generator, settings=settings, files=files)
    return [r.value for r in df.collect()]


@pytest.fixture(scope="module")
def retail(spark):
    return _lines(spark, online_retail_lines, DIRTY, DIRTY.transactions)


@pytest.fixture(scope="module")
def credit(spark):
    return _lines(spark, credit_client_lines, DIRTY, DIRTY.credit_clients)


def _near(observed: int, total: int, rate: float) -> bool:
    sd = (total * rate * (1 - rate)) ** 0.5
    return abs(observed - total * rate) <= 4 * sd + 1


def test_layouts_equal_the_source_declarations():
    sources = load_sources(load_settings(ROOT / "conf"))
    assert ONLINE_RETAIL_COLUMNS == sources["online_retail"].column_names
    assert CREDIT_CLIENT_COLUMNS == sources["credit_clients"].column_names
    assert CUSTOMER_PROFILE_COLUMNS == sources["customer_profiles"].column_names


def test_same_seed_same_lines_other_seed_other_lines(spark):
    small = DIRTY.model_copy(update={"transactions": 200})
    first = _lines(spark, online_retail_lines, small, 200)
    assert first == _lines(spark, online_retail_lines, small, 200)
    other = _lines(spark, online_retail_lines, small.model_copy(update={"seed": 8}), 200)
    assert first != other


def test_one_header_per_file_then_every_line_plus_duplicates(retail):
    header = ",".join(ONLINE_RETAIL_COLUMNS)
    assert retail[0] == header and retail.count(header) == 2
    data = [line for line in retail if line != header]
    extra = len(data) - DIRTY.transactions
    # A duplicated line is written right after its original.
    adjacent_repeats = sum(1 for a, b in zip(data, data[1:], strict=False) if a == b)
    assert _near(extra, DIRTY.transactions, DIRTY.duplicate_rate)
    assert adjacent_repeats >= extra


def _rows(lines):
    header = ",".join(ONLINE_RETAIL_COLUMNS)
    return [row for row in csv.reader(dict.fromkeys(line for line in lines if line != header))]


def test_malformed_lines_at_rate_and_of_every_kind(retail):
    rows = _rows(retail)
    wrong_width = [r for r in rows if len(r) != 8]
    ok = [r for r in rows if len(r) == 8]
    bad_quantity = [r for r in ok if not r[3].lstrip("-").isdigit()]
    bad_date = [r for r in ok if r[4].startswith("2011-13-45")]
    malformed = len(wrong_width) + len(bad_quantity) + len(bad_date)
    assert _near(malformed, len(rows), DIRTY.malformed_rate)
    assert {len(r) for r in wrong_width} == {7, 9}
    assert bad_quantity and bad_date


def test_invoice_level_dirt_missing_customers_and_cancellations(retail):
    rows = [r for r in _rows(retail) if len(r) == 8]
    invoices = {}
    for r in rows:
        invoices.setdefault(r[0], r)
    invoice_count = len(invoices)
    missing = sum(1 for r in invoices.values() if r[6] == "")
    cancelled = [r for r in rows if r[0].startswith("C")]
    assert _near(missing, invoice_count, DIRTY.missing_customer_rate)
    assert _near(
        sum(1 for i in invoices if i.startswith("C")), invoice_count, DIRTY.cancellation_rate
    )
    assert all(r[3].startswith("-") for r in cancelled if r[3].lstrip("-").isdigit())
    assert all(not r[3].startswith("-") for r in rows if not r[0].startswith("C"))


def test_line_level_dirt_prices_and_future_dates(retail):
    rows = [r for r in _rows(retail) if len(r) == 8 and not r[4].startswith("2011-13")]
    bad_price = sum(1 for r in rows if float(r[5]) <= 0)
    assert _near(bad_price, len(rows), DIRTY.bad_price_rate)
    assert any(float(r[5]) < 0 for r in rows) and any(float(r[5]) == 0 for r in rows)
    end = datetime.fromisoformat(DIRTY.end_date)
    dates = [datetime.strptime(r[4], "%Y-%m-%d %H:%M:%S") for r in rows]
    future = sum(1 for d in dates if d.year > 2050)
    assert _near(future, len(rows), DIRTY.future_date_rate)
    past = [d for d in dates if d.year <= 2050]
    assert max(past) <= end.replace(hour=23, minute=59)
    assert (end - min(past)).days <= DIRTY.history_days


def test_quoted_descriptions_round_trip(retail):
    described = [r[2] for r in _rows(retail) if len(r) == 8]
    assert any("," in d for d in described) and any('"' in d for d in described)


def test_credit_codes_out_of_range_at_rate_and_default_share(credit):
    header = ",".join(CREDIT_CLIENT_COLUMNS)
    rows = [r for r in csv.reader(dict.fromkeys(credit)) if ",".join(r) != header]
    clean = [r for r in rows if len(r) == 25 and r[1].isdigit()]
    odd = [r for r in clean if r[3] in ("0", "5", "6") or r[4] == "0"]
    assert _near(len(odd), len(clean), DIRTY.out_of_range_code_rate)
    assert {r[3] for r in odd} - {"1", "2", "3", "4"} and any(r[4] == "0" for r in odd)
    default_share = sum(int(r[24]) for r in clean) / len(clean)
    assert 0.15 <= default_share <= 0.35
    assert _near(len(rows) - len(clean), len(rows), DIRTY.malformed_rate)
    assert sorted(int(r[0]) for r in rows if r[0].isdigit()) == list(range(1, 3001))


def _clean_clients(spark, **settings):
    """Parsed clean credit-client rows: (ID, LIMIT_BAL, AGE, late months, utilisation, label)."""
    config = SyntheticSettings(
        credit_clients=6000, duplicate_rate=0, malformed_rate=0, out_of_range_code_rate=0,
        **settings,
    )  # fmt: skip
    rows = []
    for line in _lines(spark, credit_client_lines, config, config.credit_clients):
        r = line.split(",")
        if r[0] == "ID":
            continue
        values = [int(v) for v in r]
        late = sum(1 for v in values[6:12] if v > 0)
        bills = values[12:18]
        utilization = sum(bills) / 6 / values[1]
        rows.append((values[0], values[1], values[5], late, utilization, values[24]))
    return rows


def _default_rate(rows, keep) -> float:
    chosen = [r[5] for r in rows if keep(r)]
    return sum(chosen) / len(chosen)


def test_the_baseline_label_follows_late_payments(spark):
    rows = _clean_clients(spark, seed=11, end_date="2026-01-31", concept_drift_from="2026-02-01")
    # CREDIT_CONCEPTS["baseline"]: +1.0 log-odds per late month, +2.0 per unit of utilisation
    never_late = _default_rate(rows, lambda r: r[3] == 0)
    often_late = _default_rate(rows, lambda r: r[3] >= 3)
    assert often_late - never_late > 0.4
    assert 0.15 <= _default_rate(rows, lambda r: True) <= 0.3


def test_from_the_drift_date_utilisation_drives_the_label_instead(spark):
    rows = _clean_clients(
        spark,
        seed=11,
        end_date="2026-02-01",
        concept_drift_from="2026-02-01",
        credit_first_id=10_001,
    )
    # CREDIT_CONCEPTS["drifted"]: +0.3 per late month, +4.0 per unit of utilisation
    late_gap = _default_rate(rows, lambda r: r[3] >= 3) - _default_rate(rows, lambda r: r[3] == 0)
    high_use = _default_rate(rows, lambda r: r[4] > 0.8)
    low_use = _default_rate(rows, lambda r: r[4] < 0.2)
    assert late_gap < 0.2  # the baseline's is above 0.4
    assert high_use - low_use > 0.3
    # a later batch adds clients: its IDs start past the first batch's
    assert min(r[0] for r in rows) == 10_001 and max(r[0] for r in rows) == 16_000


def test_profiles_are_json_lines_with_ids_matching_transactions(spark):
    lines = _lines(spark, customer_profile_lines, DIRTY, DIRTY.customers)
    parsed, broken = [], 0
    for line in dict.fromkeys(lines):
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            broken += 1
    assert _near(broken, DIRTY.customers, DIRTY.malformed_rate)
    assert all(list(p) == [k for k in CUSTOMER_PROFILE_COLUMNS if k in p] for p in parsed)
    ids = {int(p["customer_id"]) for p in parsed}
    assert ids <= set(range(FIRST_CUSTOMER_ID, FIRST_CUSTOMER_ID + DIRTY.customers))
    assert all(p["email"].endswith("@example.com") for p in parsed if p.get("email"))


def _load_job(name):
    from featurelake.core.pipeline import load_job_module

    return load_job_module(name)


GENERATE = _load_job("generate_data")
BRONZE = _load_job("bronze")


def _generate(spark, out: Path, lake: Path) -> int:
    argv = [
        "--conf-dir",
        str(ROOT / "conf"),
        "--conf",
        f"lakehouse.root={lake}",
        "--out",
        str(out),
        "--transactions",
        "3000",
        "--customers",
        "200",
        "--credit-clients",
        "500",
        "--rows-per-file",
        "1000",
        "--seed",
        "3",
        "--conf",
        "synthetic.malformed_rate=0.02",
    ]
    return run_job(
        "generate-data", GENERATE.main, argv=argv, add_arguments=GENERATE.add_arguments, spark=spark
    )


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_job_writes_byte_identical_files_for_a_seed_and_bronze_keeps_every_line(spark, tmp_path):
    assert _generate(spark, tmp_path / "one", tmp_path / "lake") == 0
    assert _generate(spark, tmp_path / "two", tmp_path / "lake") == 0
    first = _digests(tmp_path / "one")
    assert first == _digests(tmp_path / "two")
    assert sorted(first) == [
        "credit_clients/credit_clients-seed3-part00000.csv.gz",
        "customer_profiles/customer_profiles-seed3-part00000.json.gz",
        "online_retail/online_retail-seed3-part00000.csv.gz",
        "online_retail/online_retail-seed3-part00001.csv.gz",
        "online_retail/online_retail-seed3-part00002.csv.gz",
    ]
    # Bronze over the generated files: every non-header line is a row.
    lake = tmp_path / "lake"
    argv = [
        "--conf-dir",
        str(ROOT / "conf"),
        "--conf",
        f"lakehouse.root={lake}",
        "--conf",
        f"lakehouse.landing={tmp_path / 'one'}",
        "--source",
        "online_retail",
    ]
    assert (
        run_job("bronze", BRONZE.main, argv=argv, add_arguments=BRONZE.add_arguments, spark=spark)
        == 0
    )
    header = ",".join(ONLINE_RETAIL_COLUMNS)
    lines, wrong_width = 0, 0
    for path in sorted((tmp_path / "one" / "online_retail").iterdir()):
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for row_text in handle.read().splitlines():
                if row_text != header:
                    lines += 1
                    wrong_width += len(next(csv.reader([row_text]))) != 8
    bronze = DeltaTables(spark).read(str(lake / "bronze" / "online_retail"), record=False)
    assert bronze.count() == lines
    assert bronze.where("_rescued_data IS NOT NULL").count() == wrong_width > 0


def _generate_if_missing(spark, landing: Path) -> int:
    argv = [
        "--conf-dir",
        str(ROOT / "conf"),
        "--conf",
        f"lakehouse.root={landing.parent}",
        "--conf",
        f"lakehouse.landing={landing}",
        "--transactions",
        "300",
        "--customers",
        "50",
        "--credit-clients",
        "100",
        "--seed",
        "3",
        "--if-missing",
    ]
    return run_job(
        "generate-data", GENERATE.main, argv=argv, add_arguments=GENERATE.add_arguments, spark=spark
    )


def _mtimes(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_if_missing_generates_into_an_empty_landing_then_leaves_it_alone(spark, tmp_path):
    landing = tmp_path / "landing"
    assert _generate_if_missing(spark, landing) == 0
    files = sorted(_mtimes(landing))
    assert files == [
        "credit_clients/credit_clients-seed3-part00000.csv.gz",
        "customer_profiles/customer_profiles-seed3-part00000.json.gz",
        "online_retail/online_retail-seed3-part00000.csv.gz",
    ]
    # Back-date the files: a second run that rewrote anything would give them a new mtime.
    for path in landing.rglob("*.gz"):
        os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert _generate_if_missing(spark, landing) == 0
    assert _mtimes(landing) == dict.fromkeys(files, 1_000_000_000)


def test_if_missing_generates_only_sources_without_files(spark, tmp_path):
    landing = tmp_path / "landing"
    own = landing / "online_retail" / "real.csv"
    own.parent.mkdir(parents=True)
    own.write_text(",".join(ONLINE_RETAIL_COLUMNS) + "\n")
    # Names bronze ignores (temporary files of a writer) do not count as landed files.
    (landing / "credit_clients").mkdir()
    (landing / "credit_clients" / "_partial.csv").write_text("ID\n")
    assert _generate_if_missing(spark, landing) == 0
    assert sorted(_mtimes(landing)) == [
        "credit_clients/_partial.csv",
        "credit_clients/credit_clients-seed3-part00000.csv.gz",
        "customer_profiles/customer_profiles-seed3-part00000.json.gz",
        "online_retail/real.csv",
    ]
