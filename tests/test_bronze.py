"""Bronze: line parsing keeps every row, lineage, the file ledger and the bronze job."""

from __future__ import annotations

import gzip
import importlib
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
from chispa import assert_df_equality
from featurelake.core.errors import DataError
from featurelake.core.runner import run_job
from featurelake.delta import DeltaTables
from featurelake.lakehouse.bronze import (
    ChangedFileError,
    LandedFile,
    bronze_schema,
    parse_csv_header,
    parse_csv_lines,
    parse_json_lines,
    plan_ingest,
    read_source_rows,
    source_file_from_uri,
    with_lineage,
)
from featurelake.lakehouse.sources import ColumnSpec, ReaderOptions, SourceSpec
from pyspark.sql import functions as F

ROOT = Path(__file__).resolve().parents[1]
SPEC = SourceSpec(
    name="t",
    path="t/*.csv",
    format="csv",
    columns=(ColumnSpec(name="a"), ColumnSpec(name="b"), ColumnSpec(name="c")),
)
OUT = "a string, b string, c string, _rescued_data string, _source_file string"


def _lines(spark, *values, source="/f.csv"):
    return spark.createDataFrame([(v, source) for v in values], "value string, _source_file string")


# --------------------------------------------------------------------------------------------
# CSV and JSON lines
# --------------------------------------------------------------------------------------------


def test_clean_lines_split_into_columns_and_header_dropped(spark):
    out = _lines(spark, "a,b,c", "1,x,2", "3,,4").transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "c"), header_line="a,b,c"
    )
    expected = spark.createDataFrame(
        [("1", "x", "2", None, "/f.csv"), ("3", None, "4", None, "/f.csv")], OUT
    )
    assert_df_equality(out, expected, ignore_row_order=True)


def test_quoted_commas_and_doubled_quotes_stay_in_one_field(spark):
    out = _lines(spark, '1,"AIRLINE LOUNGE,METAL SIGN",2', '3,"RECORD 7"" SIZE ",4').transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "c"), header_line="a,b,c"
    )
    expected = spark.createDataFrame(
        [
            ("1", "AIRLINE LOUNGE,METAL SIGN", "2", None, "/f.csv"),
            ("3", 'RECORD 7" SIZE ', "4", None, "/f.csv"),
        ],
        OUT,
    )
    assert_df_equality(out, expected, ignore_row_order=True)


def test_line_with_missing_field_is_kept_with_its_raw_text(spark):
    out = _lines(spark, "1,x").transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "c"), header_line="a,b,c"
    )
    expected = spark.createDataFrame([("1", "x", None, "1,x", "/f.csv")], OUT)
    assert_df_equality(out, expected)


def test_line_with_extra_field_is_rescued(spark):
    out = _lines(spark, "1,x,2,EXTRA").transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "c"), header_line="a,b,c"
    )
    expected = spark.createDataFrame([("1", "x", "2", "1,x,2,EXTRA", "/f.csv")], OUT)
    assert_df_equality(out, expected)


def test_unterminated_quote_is_rescued(spark):
    out = _lines(spark, '1,"open,2').transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "c"), header_line="a,b,c"
    )
    assert out.collect()[0]["_rescued_data"] == '1,"open,2'


def test_undeclared_header_column_rescues_every_line_of_the_file(spark):
    out = _lines(spark, "a,b,z,c", "1,x,9,2").transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "z", "c"), header_line="a,b,z,c"
    )
    expected = spark.createDataFrame([("1", "x", "2", "1,x,9,2", "/f.csv")], OUT)
    assert_df_equality(out, expected)


def test_columns_are_matched_by_header_name_not_position(spark):
    out = _lines(spark, "c,a,b", "2,1,x").transform(
        parse_csv_lines, spec=SPEC, header=("c", "a", "b"), header_line="c,a,b"
    )
    expected = spark.createDataFrame([("1", "x", "2", None, "/f.csv")], OUT)
    assert_df_equality(out, expected)


def test_blank_lines_are_not_rows_and_headerless_files_are_positional(spark):
    out = _lines(spark, "1,x,2", "").transform(
        parse_csv_lines, spec=SPEC, header=None, header_line=None
    )
    expected = spark.createDataFrame([("1", "x", "2", None, "/f.csv")], OUT)
    assert_df_equality(out, expected)


def test_csv_header_parsing_drops_bom_and_quotes():
    assert parse_csv_header('\ufeffa,"b,1",c', ReaderOptions()) == ("a", "b,1", "c")


