"""MLflow set-up from ``Settings.mlflow``.

Default: a local sqlite database for tracking *and* the model registry, and a local artifact
folder, both under the lakehouse (``lakehouse/mlflow/``). Any tracking URI works by
configuration (``mlflow.tracking_uri``, or ``$MLFLOW_TRACKING_URI`` through conf/base.yaml),
a real ``mlflow server`` included; ``mlflow.registry_uri`` defaults to the tracking URI.

Artifact location: with a local tracking store (``sqlite:``, a file path) new experiments store
artifacts in ``mlflow.artifact_location``; with an ``http(s)`` tracking server the server decides
(its ``--default-artifact-root`` / ``--artifacts-destination``).

Nothing here talks to the network except the configured tracking server: telemetry and the
artifact progress bar are switched off.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from featurelake.core.config import MlflowSettings

__all__ = [
    "TrackingTarget",
    "code_version",
    "configure_tracking",
    "lineage_tags",
    "pip_requirements",
    "store_uris",
]

log = logging.getLogger(__name__)

# Set before MLflow does any work: no usage telemetry, no progress bars, no slow
# environment inference.
_QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


@dataclass(frozen=True)
class TrackingTarget:
    """Where runs and models go.

    Attributes:
        tracking_uri: the resolved tracking URI.
        registry_uri: the resolved model-registry URI.
        experiment_id: the experiment runs are created in.
        artifact_location: the experiment's artifact root.
    """

    tracking_uri: str
    registry_uri: str
    experiment_id: str
    artifact_location: str


def _is_remote(uri: str) -> bool:
    return urlparse(uri).scheme in ("http", "https", "databricks")


def _resolve_store_uri(uri: str) -> str:
    """Make a relative sqlite/file store absolute and create its folder."""
    if uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        path = path if path.is_absolute() else Path.cwd() / path
        path.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{path.resolve()}"
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        path = Path(parsed.path if parsed.scheme else uri).resolve()
        path.mkdir(parents=True, exist_ok=True)
        return path.as_uri()
    return uri


def store_uris(settings: MlflowSettings) -> tuple[str, str]:
    """The resolved (tracking, registry) URIs; a relative local store is made absolute."""
    tracking_uri = _resolve_store_uri(settings.tracking_uri)
    registry_uri = (
        _resolve_store_uri(settings.registry_uri) if settings.registry_uri else tracking_uri
    )
    return tracking_uri, registry_uri


@contextmanager
def _environment_kept(*names: str) -> Iterator[None]:
    """Restore the environment variables ``names`` to their values on entry."""
    before = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def configure_tracking(settings: MlflowSettings, experiment: str | None = None) -> TrackingTarget:
    """Point MLflow at the configured tracking and registry stores; create the experiment.

    Call once at a job's entry point (MLflow keeps the URIs process-wide).

    Args:
        settings: the ``mlflow`` section of the configuration.
        experiment: experiment name; defaults to ``settings.experiment``.

    Returns:
        The resolved :class:`TrackingTarget`.
    """
    import mlflow

    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    tracking_uri, registry_uri = store_uris(settings)
    with _environment_kept("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        # MLflow also exports the URIs for child processes; a job started from here (a test,
        # a notebook, a scheduler) reads its own configuration instead.
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.set_registry_uri(registry_uri)
    name = experiment or settings.experiment
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    found = client.get_experiment_by_name(name)
    if found is None:
        artifact_root: str | None = None
        if not _is_remote(tracking_uri):
            folder = Path(settings.artifact_location).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            artifact_root = folder.as_uri()
        experiment_id = client.create_experiment(name, artifact_location=artifact_root)
        found = client.get_experiment(experiment_id)
    mlflow.set_experiment(experiment_id=found.experiment_id)
    target = TrackingTarget(
        tracking_uri, registry_uri, found.experiment_id, found.artifact_location
    )
    log.info(
        "mlflow_configured",
        extra={
            "fields": {
                "tracking_uri": tracking_uri,
                "registry_uri": registry_uri,
                "experiment": name,
                "experiment_id": found.experiment_id,
                "artifact_location": found.artifact_location,
            }
        },
    )
    return target


def code_version() -> str:
    """The git commit of the code (with ``-dirty`` when modified), else the package version."""
    import featurelake

    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "."],
            cwd=here.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
        return f"{sha}-dirty" if dirty.strip() else sha
    except (OSError, subprocess.SubprocessError):
        return f"featurelake=={featurelake.__version__}"


def pip_requirements() -> list[str]:
    """Explicit requirements for logged models (MLflow's inference is slow and guesses)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("pyspark", "mlflow", "numpy", "pandas")]


def lineage_tags(tables: Mapping[str, tuple[str, int]], **extra: str) -> dict[str, str]:
    """MLflow tags naming the Delta tables (absolute path and version) a run read.

    Args:
        tables: role (``features``, ``labels``) -> (table path, Delta version read), e.g. from
            ``ctx.tables.lineage.reads``.
        extra: more tags, as ``featurelake.<name>``.

    Returns:
        ``featurelake.<role>.path`` / ``.version`` for each table, ``featurelake.code_version``
        and the extras.
    """
    tags: dict[str, str] = {"featurelake.code_version": code_version()}
    for role, (path, version) in tables.items():
        parsed = urlparse(path)
        local = parsed.scheme in ("", "file")
        tags[f"featurelake.{role}.path"] = (
            str(Path(parsed.path if parsed.scheme else path).resolve()) if local else path
        )
        tags[f"featurelake.{role}.version"] = str(version)
    tags.update({f"featurelake.{k}": v for k, v in extra.items()})
    return tags
