"""The whole configuration checked before Spark starts: lakehouse.root and every declaration."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from featurelake.core.config import ConfigError
from featurelake.core.runner import execute_job
from featurelake.core.validation import validate_configuration

PROJECT = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A copy of the shipped configuration directory, free to break."""
    return Path(shutil.copytree(PROJECT / "conf", tmp_path / "conf"))


@pytest.fixture
def lake(tmp_path: Path) -> str:
    return f"lakehouse.root={tmp_path / 'lake'}"


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory in which this process cannot create files.

    Permission bits do not stop root, so as root the directory gets the immutable attribute
    (``chattr +i``); where that is not possible the test is skipped.
    """
    path = tmp_path / "read-only"
    path.mkdir()
    if not IS_ROOT:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    made = chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0
    if not made:
        pytest.skip("running as root without chattr +i: no read-only directory can be made")
    try:
        with pytest.raises(OSError):  # the fixture is only useful if it really refuses
            (path / "probe").write_text("x")
        yield path
    finally:
        subprocess.run([str(chattr), "-i", str(path)], check=True)


def _break(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


# --------------------------------------------------------------------------------------------
# The whole directory
# --------------------------------------------------------------------------------------------


def test_the_shipped_configuration_passes(conf, lake):
    settings = validate_configuration(conf, "local", [lake])
    assert settings.conf_dir == str(conf)


def test_a_directory_with_only_the_settings_passes(tmp_path, lake):
    conf = tmp_path / "conf"
    (conf / "env").mkdir(parents=True)
    (conf / "base.yaml").write_text("spark:\n  shuffle_partitions: 4\n")
    (conf / "env" / "local.yaml").write_text("{}\n")
    assert validate_configuration(conf, "local", [lake]).spark.shuffle_partitions == 4


@pytest.mark.parametrize(
    "declaration",
    [
        "sources/online_retail.yaml",
        "tables/customers.yaml",
        "features_gold.yaml",
        "features/customer.yaml",
        "models/credit_default.yaml",
        "pipeline.yaml",
        "serving.yaml",
    ],
)
def test_every_declaration_is_parsed_and_an_error_names_its_file_and_key(conf, lake, declaration):
    _break(conf / declaration, "\nno_such_key: 1\n")
    with pytest.raises(ConfigError) as info:
        validate_configuration(conf, "local", [lake])
    assert info.value.source == str(conf / declaration)
    assert info.value.key == "no_such_key"
    assert "unknown key" in str(info.value)


def test_every_problem_is_reported_on_its_own_line(conf, lake):
    _break(conf / "sources" / "online_retail.yaml", "\nno_such_key: 1\n")
    _break(conf / "pipeline.yaml", "\nretries: 3\n")
    with pytest.raises(ConfigError) as info:
        validate_configuration(conf, "local", [lake])
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{conf / 'sources' / 'online_retail.yaml'}: no_such_key: ")
    assert lines[1].startswith(f"  {conf / 'pipeline.yaml'}: retries: unknown key")


def test_a_repeated_key_in_a_declaration_names_both_lines(conf, lake):
    table = conf / "tables" / "customers.yaml"
    first = next(
        i for i, line in enumerate(table.read_text().splitlines(), 1) if line.startswith("name:")
    )
    last = len(table.read_text().splitlines()) + 1
    _break(table, "name: customers_again\n")
    with pytest.raises(ConfigError) as info:
        validate_configuration(conf, "local", [lake])
    assert (info.value.source, info.value.key) == (str(table), "name")
    assert f"duplicated key (at lines {first} and {last})" in str(info.value)


def test_a_serving_role_naming_an_undeclared_view_names_the_serving_file(conf, lake):
    serving = conf / "serving.yaml"
    data = yaml.safe_load(serving.read_text())
    data["access"]["roles"]["auditor"] = {"views": ["no_such_view"]}
    serving.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        validate_configuration(conf, "local", [lake])
    assert (info.value.source, info.value.key) == (str(serving), "access.roles")
    assert "role 'auditor' lists undeclared view(s) ['no_such_view']" in str(info.value)


def test_a_job_with_an_invalid_declaration_stops_before_its_session_is_built(conf, tmp_path):
    _break(conf / "tables" / "customers.yaml", "\nno_such_key: 1\n")
    ran: list[str] = []
    outcome = execute_job(
        "silver",
        lambda ctx, args: ran.append("body"),
        ["--conf-dir", str(conf), "--conf", f"lakehouse.root={tmp_path / 'lake'}"],
    )
    assert outcome.code == 2
    assert isinstance(outcome.error, ConfigError)
    assert outcome.error.source == str(conf / "tables" / "customers.yaml")
    assert ran == []


# --------------------------------------------------------------------------------------------
# lakehouse.root
# --------------------------------------------------------------------------------------------


def _root_error(conf: Path, root: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        validate_configuration(conf, "local", [f"lakehouse.root={root}"])
    assert info.value.key == "lakehouse.root"
    return info.value


def test_a_root_that_is_a_file_names_the_override(conf, tmp_path):
    file = tmp_path / "lake.txt"
    file.write_text("not a directory")
    error = _root_error(conf, str(file))
    assert error.source == f"--conf lakehouse.root={file}"
    assert str(error).endswith(f"lakehouse.root: {file} exists and is not a directory")


def test_a_root_that_is_a_file_names_the_file_that_set_it(conf, tmp_path):
    file = tmp_path / "lake.txt"
    file.write_text("not a directory")
    (conf / "env" / "local.yaml").write_text(f"lakehouse:\n  root: {file}\n")
    with pytest.raises(ConfigError) as info:
        validate_configuration(conf, "local")
    assert (info.value.source, info.value.key) == (
        str(conf / "env" / "local.yaml"),
        "lakehouse.root",
    )


def test_a_root_under_a_file_cannot_be_created(conf, tmp_path):
    file = tmp_path / "lake.txt"
    file.write_text("not a directory")
    error = _root_error(conf, f"{file}/lake")
    assert f"cannot create {file}/lake: {file} exists and is not a directory" in str(error)


def test_a_file_uri_root_is_checked_like_a_path(conf, tmp_path):
    file = tmp_path / "lake.txt"
    file.write_text("not a directory")
    assert "exists and is not a directory" in str(_root_error(conf, f"file://{file}"))


def test_a_read_only_root_directory_is_rejected(conf, read_only_dir):
    error = _root_error(conf, str(read_only_dir))
    assert f"{read_only_dir} is not writable" in str(error)


def test_a_root_whose_nearest_existing_parent_is_read_only_is_rejected(conf, read_only_dir):
    error = _root_error(conf, str(read_only_dir / "lake" / "main"))
    assert f"cannot create {read_only_dir}/lake/main: {read_only_dir} is not writable" in str(error)


def test_a_root_under_proc_is_rejected_even_for_root(conf):
    # /proc passes os.access(W_OK) for root, but no file can be created there.
    error = _root_error(conf, "/proc/featurelake-lake")
    assert "cannot create /proc/featurelake-lake: /proc is not writable" in str(error)


def test_a_missing_root_under_a_writable_directory_passes(conf, tmp_path):
    root = tmp_path / "new" / "lake"
    settings = validate_configuration(conf, "local", [f"lakehouse.root={root}"])
    assert settings.lakehouse.root == str(root)
    assert not (tmp_path / "new").exists()  # checked, not created
    assert list(tmp_path.glob(".featurelake-write-check-*")) == []


@pytest.mark.parametrize("root", ["s3://bucket/lake", "abfss://c@account.dfs.core.windows.net/l"])
def test_a_remote_root_is_not_checked(conf, root):
    assert validate_configuration(conf, "local", [f"lakehouse.root={root}"]).lakehouse.root == root