def test_json_lines_keep_bad_lines_and_undeclared_keys(spark):
    spec = SPEC.model_copy(update={"format": "json"})
    out = _lines(
        spark, '{"a": 1, "b": "x", "c": null}', '{"a": 2, "zz": 1}', '{"a":', "[1]"
    ).transform(parse_json_lines, spec=spec)
    expected = spark.createDataFrame(
        [
            ("1", "x", None, None, "/f.csv"),
            ("2", None, None, '{"a": 2, "zz": 1}', "/f.csv"),
            (None, None, None, '{"a":', "/f.csv"),
            (None, None, None, "[1]", "/f.csv"),
        ],
        OUT,
    )
    assert_df_equality(out, expected, ignore_row_order=True)


def test_a_quote_out_of_place_is_rescued_even_with_the_right_number_of_fields(spark):
    # Spark reads these as three fields without complaint, but not as written: an unterminated
    # quote runs to the end of the line, text after a closing quote is kept or dropped
    # (found by tests/test_fuzz_bronze.py).
    bad = ['1,2,"abc', '"a"b,2,3', '1,2,"3"x', '"1" ,2,3']
    out = _lines(spark, *bad).transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "c"), header_line="a,b,c"
    )
    assert sorted(r["_rescued_data"] for r in out.collect()) == sorted(bad)


def test_well_quoted_fields_and_quotes_inside_unquoted_ones_are_not_rescued(spark):
    out = _lines(spark, '1,"a,b",3', '"""",2,""', 'a"b,2,3', ' "1",2,3').transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "c"), header_line="a,b,c"
    )
    expected = spark.createDataFrame(
        [
            ("1", "a,b", "3", None, "/f.csv"),
            ('"', "2", None, None, "/f.csv"),  # "" is null
            ('a"b', "2", "3", None, "/f.csv"),
            (' "1"', "2", "3", None, "/f.csv"),
        ],
        OUT,
    )
    assert_df_equality(out, expected, ignore_row_order=True)


def test_a_csv_line_holding_nul_is_rescued(spark):
    # Spark's CSV parser takes NUL for an escape character: '"\x00"""' was read as '"'.
    out = _lines(spark, '1,"\x00""",3').transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "c"), header_line="a,b,c"
    )
    assert [r["_rescued_data"] for r in out.collect()] == ['1,"\x00""",3']


def test_a_quote_check_on_a_very_long_line_does_not_overflow(spark):
    long_field = '"' + 'ab""' * 200_000 + '"'
    out = _lines(spark, f"1,{long_field},3", f"1,{long_field}x,3").transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "c"), header_line="a,b,c"
    )
    assert sorted(r["_rescued_data"] is None for r in out.collect()) == [False, True]


def test_json_line_with_text_after_its_object_is_rescued(spark):
    # Spark reads the first value of a line and ignores the rest: the second of two records
    # written without a line end between them was lost (found by tests/test_fuzz_bronze.py).
    spec = SPEC.model_copy(update={"format": "json"})
    bad = ['{"a": "1"}{"a": "2"}', '{"a": "x"} junk', '{"a": "x"}]', '{"a": {"b": [1]}} 2']
    good = ['{"a": "x", "b": {"y": "}{\\"}"}}  ', '\t{"a": [{"c": ["]"]}]}']
    out = _lines(spark, *bad, *good).transform(parse_json_lines, spec=spec)
    rescued = sorted(r["_rescued_data"] for r in out.collect() if r["_rescued_data"])
    assert rescued == sorted(bad)


def test_json_line_with_half_a_surrogate_pair_is_rescued(spark):
    # Spark read "\ud800" as "?": a value silently changed (found by tests/test_fuzz_bronze.py).
    spec = SPEC.model_copy(update={"format": "json"})
    bad = ['{"a": "\\ud800"}', '{"a": "x\\uDC00y"}', '{"a": "\\ud83d\\\\ude00"}']
    good = ['{"a": "\\ud83d\\ude00"}', '{"a": "\\\\ud800"}']
    out = _lines(spark, *bad, *good).transform(parse_json_lines, spec=spec)
    rows = {r["_rescued_data"] or r["a"] for r in out.collect()}
    assert rows == {*bad, "\U0001f600", "\\ud800"}


