"""Configuration: merge order, interpolation, overrides, and errors that name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest
from featurelake.core.config import ConfigError, load_settings, load_yaml_file

BASE = """\
lakehouse:
  root: ${TEST_FL_ROOT:-./lakehouse}
spark:
  master: local[*]
  shuffle_partitions: 8
delta:
  backend: auto
"""


def _conf(
    tmp_path: Path, base: str = BASE, local: str = "spark:\n  shuffle_partitions: 4\n", **envs: str
) -> Path:
    conf = tmp_path / "conf"
    (conf / "env").mkdir(parents=True)
    (conf / "base.yaml").write_text(base)
    (conf / "env" / "local.yaml").write_text(local)
    for name, text in envs.items():
        (conf / "env" / f"{name}.yaml").write_text(text)
    return conf


def test_overlay_then_overrides_win_in_order(tmp_path):
    conf = _conf(tmp_path, cluster="spark:\n  shuffle_partitions: 64\n  master: yarn\n")
    settings = load_settings(conf, "cluster", ["spark.shuffle_partitions=16"])
    assert settings.spark.shuffle_partitions == 16
    assert settings.spark.master == "yarn"
    assert settings.delta.backend == "auto"


def test_env_overlay_replaces_only_the_keys_it_sets(tmp_path):
    settings = load_settings(_conf(tmp_path), "local")
    assert (settings.spark.shuffle_partitions, settings.spark.master) == (4, "local[*]")


def test_default_root_and_table_path(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_FL_ROOT", raising=False)
    settings = load_settings(_conf(tmp_path), "local")
    assert settings.lakehouse.root == "./lakehouse"
    assert settings.lakehouse.table_path("gold", "customers") == "./lakehouse/gold/customers"


def test_variables_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_FL_ROOT", "/data/lake")
    settings = load_settings(_conf(tmp_path), "local")
    assert settings.lakehouse.table_path("silver", "t") == "/data/lake/silver/t"


def test_unset_variable_without_default_names_file_key_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("TEST_FL_MISSING", raising=False)
    conf = _conf(tmp_path, base=BASE.replace("${TEST_FL_ROOT:-./lakehouse}", "${TEST_FL_MISSING}"))
    with pytest.raises(ConfigError) as info:
        load_settings(conf, "local")
    assert info.value.source == str(conf / "base.yaml")
    assert info.value.key == "lakehouse.root"
    assert "TEST_FL_MISSING is not set" in str(info.value)


def test_unknown_key_names_file_key_and_allowed_keys(tmp_path):
    conf = _conf(tmp_path, local="spark:\n  shufle_partitions: 4\n")
    with pytest.raises(ConfigError) as info:
        load_settings(conf, "local")
    message = str(info.value)
    assert str(conf / "env" / "local.yaml") in message
    assert "spark.shufle_partitions: unknown key" in message
    assert "shuffle_partitions" in message.split("allowed:")[1]


def test_wrong_type_names_file_key_and_expected_type(tmp_path):
    conf = _conf(tmp_path, local="spark:\n  shuffle_partitions: lots\n")
    with pytest.raises(ConfigError) as info:
        load_settings(conf, "local")
    assert info.value.source == str(conf / "env" / "local.yaml")
    assert info.value.key == "spark.shuffle_partitions"
    assert "valid integer" in str(info.value) and "'lots'" in str(info.value)


def test_value_not_allowed_lists_the_allowed_values(tmp_path):
    conf = _conf(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_settings(conf, "local", ["delta.backend=spark"])
    assert info.value.source == "--conf delta.backend=spark"
    assert info.value.key == "delta.backend"
    assert "'auto', 'native' or 'delta-rs'" in str(info.value)


def test_missing_required_key_names_file_and_key(tmp_path):
    from featurelake.core.config import parse_model
    from pydantic import BaseModel, ConfigDict

    class Source(BaseModel):
        model_config = ConfigDict(extra="forbid")
        path: str
        format: str

    with pytest.raises(ConfigError) as info:
        parse_model(Source, {"path": "x/*.csv"}, "conf/sources/retail.yaml")
    assert str(info.value) == "conf/sources/retail.yaml: format: missing required key"


def test_override_key_attributed_to_the_command_line(tmp_path):
    conf = _conf(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_settings(conf, "local", ["spark.shuffle_partitions=0"])
    assert info.value.source == "--conf spark.shuffle_partitions=0"
    assert "greater than or equal to 1" in str(info.value)


def test_malformed_override_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_settings(_conf(tmp_path), "local", ["spark.shuffle_partitions"])


def test_unknown_environment_lists_the_available_ones(tmp_path):
    with pytest.raises(ConfigError, match=r"no such environment 'prod'; available: \['local'\]"):
        load_settings(_conf(tmp_path), "prod")


def test_invalid_yaml_names_the_file(tmp_path):
    conf = _conf(tmp_path, local="spark: [unclosed\n")
    with pytest.raises(ConfigError, match=r"local\.yaml: invalid YAML"):
        load_settings(conf, "local")


def test_the_shipped_configuration_is_valid_for_every_environment():
    conf = Path(__file__).resolve().parents[1] / "conf"
    for env in sorted(p.stem for p in (conf / "env").glob("*.yaml")):
        settings = load_settings(conf, env)
        assert settings.env == env


def test_a_repeated_key_names_the_file_the_key_path_and_both_lines(tmp_path):
    local = "spark:\n  shuffle_partitions: 4\n  log_level: WARN\n  shuffle_partitions: 16\n"
    conf = _conf(tmp_path, local=local)
    with pytest.raises(ConfigError) as info:
        load_settings(conf, "local")
    assert info.value.source == str(conf / "env" / "local.yaml")
    assert info.value.key == "spark.shuffle_partitions"
    assert "duplicated key (at lines 2 and 4)" in str(info.value)


def test_a_repeated_key_inside_a_list_item_names_the_item(tmp_path):
    path = tmp_path / "views.yaml"
    path.write_text("views:\n  - {name: a}\n  - {name: b, ttl: 1d, name: c}\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_file(path)
    assert info.value.key == "views[1].name"
    assert "line 3, columns 6 and 24" in str(info.value)


def test_keys_spelled_differently_but_equal_are_one_key(tmp_path):
    path = tmp_path / "quoted.yaml"
    path.write_text("a: 1\n'a': 2\n")
    with pytest.raises(ConfigError, match=r"quoted\.yaml: a: duplicated key \(at lines 1 and 2\)"):
        load_yaml_file(path)


def test_a_key_merged_from_an_anchor_may_be_overridden(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &base\n  x: 1\n  y: 2\nover:\n  <<: *base\n  x: 3\n")
    assert load_yaml_file(path) == {"base": {"x": 1, "y": 2}, "over": {"x": 3, "y": 2}}


def test_a_repeated_key_in_an_override_value_names_the_override(tmp_path):
    text = "spark.conf={spark.a: '1', spark.a: '2'}"
    with pytest.raises(ConfigError) as info:
        load_settings(_conf(tmp_path), "local", [text])
    assert info.value.source == f"--conf {text}"
    assert info.value.key == "spark.conf.spark.a"


def test_an_empty_lakehouse_root_is_rejected(tmp_path):
    # An empty root would put every table at /<layer>/<table>.
    with pytest.raises(ConfigError) as info:
        load_settings(_conf(tmp_path), "local", ["lakehouse.root="])
    assert (info.value.source, info.value.key) == ("--conf lakehouse.root=", "lakehouse.root")


def test_a_date_override_is_taken_as_the_date_it_reads_as():
    # YAML reads an unquoted 2011-12-09 as a date; the setting holds its ISO text.
    conf = Path(__file__).resolve().parents[1] / "conf"
    settings = load_settings(conf, None, ["synthetic.end_date=2011-12-09"])
    assert settings.synthetic.end_date == "2011-12-09"
