"""A silver table and its quarantine, read as the pair one silver run published."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pyspark.sql import DataFrame

from featurelake.core.errors import DataError
from featurelake.delta import DeltaTables


class SilverPairError(DataError):
    """A silver table and its quarantine were not built by the same run."""


# Commit metadata written on both tables of a pair (featurelake.<key> in the commit info).
_PAIR_RUN = "silver_run"


_PAIR_BRONZE = "bronze_version"


@dataclass(frozen=True)
class SilverPair:
    """A silver table and its quarantine as built by one silver run.

    Attributes:
        silver: the silver rows.
        quarantine: the quarantined rows of the same run.
        silver_version: the silver table version read.
        quarantine_version: the quarantine version of the same run.
        run_id: the silver run that built both (None for tables written before pairs were
            recorded: then both are the latest versions, unchecked).
        bronze_version: the bronze version both were built from (None as ``run_id``).
    """

    silver: DataFrame
    quarantine: DataFrame
    silver_version: int
    quarantine_version: int
    run_id: str | None
    bronze_version: int | None


def _pair_of(entry: Mapping[str, Any]) -> tuple[str | None, int | None]:
    run = entry.get(f"featurelake.{_PAIR_RUN}")
    bronze = entry.get(f"featurelake.{_PAIR_BRONZE}")
    return run, (int(bronze) if bronze not in (None, "") else None)


def _latest_pair_commit(tables: DeltaTables, path: str) -> tuple[int, str | None, int | None]:
    latest = tables.history(path, limit=1)[0]
    return int(latest["version"]), *_pair_of(latest)


def read_silver(tables: DeltaTables, silver_path: str, quarantine_path: str) -> DataFrame:
    """Read a silver table after checking that a quarantine of the same run exists.

    Args:
        tables: the job's table I/O (the version read is recorded in its lineage).
        silver_path: the silver table.
        quarantine_path: its quarantine table.

    Returns:
        The silver rows, at the version whose pair was checked.

    Raises:
        SilverPairError: silver was published by a run whose quarantine is not in the
            quarantine's history (a writer other than the silver job replaced one of them).
        TableNotFoundError: silver does not exist.
    """
    version, run, bronze = _latest_pair_commit(tables, silver_path)
    if run is not None:
        _quarantine_version_of(tables, silver_path, quarantine_path, run, bronze)
    return tables.read(silver_path, version=version)


def read_silver_pair(
    tables: DeltaTables, silver_path: str, quarantine_path: str, *, record: bool = True
) -> SilverPair:
    """The latest silver table and the quarantine version built by the same run.

    Silver is committed last: after a silver run died between the two commits, the latest
    quarantine belongs to that unfinished run, and this returns the quarantine version that
    goes with the published silver instead - so bronze rows = silver + quarantine +
    duplicates always holds for what it returns.

    Raises:
        SilverPairError: no quarantine version of silver's run exists.
        TableNotFoundError: a table does not exist.
    """
    version, run, bronze = _latest_pair_commit(tables, silver_path)
    if run is None:
        quarantine_version = tables.version(quarantine_path)
    else:
        quarantine_version = _quarantine_version_of(
            tables, silver_path, quarantine_path, run, bronze
        )
    return SilverPair(
        silver=tables.read(silver_path, version=version, record=record),
        quarantine=tables.read(quarantine_path, version=quarantine_version, record=record),
        silver_version=version,
        quarantine_version=quarantine_version,
        run_id=run,
        bronze_version=bronze,
    )


def _quarantine_version_of(
    tables: DeltaTables, silver_path: str, quarantine_path: str, run: str, bronze: int | None
) -> int:
    for entry in tables.history(quarantine_path):
        if _pair_of(entry)[0] == run:
            return int(entry["version"])
    latest_run, latest_bronze = _pair_of(tables.history(quarantine_path, limit=1)[0])
    raise SilverPairError(
        f"{silver_path} (built by silver run {run} from bronze version {bronze}) and "
        f"{quarantine_path} (latest built by run {latest_run} from bronze version "
        f"{latest_bronze}) are out of step: no quarantine version of run {run}; "
        "run the silver job again"
    )