def test_single_quoted_json_is_rescued(spark):
    spec = SPEC.model_copy(update={"format": "json"})
    out = _lines(spark, "{'a': 'x'}").transform(parse_json_lines, spec=spec)
    assert [r["_rescued_data"] for r in out.collect()] == ["{'a': 'x'}"]


def test_source_file_from_uri_decodes_spark_file_uris(spark):
    uris = [
        "file:/tmp/a%20b/c+d%25.csv",
        "file:///x/y.csv",
        "file:/p/a+b.csv",
        "file://host/share/f.csv",
        "s3a://bucket/k%20ey.csv",
        "file:relative.csv",
    ]
    df = spark.createDataFrame([(u,) for u in uris], "u string")
    got = [r[0] for r in df.select(source_file_from_uri("u")).collect()]
    assert got == [
        "/tmp/a b/c+d%.csv",
        "/x/y.csv",
        "/p/a+b.csv",
        "//host/share/f.csv",
        "s3a://bucket/k ey.csv",
        "file:relative.csv",
    ]


def test_header_and_blank_lines_with_a_byte_order_mark_are_not_rows(spark):
    # The header's BOM is dropped before the comparison; a line holding only a BOM is blank.
    out = _lines(spark, "\ufeffa,b,c", "\ufeff", "1,x,2").transform(
        parse_csv_lines, spec=SPEC, header=("a", "b", "c"), header_line="\ufeffa,b,c"
    )
    expected = spark.createDataFrame([("1", "x", "2", None, "/f.csv")], OUT)
    assert_df_equality(out, expected)


def test_with_lineage_gives_the_bronze_contract_schema(spark):
    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    df = spark.createDataFrame([("1", "x", "2", None, "/f.csv")], OUT)
    out = df.transform(with_lineage, spec=SPEC, batch_id="b1", ingested_at=at)
    assert [(f.name, f.dataType) for f in out.schema] == [
        (f.name, f.dataType) for f in bronze_schema(SPEC)
    ]
    row = out.select("_batch_id", F.date_format("_ingested_at", "yyyy-MM-dd HH:mm:ss")).first()
    assert tuple(row) == ("b1", "2024-01-02 03:04:05")


# --------------------------------------------------------------------------------------------
# Reading raw files (shared by the bronze job and scoring on raw input)
# --------------------------------------------------------------------------------------------


def test_read_source_rows_parses_a_csv_glob_without_lineage(spark, tmp_path):
    good = tmp_path / "x1.csv"
    good.write_text('a,b,c\n1,"p,q",2\n3,y\n', encoding="utf-8")
    # Reordered header: matched by name.
    other = tmp_path / "x2.csv"
    other.write_text("c,b,a\n6,z,5\n", encoding="utf-8")
    (tmp_path / "_x3.csv").write_text("a,b,c\n7,7,7\n", encoding="utf-8")  # writer's temp file
    (tmp_path / "y.csv").write_text("a,b,c\n8,8,8\n", encoding="utf-8")  # not matched
    out = read_source_rows(spark, SPEC, str(tmp_path / "x*.csv"))
    expected = spark.createDataFrame(
        [
            ("1", "p,q", "2", None, str(good)),
            ("3", "y", None, "3,y", str(good)),
            ("5", "z", "6", None, str(other)),
        ],
        OUT,
    )
    assert_df_equality(out, expected, ignore_row_order=True)


def test_read_source_rows_reads_json_lines_from_a_folder(spark, tmp_path):
    spec = SPEC.model_copy(update={"format": "json"})
    path = tmp_path / "p.json"
    path.write_text('{"a": "1", "c": "2"}\n{"a": \n', encoding="utf-8")
    out = read_source_rows(spark, spec, str(tmp_path))
    expected = spark.createDataFrame(
        [("1", None, "2", None, str(path)), (None, None, None, '{"a": ', str(path))], OUT
    )
    assert_df_equality(out, expected, ignore_row_order=True)


def test_read_source_rows_without_matching_files_names_the_pattern(spark, tmp_path):
    with pytest.raises(DataError, match=r"no raw files match .*nothing-\*\.csv"):
        read_source_rows(spark, SPEC, str(tmp_path / "nothing-*.csv"))


# --------------------------------------------------------------------------------------------
# The ledger decision (plain Python)
# --------------------------------------------------------------------------------------------

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
T1 = datetime(2024, 1, 2, tzinfo=timezone.utc)


def _ledger(path="/l/a.csv", size=10, sha="old", at=T0):
    return {
        "path": path,
        "size": size,
        "modified_at": at,
        "sha256": sha,
        "batch_id": "b0",
        "ingested_at": at,
    }


