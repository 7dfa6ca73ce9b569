"""The whole configuration, checked before Spark starts.

:func:`validate_configuration` loads the settings (``base.yaml``, the overlay, ``--conf``
overrides) and checks that a local ``lakehouse.root`` is a directory this process can write (or
can create). A problem is one line naming the file (or ``--conf`` override) and the key.

Example:
    >>> settings = validate_configuration("conf", "local", ["lakehouse.root=/data/lake"])
    >>> settings.lakehouse.root
    '/data/lake'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from featurelake.config import (
    ConfigError,
    Settings,
    SettingsWithSources,
    load_settings_with_sources,
)

__all__ = ["check_lakehouse_root", "validate_configuration"]

ROOT_KEY = "lakehouse.root"


def validate_configuration(
    conf_dir: str | Path = "conf",
    env: str | None = None,
    overrides: Sequence[str] = (),
) -> Settings:
    """Load the settings and check that ``lakehouse.root`` can be written.

    Args:
        conf_dir: the configuration directory.
        env: overlay name (``conf/env/<env>.yaml``); defaults to ``$FEATURELAKE_ENV`` or ``local``.
        overrides: ``dotted.key=value`` strings.

    Returns:
        The validated settings.

    Raises:
        ConfigError: the settings are invalid, or ``lakehouse.root`` cannot be written.
    """
    loaded = load_settings_with_sources(conf_dir, env, overrides)
    check_lakehouse_root(loaded)
    return loaded.settings


# --------------------------------------------------------------------------------------------
# lakehouse.root
# --------------------------------------------------------------------------------------------


def check_lakehouse_root(loaded: SettingsWithSources) -> None:
    """Check that a local ``lakehouse.root`` is, or can be created as, a writable directory.

    Remote stores (``s3://``, ``abfss://``, ``hdfs://``...) are not checked; ``file:`` URIs and
    plain paths are.

    Args:
        loaded: the settings and where each key came from.

    Raises:
        ConfigError: naming the file or ``--conf`` override that set the root.
    """
    root = loaded.settings.lakehouse.root
    path = _local_path(root)
    if path is None:
        return
    try:
        problem = _directory_problem(path)
    except OSError as exc:
        problem = f"cannot check {root}: {exc.strerror or exc}"
    if problem:
        raise ConfigError(loaded.source_of(ROOT_KEY), ROOT_KEY, problem)


def _local_path(root: str) -> Path | None:
    """The local path ``root`` names, or None for a remote store."""
    parts = urlsplit(root)
    if parts.scheme == "file":
        return Path(parts.path)
    if parts.scheme:
        return None
    return Path(root)


def _directory_problem(path: Path) -> str | None:
    """Why tables cannot be written under ``path``, or None."""
    if path.is_symlink() and not path.exists():
        return f"{path} is a broken symbolic link"
    if path.exists():
        if not path.is_dir():
            return f"{path} exists and is not a directory"
        return _cannot_write(path)
    nearest = next(parent for parent in path.absolute().parents if parent.exists())
    if not nearest.is_dir():
        return f"cannot create {path}: {nearest} exists and is not a directory"
    problem = _cannot_write(nearest)
    return f"cannot create {path}: {problem}" if problem else None


def _cannot_write(directory: Path) -> str | None:
    """Why no file can be created in ``directory``, or None."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"{directory} is not writable"
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Permission bits do not stop root, so os.access says yes; a file system may still say
        # no (/proc, /sys, an NFS export that squashes root). Only trying tells.
        try:
            handle, name = tempfile.mkstemp(prefix=".featurelake-write-check-", dir=directory)
        except OSError as exc:
            return f"{directory} is not writable (creating a file there: {exc.strerror or exc})"
        os.close(handle)
        os.unlink(name)
    return None
