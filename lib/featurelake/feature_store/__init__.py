"""Feature store: feature view declarations, registry, point-in-time training sets.

Declarations live in ``conf/features/*.yaml`` (:mod:`.definitions`); the registry records
them in a Delta table (:mod:`.registry`); :mod:`.offline` builds point-in-time-correct
training sets; :mod:`.labels` builds churn labels; :mod:`.api` is the notebook facade.
Submodules that need Spark are imported on use, so importing the definitions stays light.
"""

from featurelake.feature_store.definitions import (
    FEATURE_DTYPES,
    Feature,
    FeatureRef,
    FeatureView,
    FeatureViewError,
    SourceTable,
    UnknownFeatureError,
    definition_hash,
    load_feature_views,
    load_feature_views_from,
    parse_duration,
    parse_feature_ref,
    resolve_feature_refs,
)

__all__ = [
    "FEATURE_DTYPES",
    "Feature",
    "FeatureRef",
    "FeatureView",
    "FeatureViewError",
    "SourceTable",
    "UnknownFeatureError",
    "definition_hash",
    "load_feature_views",
    "load_feature_views_from",
    "parse_duration",
    "parse_feature_ref",
    "resolve_feature_refs",
]