def test_plan_new_file_is_ingested_with_checksum():
    plan = plan_ingest(SPEC, [LandedFile("/l/a.csv", 10, T0)], [], hasher=lambda p: "h")
    assert [f.sha256 for f in plan.to_ingest] == ["h"] and plan.statuses["/l/a.csv"] == "ingested"


def test_plan_same_size_and_time_is_unchanged_without_hashing():
    def never(path):
        raise AssertionError("must not hash")

    plan = plan_ingest(SPEC, [LandedFile("/l/a.csv", 10, T0)], [_ledger()], hasher=never)
    assert plan.to_ingest == () and len(plan.unchanged) == 1


def test_plan_touched_file_with_same_content_is_unchanged():
    plan = plan_ingest(SPEC, [LandedFile("/l/a.csv", 10, T1)], [_ledger()], hasher=lambda p: "old")
    assert plan.to_ingest == () and len(plan.unchanged) == 1


def test_plan_changed_file_reingest_policy():
    spec = SPEC.model_copy(update={"on_changed_file": "reingest"})
    plan = plan_ingest(spec, [LandedFile("/l/a.csv", 11, T1)], [_ledger()], hasher=lambda p: "new")
    assert [f.path for f in plan.changed] == ["/l/a.csv"]
    assert plan.statuses["/l/a.csv"] == "reingested"


def test_plan_changed_file_skip_policy():
    spec = SPEC.model_copy(update={"on_changed_file": "skip"})
    plan = plan_ingest(spec, [LandedFile("/l/a.csv", 11, T1)], [_ledger()], hasher=lambda p: "new")
    assert plan.to_ingest == () and [f.sha256 for f in plan.skipped] == ["new"]


def test_plan_changed_file_fail_policy_names_the_file():
    spec = SPEC.model_copy(update={"on_changed_file": "fail"})
    with pytest.raises(ChangedFileError, match="/l/a.csv changed"):
        plan_ingest(spec, [LandedFile("/l/a.csv", 11, T1)], [_ledger()], hasher=lambda p: "new")


def test_plan_compares_with_the_latest_ledger_entry():
    entries = [_ledger(sha="old", at=T0), _ledger(size=11, sha="new", at=T1)]
    plan = plan_ingest(SPEC, [LandedFile("/l/a.csv", 11, T1)], entries, hasher=lambda p: "new")
    assert plan.to_ingest == () and len(plan.unchanged) == 1


# --------------------------------------------------------------------------------------------
# The job on real Delta tables
# --------------------------------------------------------------------------------------------


def _load_job():
    from featurelake.core.pipeline import load_job_module

    return load_job_module("bronze")


JOB = _load_job()
INGEST = importlib.import_module("featurelake.lakehouse.bronze.ingest")
RETAIL_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
FILE_1 = [
    RETAIL_HEADER,
    '536365,85123A,"HEART T-LIGHT, WHITE",6,2010-12-01 08:26:00,2.55,17850,United Kingdom',
    "536366,71053,LANTERN,6,2010-12-01 08:28:00,3.39,,United Kingdom",
    "536367,71053,LANTERN,6,2010-12-01 08:28:00",
]
FILE_2 = [RETAIL_HEADER, "C536368,22633,HAND WARMER,-2,2010-12-01 08:34:00,1.85,17850,France"]


def _land(landing: Path, name: str, lines: list[str]) -> Path:
    folder = landing / "online_retail"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def _conf(tmp_path: Path, policy: str) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    source = conf / "sources" / "online_retail.yaml"
    source.write_text(
        source.read_text().replace("on_changed_file: reingest", f"on_changed_file: {policy}")
    )
    return conf


def _run(spark, tmp_path: Path, conf: Path, *extra: str) -> int:
    argv = [
        "--conf-dir",
        str(conf),
        "--conf",
        f"lakehouse.root={tmp_path / 'lake'}",
        "--conf",
        f"lakehouse.landing={tmp_path / 'landing'}",
        "--source",
        "online_retail",
        *extra,
    ]
    return run_job("bronze", JOB.main, argv=argv, add_arguments=JOB.add_arguments, spark=spark)


def _bronze(spark, tmp_path):
    return DeltaTables(spark).read(
        str(tmp_path / "lake" / "bronze" / "online_retail"), record=False
    )


