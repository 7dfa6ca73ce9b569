"""PII: keyed HMAC-SHA256 equals Python's hmac; unset key is a clear error; raw columns removed."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from chispa import assert_df_equality
from featurelake.lakehouse.pii import (
    PiiColumn,
    PiiKeyError,
    hmac_sha256_hex,
    load_pii_key,
    with_pseudonymised_columns,
)
from pyspark.sql import functions as F

KEY = b"test-secret"


def _hmac(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def test_hmac_equals_python_hmac(spark):
    values = ["ada@example.com", "Zoë Brontë", "+44 20 7946 0958", ""]
    df = spark.createDataFrame([(v,) for v in values] + [(None,)], "v string")
    got = df.select("v", hmac_sha256_hex(F.col("v"), KEY).alias("h"))
    expected = spark.createDataFrame(
        [(v, _hmac(KEY, v)) for v in values] + [(None, None)], "v string, h string"
    )
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)


def test_hmac_with_a_key_longer_than_a_block(spark):
    key = b"k" * 100  # RFC 2104: keys longer than 64 bytes are hashed first
    got = spark.createDataFrame([("x",)], "v string").select(
        hmac_sha256_hex(F.col("v"), key).alias("h")
    )
    assert got.collect()[0]["h"] == _hmac(key, "x")


def test_pseudonymise_hashes_and_drops_raw_columns(spark):
    df = spark.createDataFrame(
        [("1", "Ada", "ada@example.com", "1815-12-10")],
        "customer_id string, name string, email string, birth_date string",
    )
    specs = [
        PiiColumn(column="name", action="hash", output="name_hash"),
        PiiColumn(column="email", action="hash"),
        PiiColumn(column="birth_date", action="drop"),
    ]
    got = df.transform(with_pseudonymised_columns, specs, KEY)
    expected = spark.createDataFrame(
        [("1", _hmac(KEY, "Ada"), _hmac(KEY, "ada@example.com"))],
        "customer_id string, name_hash string, email_hash string",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


def test_same_value_same_hash_different_key_different_hash(spark):
    df = spark.createDataFrame([("a@b.c",)], "v string")
    row = df.select(
        hmac_sha256_hex(F.col("v"), KEY).alias("h1"),
        hmac_sha256_hex(F.col("v"), b"other").alias("h2"),
    ).collect()[0]
    assert row["h1"] == _hmac(KEY, "a@b.c") and row["h2"] == _hmac(b"other", "a@b.c")
    assert row["h1"] != row["h2"]


def test_unset_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("FEATURELAKE_TEST_PII_KEY", raising=False)
    with pytest.raises(
        PiiKeyError, match="environment variable FEATURELAKE_TEST_PII_KEY is not set"
    ):
        load_pii_key("FEATURELAKE_TEST_PII_KEY")


def test_empty_key_is_an_error(monkeypatch):
    monkeypatch.setenv("FEATURELAKE_TEST_PII_KEY", "")
    with pytest.raises(PiiKeyError, match="FEATURELAKE_TEST_PII_KEY is empty"):
        load_pii_key("FEATURELAKE_TEST_PII_KEY")


def test_key_is_read_from_the_variable(monkeypatch):
    monkeypatch.setenv("FEATURELAKE_TEST_PII_KEY", "s3cr3t")
    assert load_pii_key("FEATURELAKE_TEST_PII_KEY") == b"s3cr3t"


def test_hash_without_key_is_an_error(spark):
    df = spark.createDataFrame([("Ada",)], "name string")
    with pytest.raises(PiiKeyError, match="'name' is declared PII"):
        with_pseudonymised_columns(df, [PiiColumn(column="name", action="hash")], None)


def test_unknown_pii_column_is_an_error(spark):
    df = spark.createDataFrame([("Ada",)], "name string")
    with pytest.raises(ValueError, match=r"PII columns \['email'\] are not in the data"):
        with_pseudonymised_columns(df, [PiiColumn(column="email", action="drop")], KEY)


def test_without_the_variable_a_configured_key_file_is_created_once_private(tmp_path, monkeypatch):
    import os
    import stat

    from featurelake.lakehouse.pii import load_pii_key

    monkeypatch.delenv("FL_TEST_PII_KEY", raising=False)
    path = tmp_path / "lake" / ".pii_key"
    first = load_pii_key("FL_TEST_PII_KEY", str(path))
    assert len(first) == 64 and load_pii_key("FL_TEST_PII_KEY", str(path)) == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    monkeypatch.setenv("FL_TEST_PII_KEY", "from-env")
    assert load_pii_key("FL_TEST_PII_KEY", str(path)) == b"from-env"
