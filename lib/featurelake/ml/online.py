"""Online inference: registered models in memory, champion/challenger routing, predictions.

:class:`OnlineModels` loads the portable (numpy) form of a registered model's ``champion`` and
``challenger`` once per version, and looks the aliases up again every ``reload_seconds`` so a
promotion is served without a restart. :func:`arm_for` routes an entity by a stable hash of its
key: the same key always gets the same arm, in every process and on every machine.

No Spark and no JVM: the models are the JSON specification the training run stored beside the
Spark model (:mod:`featurelake.ml.portable`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from featurelake.core.errors import TransientError, UserError

if TYPE_CHECKING:
    from featurelake.ml.portable.evaluate import PortablePipeline

__all__ = [
    "Arm",
    "LoadedModel",
    "ModelUnavailableError",
    "OnlineModels",
    "OnlinePredictor",
    "Prediction",
    "PredictionResult",
    "arm_for",
    "input_refs",
    "prediction_log_rows",
]

log = logging.getLogger(__name__)

Arm = Literal["champion", "challenger"]
_HASH_SPACE = float(1 << 64)


class ModelUnavailableError(TransientError):
    """A served model has no champion yet, or its version cannot be loaded (HTTP 503)."""


def arm_for(entity_key: str, challenger_share: float, salt: str = "") -> Arm:
    """The arm an entity is routed to in ``split`` mode.

    The key's BLAKE2b hash (not Python's per-process ``hash``) mapped to [0, 1); below
    ``challenger_share`` is the challenger.

    Args:
        entity_key: the entity's canonical key (``encode_entity_key``).
        challenger_share: the challenger's share, in [0, 1].
        salt: mixed into the hash.

    Example:
        >>> arm_for('["17850"]', 0.1)
        'champion'
    """
    digest = hashlib.blake2b(f"{salt}\x00{entity_key}".encode(), digest_size=8).digest()
    return (
        "challenger"
        if int.from_bytes(digest, "big") / _HASH_SPACE < challenger_share
        else "champion"
    )


@dataclass(frozen=True)
class LoadedModel:
    """One model version in memory.

    Attributes:
        name: the registered model name.
        version: its version.
        pipeline: the portable pipeline.
    """

    name: str
    version: str
    pipeline: PortablePipeline

    @property
    def input_columns(self) -> list[str]:
        return self.pipeline.input_columns


def _load_portable(client: Any, name: str, version: str) -> LoadedModel:
    import mlflow.artifacts

    from featurelake.ml.portable.evaluate import PortablePipeline
    from featurelake.ml.portable.pyfunc import PORTABLE_FILE

    uri = f"models:/{name}/{version}"
    try:
        # The version's own artifacts, located through this client's stores: no process-wide
        # MLflow URI is needed (or changed).
        model_version = client.get_model_version(name, version)
        source = str(model_version.source)
        if source.startswith("models:/"):
            model_id = getattr(model_version, "model_id", None) or source[len("models:/") :]
            location = client.get_logged_model(model_id).artifact_location
            local = mlflow.artifacts.download_artifacts(artifact_uri=location)
        elif source.startswith("runs:/"):
            run_id, _, path = source[len("runs:/") :].partition("/")
            local = client.download_artifacts(run_id, path)
        else:
            local = mlflow.artifacts.download_artifacts(artifact_uri=source)
    except Exception as exc:  # noqa: BLE001 - any store error means the version cannot be served
        raise ModelUnavailableError(f"cannot download {uri}: {exc}") from exc
    spec_path = os.path.join(local, PORTABLE_FILE)
    if not os.path.isfile(spec_path):
        raise ModelUnavailableError(
            f"{uri} has no portable form ({PORTABLE_FILE}); retrain it with this featurelake "
            "so it can be served without Spark"
        )
    with open(spec_path, encoding="utf-8") as handle:
        return LoadedModel(name, version, PortablePipeline(json.load(handle)))


class OnlineModels:
    """The champion and challenger of each served model, loaded once per version.

    Args:
        client: an ``mlflow.MlflowClient`` (its tracking and registry URIs are used), or a
            function making one - called on first use, so a server starts without importing
            MLflow and loads its models in the background (:meth:`warm`).
        reload_seconds: per model name, how often the aliases are looked up again.
        loader: ``(client, name, version) -> LoadedModel`` (tests may count calls).
    """

    def __init__(
        self,
        client: Any,
        reload_seconds: Mapping[str, float],
        loader: Callable[[Any, str, str], LoadedModel] = _load_portable,
    ) -> None:
        self._client = client
        self.reload_seconds = dict(reload_seconds)
        self._loader = loader
        self._lock = threading.Lock()
        self._client_lock = threading.Lock()
        self._versions: dict[tuple[str, str], LoadedModel] = {}
        self._aliases: dict[tuple[str, Arm], str | None] = {}
        self._checked: dict[str, float] = {}

    @property
    def client(self) -> Any:
        if callable(self._client) and not hasattr(self._client, "get_model_version_by_alias"):
            with self._client_lock:  # not self._lock: _refresh holds it while using the client
                if not hasattr(self._client, "get_model_version_by_alias"):
                    self._client = self._client()
        return self._client

    def warm(self, names: Sequence[str]) -> None:
        """Load the champion and challenger of every model now (a server's start-up, in a
        background thread); a model that cannot be loaded yet is logged and tried again on
        its first request."""
        for name in names:
            try:
                self.get(name)
            except ModelUnavailableError as exc:
                log.warning(
                    "model_not_loaded", extra={"fields": {"model": name, "error": str(exc)}}
                )

    def _alias_version(self, name: str, alias: Arm) -> str | None:
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version_by_alias(name, alias).version)
        except MlflowException:
            return None

    def _refresh(self, name: str) -> None:
        now = time.monotonic()
        last = self._checked.get(name)
        if last is not None and now - last < self.reload_seconds.get(name, 60.0):
            return
        with self._lock:
            if self._checked.get(name) != last:  # another thread refreshed meanwhile
                return
            for alias in ("champion", "challenger"):
                version = self._alias_version(name, alias)
                if version is not None and (name, version) not in self._versions:
                    self._versions[(name, version)] = self._loader(self.client, name, version)
                    log.info(
                        "model_loaded",
                        extra={"fields": {"model": name, "alias": alias, "version": version}},
                    )
                self._aliases[(name, alias)] = version
            self._checked[name] = now

    def get(self, name: str) -> tuple[LoadedModel, LoadedModel | None]:
        """The champion and the challenger (None when there is none) of ``name``.

        Raises:
            ModelUnavailableError: no champion yet, or its version cannot be loaded.
        """
        try:
            self._refresh(name)
        except ModelUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - the registry did not answer
            raise ModelUnavailableError(f"model registry unavailable: {exc}") from exc
        champion = self._aliases.get((name, "champion"))
        if champion is None:
            raise ModelUnavailableError(
                f"model {name!r} has no champion yet: train and promote it first"
            )
        challenger = self._aliases.get((name, "challenger"))
        return (
            self._versions[(name, champion)],
            self._versions[(name, challenger)] if challenger is not None else None,
        )


def input_refs(
    inputs: Sequence[str], refs: Mapping[str, Sequence[str]], model: str
) -> dict[str, str]:
    """Each model input column -> the ``view:feature`` it is read from (same feature name).

    Args:
        inputs: the model's input columns.
        refs: the configured features, resolved (``{view: [features]}``).
        model: the model name, for messages.

    Raises:
        UserError: an input no configured view has, or one that two views have.
    """
    sources: dict[str, list[str]] = {}
    for view, names in refs.items():
        for name in names:
            sources.setdefault(name, []).append(f"{view}:{name}")
    missing = [c for c in inputs if c not in sources]
    ambiguous = {c: sources[c] for c in inputs if len(sources.get(c, [])) > 1}
    if missing or ambiguous:
        raise UserError(
            f"model {model!r}: "
            + (f"inputs {missing} are not among the configured features; " if missing else "")
            + (f"inputs found in several views {ambiguous}; " if ambiguous else "")
            + "list the views it reads in serving.yaml models.<name>.features"
        )
    return {c: sources[c][0] for c in inputs}


@dataclass(frozen=True)
class Prediction:
    """One entity's answer (and, in shadow mode, the challenger's unreturned one)."""

    entity: dict[str, Any]
    entity_key: str
    status: str
    arm: Arm
    model_version: str
    prediction: float | None
    probability: float | None
    shadow: tuple[str, float | None, float | None] | None  # (version, prediction, probability)

    def as_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "prediction": self.prediction,
            "probability": self.probability,
            "model_version": self.model_version,
            "arm": self.arm,
            "status": self.status,
        }


@dataclass(frozen=True)
class PredictionResult:
    """The answer to one ``/predict`` request and what it looked up."""

    model: str
    mode: str
    predictions: list[Prediction]
    features: list[dict[str, Any]]
    views: list[str]


def _number(value: float) -> float | None:
    return None if value != value else float(value)


class OnlinePredictor:
    """Features from the online store, the model of each entity's arm, and the answers.

    Args:
        service: the online feature service (lookups, join keys, roles and grants).
        models: the loaded models.
        served: per model name, its serving configuration.
    """

    def __init__(
        self,
        service: Any,
        models: OnlineModels,
        served: Mapping[str, Any],
    ) -> None:
        self.service = service
        self.models = models
        self.served = dict(served)
        # Resolved once: a bad reference is a configuration error at start-up.
        self._refs = {name: service.resolve(cfg.features) for name, cfg in self.served.items()}
        self._inputs: dict[tuple[str, str], dict[str, str]] = {}

    def model_name(self, requested: str | None) -> str:
        """The model a request names, or the only one served.

        Raises:
            UserError: an unknown model, or none named while several are served.
        """
        if requested is None:
            if len(self.served) == 1:
                return next(iter(self.served))
            raise UserError(f"name the model: one of {sorted(self.served)}")
        if requested not in self.served:
            raise UserError(f"unknown model {requested!r}; served: {sorted(self.served)}")
        return requested

    def views(self, name: str) -> list[str]:
        return sorted(self._refs[name])

    def _input_refs(self, model: LoadedModel) -> dict[str, str]:
        key = (model.name, model.version)
        found = self._inputs.get(key)
        if found is None:
            found = input_refs(model.input_columns, self._refs[model.name], model.name)
            self._inputs[key] = found
        return found

    def predict(
        self, name: str, entities: Sequence[Mapping[str, Any]], *, role: str | None
    ) -> PredictionResult:
        """Predict for each entity with the model of its arm.

        Raises:
            ModelUnavailableError: no champion, or a version that cannot be loaded.
            FeatureRequestError, AuthorizationError, OnlineStoreUnavailableError: as for
                ``/features`` (bad entities, a role without the model's views or grants, the
                store down).
        """
        from featurelake.feature_store.online import entity_key_from_mapping

        config = self.served[name]
        # Features first: a caller without the model's views gets 403 whatever the model's state.
        looked_up = self.service.get(entities, config.features, role=role)
        champion, challenger_model = self.models.get(name)
        first_view = self.service.views[self.views(name)[0]]
        keys = [entity_key_from_mapping(first_view, e) for e in looked_up.entities]
        mode = config.traffic.mode if challenger_model is not None else "champion"
        arms: list[Arm] = [
            arm_for(k, config.traffic.challenger_share, config.traffic.salt)
            if mode == "split"
            else "champion"
            for k in keys
        ]
        statuses = []
        for row in looked_up.values:
            found = [v.status not in ("not_found", "expired") for v in row.values()]
            statuses.append("ok" if all(found) else "incomplete" if any(found) else "not_found")
        scored = {
            "champion": self._score(champion, looked_up.values, arms, statuses, "champion"),
        }
        if challenger_model is not None and mode in ("split", "shadow"):
            wanted: Arm | None = "challenger" if mode == "split" else None
            scored["challenger"] = self._score(
                challenger_model, looked_up.values, arms, statuses, wanted
            )
        versions = {"champion": champion.version}
        if challenger_model is not None:
            versions["challenger"] = challenger_model.version
        predictions = []
        for i, entity in enumerate(looked_up.entities):
            arm = arms[i]
            value, probability = scored[arm].get(i, (None, None))
            shadow = None
            if mode == "shadow" and "challenger" in scored:
                sv, sp = scored["challenger"].get(i, (None, None))
                shadow = (versions["challenger"], sv, sp)
            predictions.append(
                Prediction(
                    dict(entity),
                    keys[i],
                    statuses[i],
                    arm,
                    versions[arm],
                    value,
                    probability,
                    shadow,
                )
            )
        features = [
            {ref.split(":", 1)[1]: v.value for ref, v in row.items()} for row in looked_up.values
        ]
        return PredictionResult(name, mode, predictions, features, self.views(name))

    def _score(
        self,
        model: LoadedModel,
        rows: Sequence[Mapping[str, Any]],
        arms: Sequence[Arm],
        statuses: Sequence[str],
        arm: Arm | None,
    ) -> dict[int, tuple[float | None, float | None]]:
        """Score the rows routed to ``arm`` (every row when None) that have features."""
        chosen = [
            i
            for i in range(len(rows))
            if (arm is None or arms[i] == arm) and statuses[i] != "not_found"
        ]
        if not chosen:
            return {}
        refs = self._input_refs(model)
        columns = {c: [rows[i][ref].value for i in chosen] for c, ref in refs.items()}
        prediction, probability = model.pipeline.predict_columns(columns, len(chosen))
        return {i: (_number(prediction[j]), _number(probability[j])) for j, i in enumerate(chosen)}


def prediction_log_rows(
    result: PredictionResult,
    *,
    request_id: str,
    latency_ms: float,
    key_id: str | None,
    role: str | None,
) -> list[dict[str, Any]]:
    """The prediction log's rows for one request: one per answer, plus one per shadow score."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    rows = []
    for p, features in zip(result.predictions, result.features, strict=True):
        common = {
            "request_id": request_id,
            "logged_at": now,
            "model": result.model,
            "mode": result.mode,
            "entity": json.dumps(p.entity, sort_keys=True, default=str),
            "features": json.dumps(features, sort_keys=True, default=str),
            "status": p.status,
            "latency_ms": latency_ms,
            "key_id": key_id,
            "role": role,
        }
        rows.append(
            {
                **common,
                "model_version": p.model_version,
                "arm": p.arm,
                "served": True,
                "prediction": p.prediction,
                "probability": p.probability,
            }
        )
        if p.shadow is not None:
            version, value, probability = p.shadow
            rows.append(
                {
                    **common,
                    "model_version": version,
                    "arm": "challenger",
                    "served": False,
                    "prediction": value,
                    "probability": probability,
                }
            )
    return rows