def _ledger_table(spark, tmp_path):
    return DeltaTables(spark).read(
        str(tmp_path / "lake" / "bronze" / "_ingested_files"), record=False
    )


def test_job_ingests_every_line_with_lineage_in_one_commit(spark, tmp_path):
    one = _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    two = _land(tmp_path / "landing", "b.csv.gz", FILE_2)
    assert _run(spark, tmp_path, _conf(tmp_path, "reingest")) == 0
    bronze = _bronze(spark, tmp_path)
    rows = {r["InvoiceNo"]: r for r in bronze.collect()}
    assert sorted(rows) == ["536365", "536366", "536367", "C536368"]
    assert rows["536365"]["Description"] == "HEART T-LIGHT, WHITE"
    assert rows["536367"]["_rescued_data"] == "536367,71053,LANTERN,6,2010-12-01 08:28:00"
    assert rows["536365"]["_rescued_data"] is None
    assert rows["C536368"]["_source_file"] == str(two)
    assert {r["_batch_id"] for r in rows.values()} == {rows["536365"]["_batch_id"]}
    assert DeltaTables(spark).version(str(tmp_path / "lake" / "bronze" / "online_retail")) == 0
    ledger = {r["path"]: r for r in _ledger_table(spark, tmp_path).collect()}
    assert {p: (r["rows"], r["status"]) for p, r in ledger.items()} == {
        str(one): (3, "ingested"),
        str(two): (1, "ingested"),
    }
    assert ledger[str(one)]["size"] == os.path.getsize(one)


def test_job_counts_rows_per_file_by_reading_back_a_batch_of_many_files(
    spark, tmp_path, monkeypatch
):
    # Past the observed-files limit the batch is read back and grouped: same ledger counts.
    monkeypatch.setattr(INGEST, "_OBSERVED_FILES_MAX", 1)
    one = _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    two = _land(tmp_path / "landing", "b.csv.gz", FILE_2)
    assert _run(spark, tmp_path, _conf(tmp_path, "reingest")) == 0
    ledger = {r["path"]: r["rows"] for r in _ledger_table(spark, tmp_path).collect()}
    assert ledger == {str(one): 3, str(two): 1}


def test_job_records_a_header_only_file_with_zero_rows(spark, tmp_path):
    # No data line: the write counts nothing, the ledger still records the file (0 rows).
    empty = _land(tmp_path / "landing", "empty.csv.gz", [RETAIL_HEADER])
    full = _land(tmp_path / "landing", "full.csv.gz", FILE_2)
    assert _run(spark, tmp_path, _conf(tmp_path, "reingest")) == 0
    ledger = {r["path"]: (r["rows"], r["status"]) for r in _ledger_table(spark, tmp_path).collect()}
    assert ledger == {str(empty): (0, "ingested"), str(full): (1, "ingested")}
    assert _bronze(spark, tmp_path).count() == 1


def test_job_with_only_a_header_only_file_records_it_and_ingests_nothing(spark, tmp_path):
    empty = _land(tmp_path / "landing", "empty.csv.gz", [RETAIL_HEADER])
    assert _run(spark, tmp_path, _conf(tmp_path, "reingest")) == 0
    ledger = [(r["path"], r["rows"]) for r in _ledger_table(spark, tmp_path).collect()]
    assert ledger == [(str(empty), 0)]


def test_job_rerun_without_new_files_adds_nothing(spark, tmp_path):
    _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    conf = _conf(tmp_path, "reingest")
    assert _run(spark, tmp_path, conf) == 0
    assert _run(spark, tmp_path, conf) == 0
    assert _bronze(spark, tmp_path).count() == 3
    assert DeltaTables(spark).version(str(tmp_path / "lake" / "bronze" / "online_retail")) == 0
    _land(tmp_path / "landing", "b.csv.gz", FILE_2)
    assert _run(spark, tmp_path, conf) == 0
    assert _bronze(spark, tmp_path).count() == 4


def _change_file(tmp_path: Path) -> None:
    path = tmp_path / "landing" / "online_retail" / "a.csv.gz"
    _land(tmp_path / "landing", "a.csv.gz", FILE_1 + [FILE_2[1]])
    os.utime(path, (T1.timestamp(), T1.timestamp()))


