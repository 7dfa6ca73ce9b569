"""The serving configuration (``conf/serving.yaml``): the online store, the server, access,
the models ``POST /predict`` serves and where their predictions are logged."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from featurelake.core.config import Settings, load_yaml_file, parse_model
from featurelake.feature_store.auth import AccessConfig


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OnlineStoreConfig(_Frozen):
    """Where the online store lives.

    Args:
        type: ``sqlite`` (default) or ``redis``.
        sqlite_path: the SQLite file (created with its folder when absent); a relative path is
            under ``lakehouse.root``.
        redis_url: ``redis://host:port/db`` of the Redis server.
        key_prefix: prefix of every Redis key, so several deployments can share a server.
        write_batch_size: rows per write call (one SQLite transaction or one Lua script call).
    """

    type: Literal["sqlite", "redis"] = "sqlite"
    sqlite_path: str = "online/features.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "featurelake"
    write_batch_size: int = Field(default=1000, ge=1, le=100_000)


class ServerConfig(_Frozen):
    """The serving API's process settings.

    Args:
        host: interface to bind.
        port: TCP port.
        workers: uvicorn worker processes.
        audit_log: JSON-lines file every request is appended to; a relative path is under
            ``lakehouse.root``.
        max_entities: most entities one request may ask for.
        max_features: most feature references one request may name.
        max_body_bytes: largest request body accepted (HTTP 413 beyond it); counted while the
            body is read, so a chunked body without ``Content-Length`` is bounded too.
        retry_after_seconds: the ``Retry-After`` of a 503 answered while the online store
            cannot be reached.
        api_key_header: the header carrying the API key.
        expose_docs: serve the interactive docs and schema (``/docs``, ``/redoc``,
            ``/openapi.json``) to anyone who can reach the server.
    """

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    audit_log: str = "ops/serving_audit.jsonl"
    max_entities: int = Field(default=1000, ge=1)
    max_features: int = Field(default=200, ge=1)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    retry_after_seconds: int = Field(default=5, ge=1, le=3600)
    api_key_header: str = "X-API-Key"
    expose_docs: bool = False


class TrafficConfig(_Frozen):
    """How requests are shared between a model's ``champion`` and ``challenger``.

    Args:
        mode: ``split`` - each entity is answered by the arm its key hashes to (by
            ``weights``); ``shadow`` - the champion answers every entity and the challenger is
            scored on the same features and logged, never returned; ``champion`` - the
            challenger is not used.
        weights: the arms' shares in ``split`` mode (normalised; ``{champion: 90,
            challenger: 10}`` sends 10% of the entities to the challenger).
        salt: mixed into the hash, so a new salt reshuffles which entities go where.
    """

    mode: Literal["split", "shadow", "champion"] = "champion"
    weights: dict[Literal["champion", "challenger"], float] = Field(
        default_factory=lambda: {"champion": 100.0, "challenger": 0.0}  # type: ignore[arg-type]
    )
    salt: str = ""

    @model_validator(mode="after")
    def _weights(self) -> TrafficConfig:
        if any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return self

    @property
    def challenger_share(self) -> float:
        """The challenger's share of entities in ``split`` mode, in [0, 1]."""
        total = sum(self.weights.values())
        return self.weights.get("challenger", 0.0) / total


class ModelServingConfig(_Frozen):
    """A registered MLflow model served by ``POST /predict``.

    Args:
        features: the feature references its inputs are read from (``view:feature`` or
            ``view:*``); each model input column is the feature of the same name.
        traffic: champion/challenger routing.
        reload_seconds: how often the aliases are looked up again, so a promotion is picked up
            without a restart (a new version is loaded once, then served from memory).
    """

    features: list[str] = Field(min_length=1)
    traffic: TrafficConfig = Field(default_factory=TrafficConfig)
    reload_seconds: float = Field(default=60.0, ge=0.0)


class PredictionLogConfig(_Frozen):
    """Where ``POST /predict`` logs every prediction (a Delta table, appended in batches by a
    background thread, off the request path).

    Args:
        table: the Delta table; a relative path is under ``lakehouse.root``.
        flush_rows: a batch is written once this many predictions wait.
        flush_seconds: and at least this often while any wait.
        max_pending: predictions held in memory at most (when the table cannot be written);
            beyond it the oldest are dropped and counted in the metrics.
    """

    table: str = "ops/prediction_log"
    flush_rows: int = Field(default=1000, ge=1)
    flush_seconds: float = Field(default=2.0, gt=0.0)
    max_pending: int = Field(default=1_000_000, ge=1)


class ServingConfig(_Frozen):
    """Everything in ``conf/serving.yaml``: the store, the server, roles and API keys, the
    models served and the prediction log."""

    online_store: OnlineStoreConfig = Field(default_factory=OnlineStoreConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    models: dict[str, ModelServingConfig] = Field(default_factory=dict)
    prediction_log: PredictionLogConfig = Field(default_factory=PredictionLogConfig)


def load_serving_config(settings: Settings, path: str | Path | None = None) -> ServingConfig:
    """Load and validate ``<conf_dir>/serving.yaml`` (``${VAR:-default}`` interpolated).

    Relative ``online_store.sqlite_path`` and ``server.audit_log`` are resolved under
    ``settings.lakehouse.root``, so ``--conf lakehouse.root=...`` moves them with the tables.

    Args:
        settings: the validated settings (for the configuration directory).
        path: read this file instead.

    Returns:
        The :class:`ServingConfig`.

    Raises:
        ConfigError: the file is missing or invalid; the message names the file and key.
    """
    file = Path(path) if path is not None else settings.conf_path("serving.yaml")
    config = parse_model(ServingConfig, load_yaml_file(file), str(file))
    root = settings.lakehouse.root
    store = config.online_store.model_copy(
        update={"sqlite_path": os.path.join(root, config.online_store.sqlite_path)}
    )
    server = config.server.model_copy(
        update={"audit_log": os.path.join(root, config.server.audit_log)}
    )
    prediction_log = config.prediction_log.model_copy(
        update={"table": os.path.join(root, config.prediction_log.table)}
    )
    return config.model_copy(
        update={"online_store": store, "server": server, "prediction_log": prediction_log}
    )
