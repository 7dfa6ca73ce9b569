"""The whole configuration directory, checked before Spark starts.

:func:`validate_configuration` loads the settings (``base.yaml``, the overlay, ``--conf``
overrides), checks that a local ``lakehouse.root`` is a directory this process can write (or can
create), and parses every declaration in the configuration directory with the parser its job
uses:

=====================================  ===================================================
``sources/*.yaml``                     :func:`featurelake.lakehouse.sources.load_sources`
``<silver.tables_dir>/*.yaml``         :func:`featurelake.lakehouse.silver.load_table_specs`
``features_gold.yaml``                 :func:`featurelake.lakehouse.gold.load_gold_config`
``<feature_store.definitions_dir>/``   :func:`featurelake.feature_store.load_feature_views`
``models/*.yaml``                      :func:`featurelake.ml.config.load_model_config`
``pipeline.yaml``                      :func:`featurelake.core.pipeline.load_pipeline`
``serving.yaml``                       :func:`featurelake.feature_store.online.load_serving_config`,
                                       its roles checked against the feature views
``monitoring.yaml``                    :func:`featurelake.monitoring.config.load_monitoring_config`,
                                       its names checked against the other declarations
=====================================  ===================================================

A part that is absent is skipped (the job that needs it says so). Every problem found is
reported, one line each, naming the file (or ``--conf`` override) and the key.

The settings returned carry, in ``spark.conf["spark.jars.packages"]``, the JVM packages the
declared sources need (a JDBC source's driver), so that whoever starts the JVM
(:func:`~featurelake.core.session.build_spark_session`, ``spark-submit.sh``) puts them on the
classpath.

Example:
    >>> settings = validate_configuration("conf", "local", ["lakehouse.root=/data/lake"])
    >>> settings.lakehouse.root
    '/data/lake'
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

from featurelake.core.config import (
    ConfigError,
    Settings,
    SettingsWithSources,
    load_settings_with_sources,
)

if TYPE_CHECKING:
    from featurelake.feature_store.definitions import FeatureView
    from featurelake.lakehouse.sources import SourceSpec

__all__ = ["check_lakehouse_root", "validate_configuration"]

ROOT_KEY = "lakehouse.root"
T = TypeVar("T")


def validate_configuration(
    conf_dir: str | Path = "conf",
    env: str | None = None,
    overrides: Sequence[str] = (),
) -> Settings:
    """Load the settings and check everything in ``conf_dir`` a job will read.

    Args:
        conf_dir: the configuration directory.
        env: overlay name (``conf/env/<env>.yaml``); defaults to ``$FEATURELAKE_ENV`` or ``local``.
        overrides: ``dotted.key=value`` strings.

    Returns:
        The validated settings, with the declared sources' JVM packages added to
        ``spark.conf["spark.jars.packages"]``.

    Raises:
        ConfigError: the settings are invalid, ``lakehouse.root`` cannot be written, or a
            declaration is invalid; with several problems, the message has one line for each.
    """
    loaded = load_settings_with_sources(conf_dir, env, overrides)
    settings = loaded.settings
    errors: list[ConfigError] = []

    def attempt(check: Callable[..., T], *args: object) -> T | None:
        try:
            return check(*args)
        except ConfigError as exc:
            errors.append(exc)
            return None

    attempt(check_lakehouse_root, loaded)
    sources = attempt(_check_sources, settings)
    attempt(_check_silver_tables, settings)
    attempt(_check_gold, settings)
    views = attempt(_check_feature_views, settings)
    attempt(_check_models, settings)
    attempt(_check_pipeline, settings)
    attempt(_check_serving, settings, views)
    # monitoring.yaml's names are checked against the other declarations: only once they parse
    attempt(_check_monitoring, settings, None if errors else views)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        first, rest = errors[0], errors[1:]
        raise ConfigError(
            first.source, first.key, first.problem + "".join(f"\n  {e}" for e in rest)
        )
    return _with_source_packages(settings, sources or {})


def _with_source_packages(settings: Settings, sources: Mapping[str, SourceSpec]) -> Settings:
    """The settings with the JVM packages the sources need added to ``spark.jars.packages``."""
    from featurelake.core.session import PACKAGES_KEY
    from featurelake.lakehouse.sources import required_jvm_packages

    needed = required_jvm_packages(sources.values())
    if not needed:
        return settings
    configured = [c.strip() for c in settings.spark.conf.get(PACKAGES_KEY, "").split(",")]
    packages = ",".join(dict.fromkeys([c for c in configured if c] + needed))
    spark = settings.spark.model_copy(
        update={"conf": {**settings.spark.conf, PACKAGES_KEY: packages}}
    )
    return settings.model_copy(update={"spark": spark})


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


# --------------------------------------------------------------------------------------------
# Declarations, each read with its job's parser
# --------------------------------------------------------------------------------------------
# The parsers are imported where they are used: silver and pipeline import the job runner,
# which imports this module.


def _has_yaml(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("*.yaml"))


def _check_sources(settings: Settings) -> Mapping[str, SourceSpec]:
    from featurelake.lakehouse.sources import SOURCES_DIR, load_sources

    if _has_yaml(settings.conf_path(SOURCES_DIR)):
        return load_sources(settings)
    return {}


def _check_silver_tables(settings: Settings) -> None:
    from featurelake.lakehouse.silver import load_table_specs

    folder = settings.conf_path(settings.silver.tables_dir)
    if _has_yaml(folder):
        load_table_specs(folder)


def _check_gold(settings: Settings) -> None:
    from featurelake.lakehouse.gold import GOLD_CONFIG_FILE, load_gold_config

    file = settings.conf_path(GOLD_CONFIG_FILE)
    if file.is_file():
        load_gold_config(file)


def _check_feature_views(settings: Settings) -> Mapping[str, FeatureView]:
    from featurelake.feature_store.definitions import load_feature_views

    return load_feature_views(settings)


def _check_models(settings: Settings) -> None:
    """Every model config, and the columns it names against the declared silver/gold tables."""
    from featurelake.ml.config import check_against_catalog, load_model_config
    from featurelake.monitoring.catalog import declared_columns

    files = sorted(settings.conf_path("models").glob("*.yaml"))
    if not files:
        return
    try:
        catalog = declared_columns(settings)
    except ConfigError:  # reported by the silver or gold check; models are checked alone
        catalog = {}
    for file in files:
        check_against_catalog(load_model_config(file), str(file), catalog)


def _check_pipeline(settings: Settings) -> None:
    from featurelake.core.pipeline import load_pipeline

    if settings.conf_path("pipeline.yaml").is_file():
        load_pipeline(settings)


def _check_serving(settings: Settings, views: Mapping[str, FeatureView] | None) -> None:
    """``serving.yaml``, and its roles against the views (unless the views failed already)."""
    from featurelake.feature_store.auth import Authorizer
    from featurelake.feature_store.online import load_serving_config

    file = settings.conf_path("serving.yaml")
    if not file.is_file():
        return
    serving = load_serving_config(settings)
    if views is None:
        return
    try:
        Authorizer(serving.access, views)
    except ValueError as exc:
        raise ConfigError(str(file), "access.roles", str(exc)) from None


def _check_monitoring(settings: Settings, views: Mapping[str, FeatureView] | None) -> None:
    """``monitoring.yaml``, and its table, column, model and source names (given the views, which
    the caller passes only when every other declaration parsed)."""
    from featurelake.monitoring.catalog import check_monitoring_config
    from featurelake.monitoring.config import load_monitoring_config, monitoring_file

    if not monitoring_file(settings).is_file():
        return
    config = load_monitoring_config(settings)
    if views is not None:
        check_monitoring_config(settings, config, views)