def test_changed_file_reingest_appends_a_new_batch(spark, tmp_path):
    conf = _conf(tmp_path, "reingest")
    _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    assert _run(spark, tmp_path, conf) == 0
    _change_file(tmp_path)
    assert _run(spark, tmp_path, conf) == 0
    bronze = _bronze(spark, tmp_path)
    assert bronze.count() == 3 + 4
    assert bronze.select("_batch_id").distinct().count() == 2
    statuses = sorted((r["status"], r["rows"]) for r in _ledger_table(spark, tmp_path).collect())
    assert statuses == [("ingested", 3), ("reingested", 4)]


def test_changed_file_skip_is_recorded_and_ingests_nothing(spark, tmp_path):
    conf = _conf(tmp_path, "skip")
    _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    assert _run(spark, tmp_path, conf) == 0
    _change_file(tmp_path)
    assert _run(spark, tmp_path, conf) == 0
    assert _bronze(spark, tmp_path).count() == 3
    statuses = sorted(r["status"] for r in _ledger_table(spark, tmp_path).collect())
    assert statuses == ["ingested", "skipped"]


def test_changed_file_fail_stops_the_job_before_writing(spark, tmp_path, capsys):
    conf = _conf(tmp_path, "fail")
    _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    assert _run(spark, tmp_path, conf) == 0
    _change_file(tmp_path)
    assert _run(spark, tmp_path, conf) == 2
    assert "a.csv.gz changed since it was ingested" in capsys.readouterr().err
    assert _bronze(spark, tmp_path).count() == 3


def test_bronze_commit_without_ledger_entry_is_recovered_not_reingested(spark, tmp_path):
    conf = _conf(tmp_path, "reingest")
    _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    assert _run(spark, tmp_path, conf) == 0
    # Simulate a run killed between the bronze commit and the ledger commit.
    shutil.rmtree(tmp_path / "lake" / "bronze" / "_ingested_files")
    assert _run(spark, tmp_path, conf) == 0
    assert _bronze(spark, tmp_path).count() == 3
    ledger = _ledger_table(spark, tmp_path).collect()
    assert [(r["rows"], r["status"]) for r in ledger] == [(3, "ingested")]


@pytest.mark.realdata
def test_real_online_retail_lands_every_row(spark, tmp_path, shared_data):
    landing = tmp_path / "landing" / "online_retail"
    landing.mkdir(parents=True)
    (landing / "online_retail.csv.gz").symlink_to(shared_data / "online_retail.csv.gz")
    conf = _conf(tmp_path, "reingest")
    assert _run(spark, tmp_path, conf) == 0
    bronze = _bronze(spark, tmp_path)
    counts = bronze.agg(
        F.count(F.lit(1)).alias("rows"),
        F.count("_rescued_data").alias("rescued"),
        F.count("Description").alias("described"),
    ).first()
    # 541,909 data lines, every one with 8 fields (checked with Python's csv module).
    assert (counts["rows"], counts["rescued"]) == (541_909, 0)
    assert bronze.where(F.col("Description") == "AIRLINE LOUNGE,METAL SIGN").count() > 0
    assert _run(spark, tmp_path, conf) == 0
    assert _bronze(spark, tmp_path).count() == 541_909


def test_bronze_rows_are_read_source_rows_plus_lineage(spark, tmp_path):
    """Scoring on raw files sees exactly the rows bronze stores (same reader)."""
    from featurelake.core.config import load_settings
    from featurelake.lakehouse.sources import load_sources

    _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    _land(tmp_path / "landing", "b.csv.gz", FILE_2)
    assert _run(spark, tmp_path, _conf(tmp_path, "reingest")) == 0
    spec = load_sources(load_settings(ROOT / "conf"))["online_retail"]
    read = read_source_rows(spark, spec, str(tmp_path / "landing" / "online_retail" / "*.gz"))
    stored = _bronze(spark, tmp_path).drop("_ingested_at", "_batch_id")
    assert_df_equality(read, stored, ignore_row_order=True)


def test_job_rejects_unknown_source(spark, tmp_path, capsys):
    assert _run(spark, tmp_path, _conf(tmp_path, "reingest"), "--source", "nope") == 2
    assert "unknown source(s) ['nope']" in capsys.readouterr().err


def test_bronze_rows_equal_csv_module_parse(spark, tmp_path):
    """The Spark line parser agrees with Python's csv module on clean lines."""
    import csv

    _land(tmp_path / "landing", "a.csv.gz", FILE_1[:3] + FILE_2[1:])
    assert _run(spark, tmp_path, _conf(tmp_path, "reingest")) == 0
    got = sorted(
        tuple(r[c] or "" for c in RETAIL_HEADER.split(","))
        for r in _bronze(spark, tmp_path).collect()
    )
    expected = sorted(tuple(row) for row in csv.reader(FILE_1[1:3] + FILE_2[1:]))
    assert got == expected


