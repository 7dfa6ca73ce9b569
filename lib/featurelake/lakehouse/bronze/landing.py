"""The landing folder's inventory: which files a source has, which are new or changed
against the ingest ledger, and whether each can be read to its end (plain Python).
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

from featurelake.core.errors import DataError
from featurelake.lakehouse.sources import SourceSpec

log = logging.getLogger(__name__)


_HASH_CHUNK = 1 << 20


FileStatus = Literal["ingested", "reingested", "skipped", "failed"]


class ChangedFileError(DataError):
    """A file already ingested changed under the same name and the source says ``fail``."""


@dataclass(frozen=True)
class LandedFile:
    """A file in the landing folder.

    Attributes:
        path: absolute local path.
        size: size in bytes.
        modified_at: modification time (UTC).
        sha256: hex checksum of the content, when computed.
    """

    path: str
    size: int
    modified_at: datetime
    sha256: str | None = None


@dataclass(frozen=True)
class IngestPlan:
    """What one bronze run does with the files of one source.

    Attributes:
        source: the source name.
        new: files never seen before (ingest).
        changed: files that changed under the same name and will be ingested again.
        skipped: changed files left alone (``on_changed_file: skip``).
        unchanged: files already ingested with the same content.
    """

    source: str
    new: tuple[LandedFile, ...] = ()
    changed: tuple[LandedFile, ...] = ()
    skipped: tuple[LandedFile, ...] = ()
    unchanged: tuple[LandedFile, ...] = ()
    statuses: Mapping[str, FileStatus] = field(default_factory=dict)

    @property
    def to_ingest(self) -> tuple[LandedFile, ...]:
        """New and changed files, in path order."""
        return tuple(sorted(self.new + self.changed, key=lambda f: f.path))


def list_landed_files(spec: SourceSpec, landing: str) -> list[LandedFile]:
    """Files matching the source's glob, sorted by path (no checksums yet).

    Args:
        spec: the source declaration.
        landing: ``lakehouse.landing``, against which relative globs are resolved.

    Returns:
        The matching regular files. Names starting with ``.`` or ``_`` (temporary or marker
        files of writers still at work) are ignored. Empty for a source that is not read from
        files (``jdbc``, ``http_json``).
    """
    if not spec.is_file_source:
        return []
    pattern = spec.resolve_glob(landing)
    found = []
    for path in sorted(glob.glob(pattern)):
        name = os.path.basename(path)
        if not os.path.isfile(path) or name.startswith((".", "_")):
            continue
        stat = os.stat(path)
        found.append(
            LandedFile(
                path=os.path.abspath(path),
                size=stat.st_size,
                modified_at=datetime.fromtimestamp(stat.st_mtime, timezone.utc),
            )
        )
    return found


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def plan_ingest(
    spec: SourceSpec,
    files: Iterable[LandedFile],
    ledger: Iterable[Mapping[str, Any]],
    hasher: Callable[[str], str] = file_sha256,
) -> IngestPlan:
    """Decide which landed files to ingest, comparing them with the ingest ledger.

    A file whose path is not in the ledger (or only as ``failed``) is new. A file whose size
    and modification time
    equal its latest ledger entry is unchanged without reading it; otherwise its checksum
    decides, and a different checksum means it changed under the same name and is handled as
    ``spec.on_changed_file`` says.

    Args:
        spec: the source declaration.
        files: the files found (:func:`list_landed_files`).
        ledger: rows of ``bronze/_ingested_files`` for this source (path, size, modified_at,
            sha256, ingested_at).
        hasher: computes a file's checksum.

    Returns:
        The plan; every file returned carries its checksum when it was computed.

    Raises:
        ChangedFileError: a file changed and the source's policy is ``fail``; names the file.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for row in ledger:
        if row.get("status") == "failed":  # never ingested: the file is still new
            continue
        known = latest.get(row["path"])
        if known is None or _ledger_order(row) > _ledger_order(known):
            latest[row["path"]] = row
    new, changed, skipped, unchanged = [], [], [], []
    statuses: dict[str, FileStatus] = {}
    for landed in files:
        known = latest.get(landed.path)
        if known is None:
            new.append(_with_checksum(landed, hasher))
            statuses[landed.path] = "ingested"
            continue
        if known["size"] == landed.size and _same_time(known["modified_at"], landed.modified_at):
            unchanged.append(landed)
            continue
        hashed = _with_checksum(landed, hasher)
        if hashed.sha256 == known["sha256"]:
            unchanged.append(hashed)
            continue
        policy = spec.on_changed_file
        log.warning(
            "changed_file",
            extra={
                "fields": {
                    "source": spec.name,
                    "path": landed.path,
                    "policy": policy,
                    "old_sha256": known["sha256"],
                    "new_sha256": hashed.sha256,
                }
            },
        )
        if policy == "fail":
            raise ChangedFileError(
                f"source {spec.name}: file {landed.path} changed since it was ingested in batch "
                f"{known.get('batch_id')} (sha256 {known['sha256']} -> {hashed.sha256}); "
                "on_changed_file is 'fail'. Land the new content under a new name, or set "
                f"on_changed_file to 'reingest' or 'skip' in conf/sources/{spec.name}.yaml"
            )
        if policy == "reingest":
            changed.append(hashed)
            statuses[landed.path] = "reingested"
        else:
            skipped.append(hashed)
            statuses[landed.path] = "skipped"
    return IngestPlan(
        spec.name, tuple(new), tuple(changed), tuple(skipped), tuple(unchanged), statuses
    )


