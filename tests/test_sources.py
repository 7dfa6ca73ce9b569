"""Source declarations: conf/sources parses, matches the real files; bad YAML fails clearly."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from featurelake.core.config import ConfigError, load_settings
from featurelake.lakehouse.sources import load_source_file, load_sources

ROOT = Path(__file__).resolve().parents[1]


def _header(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return handle.readline().rstrip("\r\n").split(",")


def test_repo_declares_three_batch_sources_and_one_streaming_source():
    sources = load_sources(load_settings(ROOT / "conf"))
    batch = sorted(name for name, spec in sources.items() if not spec.is_streaming)
    assert batch == ["credit_clients", "customer_profiles", "online_retail"]
    assert [name for name, spec in sources.items() if spec.is_streaming] == ["order_events"]
    assert sources["customer_profiles"].format == "json"
    assert sources["online_retail"].options.escape == '"'


@pytest.mark.parametrize(
    "source, file",
    [("online_retail", "online_retail.csv.gz"), ("credit_clients", "uci_credit_card.csv.gz")],
)
def test_declared_columns_equal_the_real_file_header(shared_data, source, file):
    spec = load_sources(load_settings(ROOT / "conf"))[source]
    assert list(spec.column_names) == _header(shared_data / file)


def test_relative_glob_resolves_under_landing_and_absolute_glob_is_kept():
    sources = load_sources(load_settings(ROOT / "conf"))
    assert sources["online_retail"].resolve_glob("/land") == "/land/online_retail/*.csv*"
    absolute = sources["online_retail"].model_copy(update={"path": "/data/x/*.csv.gz"})
    assert absolute.resolve_glob("/land") == "/data/x/*.csv.gz"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_error_names_file_and_key(tmp_path):
    path = _write(
        tmp_path, "s", "path: a/*.csv\nformat: csv\ncolumns: [{name: a}]\non_change: skip\n"
    )
    with pytest.raises(ConfigError) as err:
        load_source_file(path)
    assert str(path) in str(err.value) and "on_change" in str(err.value)


def test_bad_policy_error_lists_allowed_values(tmp_path):
    path = _write(
        tmp_path, "s", "path: a/*.csv\nformat: csv\ncolumns: [{name: a}]\non_changed_file: ignore\n"
    )
    with pytest.raises(ConfigError, match="on_changed_file.*reingest"):
        load_source_file(path)


def test_duplicated_column_is_rejected(tmp_path):
    path = _write(tmp_path, "s", "path: a/*.csv\nformat: csv\ncolumns: [{name: a}, {name: a}]\n")
    with pytest.raises(ConfigError, match="columns.*duplicated column names: \\['a'\\]"):
        load_source_file(path)


def test_lineage_column_names_are_reserved(tmp_path):
    path = _write(tmp_path, "s", "path: a/*.csv\nformat: csv\ncolumns: [{name: _batch_id}]\n")
    with pytest.raises(ConfigError, match="reserved"):
        load_source_file(path)


def test_name_must_match_file_stem(tmp_path):
    path = _write(
        tmp_path, "orders", "name: sales\npath: a/*.csv\nformat: csv\ncolumns: [{name: a}]\n"
    )
    with pytest.raises(ConfigError, match="name: must equal the file name 'orders'"):
        load_source_file(path)


def test_missing_sources_folder_is_a_config_error(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf, ignore=shutil.ignore_patterns("sources"))
    with pytest.raises(ConfigError, match="no source declarations"):
        load_sources(load_settings(conf))


# --------------------------------------------------------------------------------------------
# Database and API sources (format jdbc, http_json)
# --------------------------------------------------------------------------------------------

JDBC_SECTION = (
    "format: jdbc\ncolumns: [{name: id}, {name: updated_at}]\n"
    "jdbc: {url: 'URL', table: public.orders, user_env: DB_USER, cursor: updated_at}\n"
)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("jdbc:postgresql://db:5432/shop?password=Sup3r-S3cret", "Sup3r-S3cret"),
        ("jdbc:postgresql://bob:Sup3r-S3cret@db:5432/shop", "bob:Sup3r-S3cret"),
    ],
    ids=["parameter", "userinfo"],
)
def test_a_jdbc_url_holding_credentials_is_refused_without_repeating_them(tmp_path, url, secret):
    path = _write(tmp_path, "orders_db", JDBC_SECTION.replace("URL", url))
    with pytest.raises(ConfigError, match="jdbc.url: .*must not contain credentials") as error:
        load_source_file(path)
    assert secret not in str(error.value) and "Sup3r" not in str(error.value)


def test_an_api_credential_header_must_come_from_the_environment(tmp_path):
    path = _write(
        tmp_path,
        "orders_api",
        "format: http_json\ncolumns: [{name: id}]\nhttp_json:\n  url: https://api.example.com/o\n"
        "  pagination: {style: page, param: page}\n  headers: {Authorization: Bearer t0k-9x}\n",
    )
    with pytest.raises(ConfigError, match="carry credentials: name them in headers_env") as error:
        load_source_file(path)
    assert "t0k-9x" not in str(error.value)


def test_a_database_source_has_no_path_and_needs_its_section(tmp_path):
    with_path = _write(
        tmp_path, "a", JDBC_SECTION.replace("URL", "jdbc:postgresql://d/s") + "path: x/*\n"
    )
    with pytest.raises(ConfigError, match="path: .*is for files; a jdbc source has no path"):
        load_source_file(with_path)
    without = _write(tmp_path, "b", "format: jdbc\ncolumns: [{name: id}]\n")
    with pytest.raises(ConfigError, match="jdbc: .*is required for format jdbc"):
        load_source_file(without)


def test_the_configuration_check_adds_the_declared_jdbc_driver_to_spark_packages(tmp_path):
    from featurelake.core.jvm_packages import kafka_coordinates
    from featurelake.core.validation import validate_configuration
    from featurelake.jobs.generate_data import files_per_source

    conf = Path(shutil.copytree(ROOT / "conf", tmp_path / "conf"))
    (conf / "sources" / "orders_db.yaml").write_text(
        JDBC_SECTION.replace("URL", "jdbc:postgresql://db:5432/shop")
    )
    settings = validate_configuration(conf, "local", [f"lakehouse.root={tmp_path / 'lake'}"])
    # the shipped order_events source reads a Kafka topic: Spark's connector comes too
    packages = settings.spark.conf["spark.jars.packages"].split(",")
    assert packages == sorted(["org.postgresql:postgresql:42.7.4", *kafka_coordinates()])
    # a source without files is not counted by generate-data --if-missing
    counted = files_per_source(SimpleNamespace(settings=settings), str(tmp_path / "landing"))
    assert sorted(counted) == ["credit_clients", "customer_profiles", "online_retail"]