# --------------------------------------------------------------------------------------------
# Concurrent runs, unreadable files, bytes that are not UTF-8
# --------------------------------------------------------------------------------------------


def test_a_run_that_planned_before_a_concurrent_commit_lands_nothing_twice(
    spark, tmp_path, monkeypatch
):
    # Deterministic interleaving: run A plans b.csv.gz as new, then run B ingests it in full
    # before A writes. A's claim is then stale: its commit fails, it plans again and finds
    # nothing new. Without the claim A appended b.csv.gz a second time.
    conf = _conf(tmp_path, "reingest")
    _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    assert _run(spark, tmp_path, conf) == 0
    two = _land(tmp_path / "landing", "b.csv.gz", FILE_2)
    real_plan = INGEST.plan_ingest
    interleaved = []

    def plan_then_let_another_run_commit(*args, **kwargs):
        plan = real_plan(*args, **kwargs)
        if not interleaved:
            interleaved.append(plan)
            assert _run(spark, tmp_path, conf) == 0  # run B, complete
        return plan

    monkeypatch.setattr(INGEST, "plan_ingest", plan_then_let_another_run_commit)
    assert _run(spark, tmp_path, conf) == 0
    assert [f.path for f in interleaved[0].new] == [str(two)]  # A did plan to ingest it
    assert _bronze(spark, tmp_path).count() == 3 + 1
    paths = [r["path"] for r in _ledger_table(spark, tmp_path).collect()]
    assert sorted(paths) == sorted(
        [str(tmp_path / "landing" / "online_retail" / "a.csv.gz"), str(two)]
    )


