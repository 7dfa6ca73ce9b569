"""PII handling: keyed pseudonymisation (HMAC-SHA256) or removal of declared columns.

The key comes from an environment variable named in the configuration
(``silver.pii_key_env``, ``FEATURELAKE_PII_KEY`` by default) and is never written anywhere.
The same value under the same key always gives the same hex digest, so pseudonymised columns
still join and count; without the key a digest cannot be reversed or recomputed.

HMAC is built from Spark's native ``sha2`` (RFC 2104: ``H((K^opad) || H((K^ipad) || m))``)
rather than a Python UDF, so it runs in the JVM at full speed. The padded key therefore appears
as a binary literal in the query plan; keep Spark UIs and plan logs of PII jobs private.

Example:
    >>> key = load_pii_key("FEATURELAKE_PII_KEY")
    >>> df.transform(with_pseudonymised_columns, [PiiColumn(column="email", action="hash")], key)
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from featurelake.core.errors import UserError
from featurelake.lakehouse.cleaning import quoted

log = logging.getLogger(__name__)

__all__ = [
    "PiiColumn",
    "PiiKeyError",
    "hmac_sha256_hex",
    "load_pii_key",
    "with_pseudonymised_columns",
]

_BLOCK = 64  # SHA-256 block size in bytes


class PiiKeyError(UserError):
    """The pseudonymisation key is missing or empty."""


class PiiColumn(BaseModel):
    """A column holding personal data and what silver does with it.

    Args:
        column: the column name (after cleaning/typing).
        action: ``hash`` (keyed HMAC-SHA256, hex) or ``drop``.
        output: the name of the hashed column (default ``<column>_hash``); the raw column is
            always removed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    action: Literal["hash", "drop"]
    output: str | None = None

    @property
    def output_name(self) -> str:
        """The hashed column's name."""
        return self.output or f"{self.column}_hash"


def load_pii_key(env_var: str, key_file: str | None = None) -> bytes:
    """Read the pseudonymisation key from the environment variable ``env_var``.

    When the variable is unset and ``key_file`` is configured (the local demo does), the key is
    read from that file, which is created on first use with 32 random bytes and mode 0600, so a
    laptop run needs no set-up while the key still never sits in the repository.

    Args:
        env_var: the variable's name (from configuration).
        key_file: optional fallback file (``silver.pii_key_file``).

    Returns:
        The key as bytes.

    Raises:
        PiiKeyError: the variable is unset or empty and no key file is configured (the message
            names the variable).
    """
    value = os.environ.get(env_var)
    if value:
        return value.encode("utf-8")
    if key_file:
        path = Path(key_file)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
            log.warning("pii_key_file_created", extra={"fields": {"path": str(path)}})
        return path.read_text(encoding="utf-8").strip().encode("utf-8")
    state = "is empty" if value == "" else "is not set"
    raise PiiKeyError(
        f"environment variable {env_var} {state}: it must hold the secret key used to "
        f"pseudonymise PII columns (HMAC-SHA256); set it, e.g. export {env_var}=<secret>, "
        "or change silver.pii_key_env"
    )


def hmac_sha256_hex(col: Column, key: bytes) -> Column:
    """HMAC-SHA256 of a string column's UTF-8 bytes under ``key``, as lowercase hex.

    Equal to ``hmac.new(key, value.encode(), hashlib.sha256).hexdigest()``; null stays null.

    Args:
        col: a string column.
        key: the secret key.

    Raises:
        PiiKeyError: ``key`` is empty.
    """
    if not key:
        raise PiiKeyError("the PII key is empty")
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\x00")
    inner_key = bytes(b ^ 0x36 for b in key)
    outer_key = bytes(b ^ 0x5C for b in key)
    message = F.encode(col.cast("string"), "UTF-8")
    inner = F.unhex(F.sha2(F.concat(F.lit(bytearray(inner_key)), message), 256))
    return F.sha2(F.concat(F.lit(bytearray(outer_key)), inner), 256)


def with_pseudonymised_columns(
    df: DataFrame, columns: Sequence[PiiColumn], key: bytes | None
) -> DataFrame:
    """Replace each ``hash`` column by ``<output>`` (its HMAC hex) and remove ``drop`` columns.

    Args:
        df: rows with the raw PII columns.
        columns: the PII declarations.
        key: the secret key; needed only when a column is hashed.

    Returns:
        ``df`` without any raw PII column.

    Raises:
        PiiKeyError: a column is to be hashed and ``key`` is None or empty.
        ValueError: a declared column is not in ``df``.
    """
    absent = [c.column for c in columns if c.column not in df.columns]
    if absent:
        raise ValueError(f"PII columns {absent} are not in the data (columns: {df.columns})")
    out = df
    for spec in columns:
        if spec.action == "hash":
            if not key:
                raise PiiKeyError(
                    f"column {spec.column!r} is declared PII (hash) but no key was given"
                )
            out = out.withColumn(spec.output_name, hmac_sha256_hex(quoted(spec.column), key))
    return out.drop(*[c.column for c in columns])
