"""The tables and columns ``conf/`` declares, and the monitoring configuration checked against them.

The columns of every table featurelake writes are known from its declarations before any
table is read: the gold feature library's column lists and ``conf/features_gold.yaml``, the
silver table specs, the feature views, the model configs (their feature and label tables and
their predictions tables) and the training sets ``conf/monitoring.yaml`` declares by feature
reference. :func:`check_monitoring_config` checks every name ``monitoring.yaml`` uses against
that catalog, so an unknown table, column, view, model or source stops the job at start-up,
with the file and key in the message.

Example:
    >>> catalog = build_catalog(settings, views)
    >>> "recency_days" in catalog["gold/customer_features_daily"]
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from featurelake.core.config import Settings
from featurelake.core.errors import ConfigError
from featurelake.feature_store.definitions import (
    FeatureView,
    FeatureViewError,
    resolve_feature_refs,
)
from featurelake.monitoring.config import MonitoringConfig, TableMonitorConfig, monitoring_file

__all__ = [
    "PREDICTION_COLUMNS",
    "build_catalog",
    "check_monitoring_config",
    "declared_columns",
    "monitored_columns",
]

#: Columns of ``predictions/<model>`` besides the entity key (docs/CONTRACTS.md).
PREDICTION_COLUMNS = (
    "prediction",
    "probability",
    "segment",
    "model_name",
    "model_version",
    "run_id",
    "feature_table_version",
    "batch_id",
    "inference_ts",
    "scoring_date",
    "role",
)
_SEGMENT_COLUMNS = ("customer_id", "segment_id", "segment_name", "model_version", "as_of_ts")


def _gold_columns(settings: Settings) -> dict[str, set[str]]:
    from featurelake.lakehouse.feature_library.customers import customer_feature_columns
    from featurelake.lakehouse.feature_library.metadata import (
        credit_feature_specs,
        credit_label_specs,
    )
    from featurelake.lakehouse.gold import GOLD_CONFIG_FILE, load_gold_config

    file = settings.conf_path(GOLD_CONFIG_FILE)
    if not file.is_file():
        return {}
    customers = set(customer_feature_columns(load_gold_config(file).customers.windows_days))
    return {
        "gold/customer_features": set(customers),
        "gold/customer_features_daily": set(customers),
        "gold/credit_features": {s.name for s in credit_feature_specs()},
        "gold/credit_labels": {s.name for s in credit_label_specs()},
        "gold/customer_segments": set(_SEGMENT_COLUMNS),
    }


def _silver_columns(settings: Settings) -> dict[str, set[str]]:
    from featurelake.lakehouse.silver import load_table_specs

    folder = settings.conf_path(settings.silver.tables_dir)
    if not folder.is_dir() or not any(folder.glob("*.yaml")):
        return {}
    return {
        f"silver/{name}": set(spec.output_columns)
        for name, spec in load_table_specs(folder).items()
    }


def _model_columns(settings: Settings) -> dict[str, set[str]]:
    from featurelake.ml.config import ClassificationConfig, load_model_config

    tables: dict[str, set[str]] = {}
    for file in sorted(settings.conf_path("models").glob("*.yaml")):
        config = load_model_config(file)
        key = config.features.key
        tables.setdefault(f"predictions/{config.name}", set()).update({key, *PREDICTION_COLUMNS})
        feature_columns = (
            config.feature_columns
            if isinstance(config, ClassificationConfig)
            else config.feature_columns
        )
        tables.setdefault(config.features.table, set()).update({key, *feature_columns})
        if isinstance(config, ClassificationConfig):
            tables.setdefault(config.labels.table, set()).update({config.labels.key, config.label})
    return tables


def declared_columns(settings: Settings) -> dict[str, set[str]]:
    """The columns of the silver and gold tables, from their declarations alone.

    Unlike :func:`build_catalog`, no model or monitoring declaration contributes, so a model
    configuration can be checked against it.
    """
    return {**_silver_columns(settings), **_gold_columns(settings)}


def build_catalog(
    settings: Settings,
    views: Mapping[str, FeatureView],
    config: MonitoringConfig | None = None,
) -> dict[str, set[str]]:
    """Every table the declarations in ``conf/`` know, with its known columns.

    Args:
        settings: the validated settings (for the configuration directory).
        views: the declared feature views.
        config: the monitoring configuration: its ``features/<name>`` training sets declared
            by feature references are added.

    Returns:
        ``<layer>/<table>`` -> column names.

    Raises:
        ConfigError: a declaration read on the way is invalid.
    """
    catalog: dict[str, set[str]] = {}
    for part in (_gold_columns(settings), _silver_columns(settings), _model_columns(settings)):
        for table, columns in part.items():
            catalog.setdefault(table, set()).update(columns)
    for view in views.values():
        catalog.setdefault(str(view.source), set()).update(view.source_columns())
    for declared in config.tables if config else ():
        if declared.table.startswith("features/") and declared.features:
            try:
                resolved = resolve_feature_refs(declared.features, views)
            except (FeatureViewError, ValueError):
                continue  # reported by check_monitoring_config
            columns = catalog.setdefault(declared.table, set())
            for view_name, names in resolved.items():
                columns.update(views[view_name].join_keys)
                columns.update(names)
                columns.update(f"{view_name}__{n}" for n in names)
    return catalog


def monitored_columns(table: TableMonitorConfig, views: Mapping[str, FeatureView]) -> list[str]:
    """The columns a table declaration profiles: ``columns`` then the referenced features.

    Raises:
        UnknownFeatureError, FeatureViewError: a reference names no declared feature.
    """
    chosen = list(dict.fromkeys(table.columns))
    if table.features:
        for names in resolve_feature_refs(table.features, views).values():
            chosen.extend(n for n in names if n not in chosen)
    return chosen


def _check_table(
    index: int,
    table: TableMonitorConfig,
    catalog: Mapping[str, set[str]],
    views: Mapping[str, FeatureView],
    models: Mapping[str, str],
) -> list[tuple[str, str]]:
    """Problems of one table declaration as (key, problem)."""
    key = f"tables[{index}]"
    known = catalog.get(table.table)
    if known is None:
        return [(f"{key}.table", f"unknown table {table.table!r}; known: {sorted(catalog)}")]
    problems: list[tuple[str, str]] = []
    for position, column in enumerate(table.columns):
        if column not in known:
            problems.append(
                (f"{key}.columns[{position}]", f"{table.table} has no column {column!r}")
            )
    try:
        resolved = resolve_feature_refs(table.features, views) if table.features else {}
    except (FeatureViewError, ValueError) as exc:
        return [*problems, (f"{key}.features", str(exc))]
    for view_name in resolved:
        source = str(views[view_name].source)
        if source != table.table and not table.table.startswith("features/"):
            problems.append(
                (f"{key}.features", f"view {view_name!r} reads {source}, not {table.table}")
            )
    try:
        chosen = set(monitored_columns(table, views))
    except (FeatureViewError, ValueError) as exc:  # pragma: no cover - resolved above
        return [*problems, (f"{key}.features", str(exc))]
    for position, column in enumerate(table.categorical):
        if column not in chosen:
            problems.append(
                (f"{key}.categorical[{position}]", f"{column!r} is not a monitored column")
            )
    for position, column in enumerate(table.slices):
        if column not in known:
            problems.append(
                (f"{key}.slices[{position}]", f"{table.table} has no column {column!r}")
            )
    if table.window is not None:
        for field in ("column", "by"):
            column = getattr(table.window, field)
            if column is not None and column not in known:
                problems.append(
                    (f"{key}.window.{field}", f"{table.table} has no column {column!r}")
                )
    reference = table.reference
    if reference is not None and reference.kind == "champion":
        if reference.model is None:
            trained_here = sorted(n for n, t in models.items() if t == table.table)
            if len(trained_here) != 1:
                problems.append(
                    (
                        f"{key}.reference.model",
                        f"name the model whose champion is the reference (models training "
                        f"on {table.table}: {trained_here or 'none'})",
                    )
                )
        elif reference.model not in models:
            problems.append(
                (
                    f"{key}.reference.model",
                    f"unknown model {reference.model!r}; models: {sorted(models)}",
                )
            )
    if reference is not None and reference.kind == "window" and table.window is None:
        problems.append((f"{key}.reference", "a window reference needs the table's 'window'"))
    return problems


def _declared_models(settings: Settings) -> dict[str, tuple[str, str]]:
    """Model name -> (kind, feature table) of every conf/models declaration."""
    from featurelake.ml.config import load_model_config

    found: dict[str, tuple[str, str]] = {}
    for file in sorted(settings.conf_path("models").glob("*.yaml")):
        config = load_model_config(file)
        found[config.name] = (str(config.kind), config.features.table)
    return found


def _declared_sources(settings: Settings) -> list[str]:
    from featurelake.lakehouse.sources import SOURCES_DIR, load_sources

    folder = settings.conf_path(SOURCES_DIR)
    if not folder.is_dir() or not any(folder.glob("*.yaml")):
        return []
    return sorted(load_sources(settings))


def _other_problems(
    config: MonitoringConfig,
    catalog: Mapping[str, set[str]],
    views: Mapping[str, FeatureView],
    models: Mapping[str, tuple[str, str]],
    sources: Sequence[str],
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for name in config.drift.features:
        table, sep, column = name.rpartition(":")
        if sep and table not in catalog:
            problems.append((f"drift.features.{name}", f"unknown table {table!r}"))
        elif sep and column not in catalog[table]:
            problems.append((f"drift.features.{name}", f"{table} has no column {column!r}"))
        elif not sep and not any(name in columns for columns in catalog.values()):
            problems.append((f"drift.features.{name}", f"no known table has a column {name!r}"))
    for position, view in enumerate(config.online.views):
        if view not in views:
            problems.append(
                (
                    f"online.views[{position}]",
                    f"unknown feature view {view!r}; views: {sorted(views)}",
                )
            )
    for source in config.freshness.sources:
        if source not in sources:
            problems.append(
                (
                    f"freshness.sources.{source}",
                    f"unknown source {source!r}; sources: {list(sources)}",
                )
            )
    for model, watched in config.models.items():
        if models.get(model, ("", ""))[0] != "classification":
            classifiers = sorted(n for n, (k, _) in models.items() if k == "classification")
            problems.append(
                (
                    f"models.{model}",
                    f"unknown classification model {model!r}; declared: {classifiers}",
                )
            )
            continue
        labels = watched.labels
        if labels is not None and labels.table is not None:
            columns = catalog.get(labels.table)
            if columns is None:
                problems.append((f"models.{model}.labels.table", f"unknown table {labels.table!r}"))
                continue
            for field in ("key", "label"):
                column = getattr(labels, field)
                if column is not None and column not in columns:
                    problems.append(
                        (
                            f"models.{model}.labels.{field}",
                            f"{labels.table} has no column {column!r}",
                        )
                    )
    return problems


def check_monitoring_config(
    settings: Settings, config: MonitoringConfig, views: Mapping[str, FeatureView]
) -> None:
    """Check every name ``monitoring.yaml`` uses against the other declarations.

    Raises:
        ConfigError: naming ``conf/monitoring.yaml`` and the key of the first problem, with
            one line per problem when there are several.
    """
    file = str(monitoring_file(settings))
    catalog = build_catalog(settings, views, config)
    models = _declared_models(settings)
    trained_on = {name: table for name, (_kind, table) in models.items()}
    problems: list[tuple[str, str]] = []
    for index, table in config.indexed_tables():
        problems.extend(_check_table(index, table, catalog, views, trained_on))
    problems.extend(_other_problems(config, catalog, views, models, _declared_sources(settings)))
    if not problems:
        return
    (key, problem), rest = problems[0], problems[1:]
    raise ConfigError(file, key, problem + "".join(f"\n  {file}: {k}: {p}" for k, p in rest))