def test_concurrent_runs_in_threads_ingest_every_line_once(spark, tmp_path):
    import threading

    conf = _conf(tmp_path, "reingest")
    _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    assert _run(spark, tmp_path, conf) == 0
    for round_ in range(3):
        _land(tmp_path / "landing", f"n{round_}.csv.gz", FILE_2)
        codes: list[int] = []
        start = threading.Barrier(2, timeout=60)

        def one_run(start: threading.Barrier = start, codes: list[int] = codes) -> None:
            start.wait()
            codes.append(_run(spark, tmp_path, conf))

        threads = [threading.Thread(target=one_run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert codes == [0, 0]
        assert _bronze(spark, tmp_path).count() == 3 + round_ + 1
    ledger = [r["path"] for r in _ledger_table(spark, tmp_path).collect()]
    assert len(ledger) == len(set(ledger)) == 4


def _write_bytes(landing: Path, name: str, data: bytes) -> Path:
    folder = landing / "online_retail"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path


def _gzip_bytes(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode())


def test_unreadable_files_are_recorded_failed_and_the_good_ones_ingested(spark, tmp_path, capsys):
    conf = _conf(tmp_path, "reingest")
    good = _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    whole = _gzip_bytes(FILE_2 * 50)
    truncated = _write_bytes(tmp_path / "landing", "b.csv.gz", whole[: len(whole) // 2])
    not_gzip = _write_bytes(tmp_path / "landing", "c.csv.gz", b"InvoiceNo,StockCode\n1,2\n")
    assert _run(spark, tmp_path, conf) == 2
    # Beside the JSON log lines, one line for the person at the terminal; no stack trace.
    lines = capsys.readouterr().err.strip().splitlines()
    err = [line for line in lines if not line.startswith("{")]
    assert len(err) == 1 and "Traceback" not in "".join(lines)
    assert "2 file(s) of source(s) online_retail could not be read" in err[0]
    assert str(truncated) in err[0] and "truncated gz archive" in err[0]
    assert str(not_gzip) in err[0] and "not a gzip file" in err[0]
    assert _bronze(spark, tmp_path).count() == 3  # the good file
    ledger = {r["path"]: r for r in _ledger_table(spark, tmp_path).collect()}
    assert ledger[str(good)]["status"] == "ingested"
    assert (ledger[str(truncated)]["status"], ledger[str(truncated)]["rows"]) == ("failed", 0)
    assert "truncated" in ledger[str(truncated)]["error"]
    assert "not a gzip file" in ledger[str(not_gzip)]["error"]
    # A rerun fails again on the same files without recording them twice.
    assert _run(spark, tmp_path, conf) == 2
    assert _ledger_table(spark, tmp_path).count() == 3
    # The file landed again, whole: now it is ingested.
    truncated.write_bytes(whole)
    not_gzip.unlink()
    assert _run(spark, tmp_path, conf) == 0
    assert _bronze(spark, tmp_path).count() == 3 + 50


def test_unreadable_file_with_skip_policy_ends_the_run_well(spark, tmp_path):
    conf = _conf(tmp_path, "reingest")
    source = conf / "sources" / "online_retail.yaml"
    source.write_text(source.read_text() + "on_unreadable_file: skip\n")
    _land(tmp_path / "landing", "a.csv.gz", FILE_1)
    _write_bytes(tmp_path / "landing", "b.csv.gz", b"\x1f\x8b\x08\x00 not really")
    assert _run(spark, tmp_path, conf) == 0
    statuses = sorted(r["status"] for r in _ledger_table(spark, tmp_path).collect())
    assert statuses == ["failed", "ingested"]


def test_a_line_that_is_not_utf8_is_rescued_whole(spark, tmp_path):
    # "Espa\xf1a" is Latin-1: as UTF-8 it would become "Espa\ufffda", a new country.
    conf = _conf(tmp_path, "reingest")
    data = (
        RETAIL_HEADER + "\n"
        "536365,85123A,HEART,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n"
        "536366,71053,LANTERN,6,2010-12-01 08:28:00,3.39,17850,Espa"
    ).encode() + b"\xf1a\n"
    _write_bytes(tmp_path / "landing", "a.csv.gz", gzip.compress(data))
    assert _run(spark, tmp_path, conf) == 0
    rows = {r["InvoiceNo"]: r for r in _bronze(spark, tmp_path).collect()}
    assert rows["536365"]["_rescued_data"] is None
    assert rows["536366"]["_rescued_data"] == (
        "536366,71053,LANTERN,6,2010-12-01 08:28:00,3.39,17850,Espa\ufffda"
    )


def test_a_byte_the_fallback_encoding_does_not_define_rescues_its_line(spark, tmp_path):
    # Windows-1252 leaves 0x81, 0x8D, 0x8F, 0x90 and 0x9D undefined: decoding one failed the
    # whole job (MALFORMED_CHARACTER_CODING); such a line is now rescued with U+FFFD
    # (found by tests/test_fuzz_bronze.py).
    spec = SourceSpec(
        name="t",
        path="t/*.csv",
        format="csv",
        options=ReaderOptions(header=False, fallback_encoding="windows-1252"),
        columns=(ColumnSpec(name="a"), ColumnSpec(name="b"), ColumnSpec(name="c")),
    )
    path = tmp_path / "f.csv"
    path.write_bytes(b"1,caf\xe9,2\n3,a\x81b,4\n5,\x9d,6\n")
    rows = sorted(read_source_rows(spark, spec, [str(path)]).collect(), key=lambda r: r["a"])
    assert [(r["b"], r["_rescued_data"]) for r in rows] == [
        ("caf\u00e9", None),
        ("a\ufffdb", "3,a\ufffdb,4"),
        ("\ufffd", "5,\ufffd,6"),
    ]


def test_a_declared_fallback_encoding_decodes_such_lines(spark, tmp_path):
    conf = _conf(tmp_path, "reingest")
    source = conf / "sources" / "online_retail.yaml"
    source.write_text(
        source.read_text().replace(
            "encoding: utf-8", "encoding: utf-8\n  fallback_encoding: windows-1252"
        )
    )
    data = (
        RETAIL_HEADER + "\n"
        "536366,71053,LANTERN \u2013 caf\u00e9,6,2010-12-01 08:28:00,3.39,17850,France\n"
    ).encode() + b"536367,71053,LANTERN \x96 caf\xe9,6,2010-12-01 08:28:00,3.39,17850,Espa\xf1a\n"
    _write_bytes(tmp_path / "landing", "a.csv.gz", gzip.compress(data))
    assert _run(spark, tmp_path, conf) == 0
    rows = {r["InvoiceNo"]: r for r in _bronze(spark, tmp_path).collect()}
    assert rows["536366"]["Description"] == "LANTERN \u2013 caf\u00e9"  # valid UTF-8 untouched
    assert rows["536367"]["Description"] == "LANTERN \u2013 caf\u00e9"  # cp1252 decoded
    assert rows["536367"]["Country"] == "Espa\u00f1a"
    assert rows["536367"]["_rescued_data"] is None
