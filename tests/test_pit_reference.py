"""Independent check at scale: as_of_join equals pandas merge_asof, row for row.

Synthetic data: 2,000 entities x 90 daily feature rows (30% of days missing, so the TTL
matters; some values null), 10,000 entity rows at random times, many exactly on an event time
or exactly one TTL after one, plus unknown entities and duplicates.

merge_asof's ``tolerance`` is inclusive (``t - event <= tolerance``) while our TTL lower bound
is exclusive (``t - event < ttl``); with microsecond timestamps these agree when the reference
uses ``tolerance = ttl - 1 microsecond``.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from featurelake.feature_store.offline import as_of_join

ENTITIES = 2_000
DAYS = 90
ENTITY_ROWS = 10_000
TTL = timedelta(days=3)
START = pd.Timestamp("2024-01-01", tz="UTC")


def synthetic(seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(ENTITIES), DAYS)
    days = np.tile(np.arange(DAYS), ENTITIES)
    keep = rng.random(ids.size) > 0.3
    feats = pd.DataFrame(
        {
            "entity_id": ids[keep].astype("int64"),
            "event_ts": START + pd.to_timedelta(days[keep], unit="D"),
            "f1": rng.normal(size=keep.sum()),
            "f2": rng.integers(0, 1000, size=keep.sum()).astype("int64"),
            "f3": rng.random(keep.sum()),
        }
    )
    feats.loc[rng.random(len(feats)) < 0.05, "f1"] = np.nan
    n = ENTITY_ROWS
    entity_id = rng.integers(0, ENTITIES + 50, size=n)  # ids >= ENTITIES are unknown
    whole_days = rng.integers(-2, DAYS + 5, size=n)
    offset = pd.to_timedelta(rng.integers(0, 86_400_000_000, size=n), unit="us")
    kind = rng.random(n)
    offset = offset.where(kind > 0.2, pd.Timedelta(0))  # exactly on an event time
    offset = offset.where((kind <= 0.2) | (kind > 0.3), pd.Timedelta(TTL))  # exactly ttl later
    ents = pd.DataFrame(
        {
            "row": np.arange(n, dtype="int64"),
            "entity_id": entity_id.astype("int64"),
            "ts": START + pd.to_timedelta(whole_days, unit="D") + offset,
        }
    )
    ents = pd.concat([ents, ents.iloc[:200].assign(row=np.arange(n, n + 200))], ignore_index=True)
    return ents, feats


def reference(ents: pd.DataFrame, feats: pd.DataFrame) -> pd.DataFrame:
    merged = pd.merge_asof(
        ents.sort_values("ts"),
        feats.sort_values("event_ts"),
        left_on="ts",
        right_on="event_ts",
        by="entity_id",
        direction="backward",
        allow_exact_matches=True,
        tolerance=pd.Timedelta(TTL) - pd.Timedelta(microseconds=1),
    )
    return merged.sort_values("row").reset_index(drop=True)


@pytest.fixture(scope="module")
def frames(spark, tmp_path_factory):
    ents, feats = synthetic()
    folder = tmp_path_factory.mktemp("pit_reference")
    ents.to_parquet(folder / "entities.parquet", index=False, coerce_timestamps="us")
    feats.to_parquet(folder / "features.parquet", index=False, coerce_timestamps="us")
    return (
        ents,
        feats,
        spark.read.parquet(str(folder / "entities.parquet")),
        spark.read.parquet(str(folder / "features.parquet")),
    )


@pytest.mark.parametrize("method", ["sort_merge", "range_join"])
def test_as_of_join_equals_merge_asof_row_for_row(frames, method):
    ents, feats, entity_df, feature_df = frames
    result = (
        as_of_join(
            entity_df,
            feature_df,
            join_keys=["entity_id"],
            entity_timestamp_column="ts",
            event_timestamp_column="event_ts",
            feature_columns=["f1", "f2", "f3"],
            ttl=TTL,
            event_timestamp_output="matched_ts",
            method=method,
        )
        .toPandas()
        .sort_values("row")
        .reset_index(drop=True)
    )
    expected = reference(ents, feats)

    assert len(result) == len(ents) == len(expected)
    assert result["row"].tolist() == expected["row"].tolist()
    assert result["entity_id"].tolist() == expected["entity_id"].tolist()
    matched = pd.to_datetime(result["matched_ts"], utc=True)
    pd.testing.assert_series_equal(matched, expected["event_ts"], check_names=False)
    for column in ("f1", "f2", "f3"):
        pd.testing.assert_series_equal(
            result[column].astype("float64"),
            expected[column].astype("float64"),
            check_names=False,
        )
    # The data exercise what they should: exact matches, expiries at the boundary, misses.
    assert (expected["event_ts"] == expected["ts"]).sum() > 1_000
    assert expected["event_ts"].isna().sum() > 1_000
