"""A classifier's training data rebuilt from the Delta versions its MLflow run logged.

Every training run tags the path and Delta version of the feature and label tables it read
(``featurelake.features.path`` / ``.version``, ``featurelake.labels.*``) and logs its split
parameters (``split.test_fraction``, ``split.seed``); reading those versions gives back exactly
the rows it saw, split the way it split them. Promotion, monitoring and the retraining triggers
all start from here.

Example:
    >>> logged = logged_frame(ctx.tables, config, run)
    >>> held_out = logged.side("test")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from featurelake.delta import DeltaTables
from featurelake.ml.classification import SPLIT_COL, prepare_training_frame
from featurelake.ml.config import ClassificationConfig

__all__ = ["LoggedFrame", "describe_versions", "logged_frame", "new_rows", "row_columns"]


@dataclass(frozen=True)
class LoggedFrame:
    """A run's data.

    Attributes:
        features: the feature table at the logged version.
        prepared: key, features, label, ``_split``, ``_fold`` (:func:`prepare_training_frame`
            with the run's split), every row, labelled or not.
        versions: table path -> Delta version read.
        label: the label column.
    """

    features: DataFrame
    prepared: DataFrame
    versions: dict[str, int]
    label: str

    def labelled(self) -> DataFrame:
        """The rows with a label (what training uses)."""
        return self.prepared.filter(F.col(self.label).isNotNull())

    def side(self, side: str) -> DataFrame:
        """The labelled rows on one side of the split (``train`` or ``test``)."""
        return self.labelled().filter(F.col(SPLIT_COL) == side)


def logged_frame(tables: DeltaTables, config: ClassificationConfig, run: Any) -> LoggedFrame:
    """Rebuild a run's prepared frame from the Delta versions and split it logged.

    Args:
        tables: table I/O.
        config: the model's configuration (its feature list; the split comes from the run,
            which may predate a configuration change).
        run: the run with the lineage tags and ``split.*`` params
            (:func:`featurelake.ml.registry.training_run`).
    """
    tags, params = run.data.tags, run.data.params
    features_path, labels_path = tags["featurelake.features.path"], tags["featurelake.labels.path"]
    versions = {
        features_path: int(tags["featurelake.features.version"]),
        labels_path: int(tags["featurelake.labels.version"]),
    }
    features = tables.read(features_path, version=versions[features_path])
    labels = tables.read(labels_path, version=versions[labels_path])
    logged = config.model_copy(
        update={
            "split": config.split.model_copy(
                update={
                    "test_fraction": float(params["split.test_fraction"]),
                    "seed": int(params["split.seed"]),
                }
            )
        }
    )
    prepared = prepare_training_frame(features, labels, logged)
    return LoggedFrame(features, prepared, versions, config.label)


def row_columns(config: ClassificationConfig) -> list[str]:
    """The columns that identify a labelled row's content: key, every feature, the label."""
    return [config.features.key, *config.feature_columns, config.label]


def new_rows(current: DataFrame, earlier: DataFrame, columns: list[str], key: str) -> DataFrame:
    """The rows of ``current`` whose ``columns`` appear in no row of ``earlier``.

    Added rows and changed rows (a key whose features or label differ) alike; nulls and NaN
    compare equal, as in SQL's EXCEPT. The other columns of ``current`` are kept.

    Args:
        current, earlier: frames with ``columns``; ``key`` (among them) is unique and not null.
        columns: the columns compared.
        key: the entity key.
    """
    changed = current.select(*columns).subtract(earlier.select(*columns))
    return current.join(changed.select(key), on=key, how="left_semi")


def describe_versions(versions: dict[str, int], root: str) -> str:
    """``gold/credit_features@3, gold/credit_labels@3``: table versions, in words."""
    from featurelake.monitoring.references import table_name_of

    return ", ".join(f"{table_name_of(p, root)}@{v}" for p, v in sorted(versions.items()))