def _ledger_order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    ingested = row.get("ingested_at")
    return (_as_utc(ingested) if ingested else datetime.min.replace(tzinfo=timezone.utc),)


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _same_time(a: datetime | None, b: datetime) -> bool:
    # The ledger stores microseconds; compare at that precision.
    return a is not None and abs((_as_utc(a) - _as_utc(b)).total_seconds()) < 1e-6


def _with_checksum(landed: LandedFile, hasher: Callable[[str], str]) -> LandedFile:
    return LandedFile(landed.path, landed.size, landed.modified_at, hasher(landed.path))


# Compressed formats Python reads itself; Spark picks the codec by the same extensions.
_DECOMPRESSORS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open}


def unreadable_reason(path: str, file_format: str = "csv") -> str | None:
    """Why Spark could not read ``path`` to its end, or None when it can.

    Spark reads a batch's files in one job: one truncated archive would fail the whole batch
    with a stack trace that names no file. A gzip or bzip2 file is decompressed here to its
    end (a truncated archive, or a ``.gz`` that is not gzip, is found); a Parquet file must
    have a readable footer; any file must open.

    Args:
        path: a local file.
        file_format: the source's format (``parquet`` files are checked by their footer).

    Returns:
        A one-line reason naming the problem (not the path; the caller names it), or None.
    """
    suffix = os.path.splitext(path)[1].lower()
    try:
        if file_format == "parquet":
            import pyarrow.parquet as pq

            pq.ParquetFile(path)
            return None
        opener = _DECOMPRESSORS.get(suffix)
        if opener is None:
            with open(path, "rb") as handle:
                handle.read(1)
            return None
        with opener(path, "rb") as handle:
            while handle.read(_HASH_CHUNK * 4):
                pass
    except EOFError as exc:
        return f"truncated {suffix[1:]} archive ({exc})"
    except gzip.BadGzipFile as exc:
        return f"not a gzip file ({exc})"
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if suffix in _DECOMPRESSORS:
            return f"not a readable {suffix[1:]} archive ({reason})"
        return reason
    except Exception as exc:  # noqa: BLE001 - zlib/bz2/pyarrow errors: the file is unreadable
        return f"{type(exc).__name__}: {exc}"
    return None
