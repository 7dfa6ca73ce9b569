"""References: the rows a monitored table is compared with, and a stable name for them.

Three kinds (``reference.kind`` in conf/monitoring.yaml):

* ``champion`` - the training rows of the model's current ``champion``: the feature table at
  the Delta version its MLflow run logged (``featurelake.features.path`` / ``.version``) and,
  for a classifier, only the entities on the training side of the run's hash split that had
  a label (the labels table at its logged version). Promoting another model changes the
  reference.
* ``version`` - the table at a fixed Delta version.
* ``window`` - the table's rows whose window column falls between two dates (inclusive).

A reference's id names exactly the rows it stands for (model version, table versions), so its
profile is computed once and kept in ``ops/profile_metrics``; later runs read it from there.

Example:
    >>> reference = resolve_reference(ctx.tables, settings, table_config, path)
    >>> reference.id
    'champion:credit_default@3:gold/credit_features@2:train'
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.core.config import Settings
from featurelake.core.errors import UserError
from featurelake.delta import DeltaTables
from featurelake.monitoring.config import ReferenceConfig, TableMonitorConfig

__all__ = [
    "Reference",
    "ReferenceUnavailable",
    "champion_run",
    "classifier_split_rows",
    "resolve_reference",
    "table_name_of",
]

log = logging.getLogger(__name__)


class ReferenceUnavailable(UserError):
    """The reference cannot be had now (no champion yet); the comparison is skipped."""


@dataclass(frozen=True)
class Reference:
    """The rows a table is compared with.

    Attributes:
        id: names the rows exactly (cache key of the reference's profile).
        kind: ``champion``, ``version``, ``window`` or ``champion_validation``.
        rows: the reference rows (lazy).
        table: ``<layer>/<table>`` the rows come from.
        table_version: that table's Delta version.
        model, model_version: the champion, for ``champion`` references.
        versions: every table read for the rows (``<layer>/<table>`` -> version).
    """

    id: str
    kind: str
    rows: DataFrame = field(repr=False)
    table: str
    table_version: int | None = None
    model: str | None = None
    model_version: str | None = None
    versions: dict[str, int] = field(default_factory=dict)


def table_name_of(path: str, root: str) -> str:
    """``<layer>/<table>`` of a table path under the lakehouse root (else the path)."""
    from pathlib import Path

    try:
        relative = Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return path
    return relative.as_posix()


def champion_run(client: Any, model: str) -> tuple[Any, Any]:
    """(champion model version, the MLflow run carrying its lineage tags and split params).

    A classifier's registered version belongs to a candidate's nested run; the split
    parameters are on its parent run (tags are on both).

    Raises:
        ReferenceUnavailable: the model has no champion.
    """
    from featurelake.ml.registry import CHAMPION, alias_version, training_run

    version = alias_version(client, model, CHAMPION)
    if version is None:
        raise ReferenceUnavailable(f"model {model!r} has no champion yet")
    return version, training_run(client, version)


def classifier_split_rows(
    tables: DeltaTables, config: Any, run: Any, side: str
) -> tuple[DataFrame, DataFrame, dict[str, int]]:
    """A classifier's feature rows and labelled frame on one side of its run's split.

    Rebuilt from the Delta versions the run logged, with the split parameters it used (they
    may predate a configuration change; :func:`featurelake.ml.lineage.logged_frame`).

    Args:
        tables: table I/O.
        config: the model's :class:`~featurelake.ml.config.ClassificationConfig`.
        run: the run with the lineage tags and ``split.*`` params (:func:`champion_run`).
        side: ``train`` or ``test``.

    Returns:
        (feature table rows of that side's labelled entities, the prepared frame of that side
        - key, features, label -, table -> version read).
    """
    from featurelake.ml.lineage import logged_frame

    logged = logged_frame(tables, config, run)
    prepared = logged.side(side)
    key = config.features.key
    rows = logged.features.join(prepared.select(key), on=key, how="left_semi")
    return rows, prepared, logged.versions


def _champion(tables: DeltaTables, settings: Settings, model: str, root: str) -> Reference:
    import mlflow

    from featurelake.ml.config import ClassificationConfig
    from featurelake.ml.tracking import configure_tracking
    from featurelake.monitoring.models import model_config

    target = configure_tracking(settings.mlflow)
    client = mlflow.MlflowClient(target.tracking_uri, target.registry_uri)
    version, run = champion_run(client, model)
    config = model_config(settings, model)
    tags = run.data.tags
    if isinstance(config, ClassificationConfig):
        rows, _prepared, paths = classifier_split_rows(tables, config, run, "train")
        suffix = ":train"
    else:
        path = tags["featurelake.features.path"]
        paths = {path: int(tags["featurelake.features.version"])}
        rows, suffix = tables.read(path, version=paths[path]), ""
    versions = {table_name_of(p, root): v for p, v in paths.items()}
    table = table_name_of(tags["featurelake.features.path"], root)
    return Reference(
        id=f"champion:{model}@{version.version}:{table}@{versions[table]}{suffix}",
        kind="champion",
        rows=rows,
        table=table,
        table_version=versions[table],
        model=model,
        model_version=str(version.version),
        versions=versions,
    )


def _window_rows(rows: DataFrame, table: TableMonitorConfig, spec: ReferenceConfig) -> DataFrame:
    assert table.window is not None and spec.start is not None and spec.end is not None
    day = F.to_date(F.col(table.window.column))
    return rows.filter((day >= F.lit(spec.start)) & (day <= F.lit(spec.end)))


def resolve_reference(
    tables: DeltaTables, settings: Settings, table: TableMonitorConfig, path: str
) -> Reference:
    """The reference a monitored table declares.

    Args:
        tables: table I/O (reads are recorded in the job's lineage).
        settings: the job's settings (MLflow, lakehouse root).
        table: the table's declaration (with a ``reference``).
        path: the monitored table's path.

    Raises:
        ReferenceUnavailable: a champion reference while the model has no champion.
        UserError: the table declares no reference.
    """
    spec = table.reference
    if spec is None:
        raise UserError(f"{table.table} declares no reference")
    root = settings.lakehouse.root
    if spec.kind == "champion":
        from featurelake.monitoring.models import model_trained_on

        model = spec.model or model_trained_on(settings, table.table)
        return _champion(tables, settings, model, root)
    if spec.kind == "version":
        assert spec.version is not None
        rows = tables.read(path, version=spec.version)
        return Reference(
            id=f"version:{table.table}@{spec.version}",
            kind="version",
            rows=rows,
            table=table.table,
            table_version=spec.version,
            versions={table.table: spec.version},
        )
    current = tables.version(path)
    return Reference(
        id=f"window:{table.table}:{spec.start}..{spec.end}",
        kind="window",
        rows=_window_rows(tables.read(path, version=current), table, spec),
        table=table.table,
        table_version=current,
        versions={table.table: current},
    )
