"""The whole configuration checked before Spark starts: lakehouse.root."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from featurelake.config import ConfigError
from featurelake.config_check import validate_configuration

PROJECT = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    """A copy of the shipped configuration directory, free to break."""
    return Path(shutil.copytree(PROJECT / "conf", tmp_path / "conf"))


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
    assert (info.value.source, info.value.key) == (str(conf / "env" / "local.yaml"),
                                                   "lakehouse.root")


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
