"""A bad conf/monitoring.yaml stops the monitor job before Spark starts, naming file and key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from featurelake.core import runner
from featurelake.core.errors import ConfigError
from featurelake.core.validation import validate_configuration
from featurelake.jobs import load_job

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture()
def conf_dir(tmp_path: Path) -> Path:
    target = tmp_path / "conf"
    shutil.copytree(CONF, target)
    return target


def _edit(conf_dir: Path, change) -> Path:
    file = conf_dir / "monitoring.yaml"
    data = yaml.safe_load(file.read_text())
    change(data)
    file.write_text(yaml.safe_dump(data))
    return file


def _set_table(index: int, key: str, value) -> callable:
    def change(data: dict) -> None:
        data["tables"][index][key] = value

    return change


def _threshold(data: dict) -> None:
    data["drift"]["thresholds"]["psi"]["critical"] = "very high"


def _metric(data: dict) -> None:
    data["drift"]["thresholds"]["wasserstein"] = {"warning": 0.1}


@pytest.mark.parametrize(
    "change, key, words",
    [
        (_set_table(0, "table", "gold/credit_featurez"), "tables[0].table", "unknown table"),
        (_set_table(1, "columns", ["countryy"]), "tables[1].columns[0]", "no column 'countryy'"),
        (_metric, "drift.thresholds.wasserstein", ""),
        (_threshold, "drift.thresholds.psi.critical", "number"),
    ],
    ids=["unknown-table", "unknown-column", "unknown-metric", "threshold-type"],
)
def test_the_monitor_job_stops_before_spark_naming_file_and_key(
    conf_dir, tmp_path, monkeypatch, change, key, words
):
    file = _edit(conf_dir, change)

    def no_spark(*_args, **_kwargs):
        raise AssertionError("Spark was started for an invalid configuration")

    monkeypatch.setattr(runner, "build_spark_session", no_spark)
    outcome = runner.execute_job(
        "monitor",
        load_job("monitor").main,
        ["--conf-dir", str(conf_dir), "--conf", f"lakehouse.root={tmp_path / 'lake'}"],
        load_job("monitor").add_arguments,
    )
    assert outcome.code == 2
    assert isinstance(outcome.error, ConfigError)
    message = str(outcome.error)
    assert message.startswith(f"{file}: {key}"), message
    assert words in message
    assert "\n" not in message.splitlines()[0] and "Traceback" not in message


def test_the_shipped_monitoring_configuration_is_valid():
    validate_configuration(CONF, None, [])
