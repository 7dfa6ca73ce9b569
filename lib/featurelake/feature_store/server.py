"""The online feature serving API (FastAPI, run by uvicorn in the ``serve`` job).

Endpoints:

* ``POST /features`` - body ``{"entities": [{"customer_id": "17850"}, ...],
  "features": ["customer_rfm:recency_days", "customer_activity:*"]}``; answers
  ``{"features": [...], "results": [{"entity": {...}, "values": {"view:feature":
  {"value", "event_timestamp", "staleness_seconds", "status"}}}]}`` with one result per entity
  in request order. Needs an API key (header ``X-API-Key`` by default).
* ``POST /predict`` - body ``{"model": "credit_default", "entities": [{"id": 1}, ...]}``
  (``model`` may be left out when one model is served); answers ``{"model", "mode",
  "results": [{"entity", "prediction", "probability", "model_version", "arm", "status"}]}``.
  Features come from the online store (the views of ``models.<name>.features`` in
  ``conf/serving.yaml``), the model is the registered ``champion`` or ``challenger`` (the arm an
  entity's key hashes to in ``split`` mode; in ``shadow`` mode the champion answers and the
  challenger is scored and logged, never returned). ``status`` is ``ok``, ``incomplete`` (some
  views had no row: those features are imputed as in training) or ``not_found`` (no prediction).
  Every prediction, shadow ones included, goes to the Delta prediction log
  (:mod:`featurelake.ml.prediction_log`). The role needs the model's views and PII grants, as
  for ``/features``; 503 while the model has no champion.
* ``GET /health`` - whether the store answers (200 ``ok`` or 503 ``unavailable``); per view
  the bookmark of its last materialisation and whether its freshness SLA holds. No key needed,
  so it says nothing of where the store is.
* ``GET /health/details`` - the same, the store's type and location (its password hidden)
  and the process id of the worker that answered. Needs an API key whose role has
  ``health_details: true``.
* ``GET /dashboard`` - the monitoring dashboard (``monitor`` job, docs/MONITORING.md) as one
  self-contained HTML page. Needs an API key whose role has ``dashboard: true``; 404 until a
  monitor run has written it.
* ``/docs``, ``/redoc``, ``/openapi.json`` - only with ``server.expose_docs: true``.
* ``GET /metrics`` - Prometheus text format: requests by path and status, latency histogram,
  lookups by result (hit/miss/expired) and staleness per view. No key needed (bind the server to
  a private interface, or put it behind the proxy that scrapes it).

Errors: 401 no or unknown key; 403 a view the role may not read or a PII feature without a
grant; 413 a body over ``server.max_body_bytes`` (after a 401 or a 413 the connection is closed,
so the rest of the body is never read); 422 a malformed body, unknown features or bad entities,
with a message saying what is wrong; 503 with ``Retry-After`` while the online store cannot be
reached (each request tries it again, so serving resumes by itself when the store is back).
Request text quoted in an error is cut to a bounded length. Every request (whatever its outcome)
is appended to the audit log as one JSON line: who (key id and role, never the secret), what
(views, features, entity count), when, the status code and the latency; strings in it are cut to
256 characters and lists to ``server.max_features`` items.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, StrictStr
from starlette.concurrency import run_in_threadpool

from featurelake.core.config import Settings, load_settings
from featurelake.core.errors import UserError
from featurelake.feature_store.auth import (
    AuthorizationError,
    Authorizer,
    Principal,
)
from featurelake.feature_store.definitions import FeatureView, load_feature_views
from featurelake.feature_store.http import (
    AuditLog,
    FastJSONResponse,
    ServingMetrics,
    ServingMiddleware,
    clip_text,
)
from featurelake.feature_store.online import (
    OnlineStore,
    OnlineStoreUnavailableError,
    ServingConfig,
    SqliteOnlineStore,
    load_serving_config,
    open_online_store,
)
from featurelake.feature_store.online_api import FeatureRequestError, OnlineFeatureService
from featurelake.ml.online import (
    ModelUnavailableError,
    OnlineModels,
    OnlinePredictor,
    prediction_log_rows,
)
from featurelake.ml.prediction_log import PredictionLog

__all__ = [
    "AuditLog",
    "FeatureRequest",
    "ServingMetrics",
    "app_from_environment",
    "build_app",
    "create_app",
    "running_server",
]

log = logging.getLogger(__name__)


_MAX_DETAIL_CHARS = 1024
_MAX_PROBLEMS = 20


def _valid_unicode(value: str | int) -> str | int:
    # JSON may spell half of a UTF-16 pair alone ("\ud800"); such a string cannot be encoded
    # as UTF-8, so no store key, log line or answer could carry it.
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"a lone UTF-16 surrogate (U+{ord(value[exc.start]):04X}) at character "
                f"{exc.start} is not valid Unicode; send the whole surrogate pair or the "
                "character itself"
            ) from None
    return value


UnicodeStr = Annotated[StrictStr, AfterValidator(_valid_unicode)]
# Checked after the union, so an error's location is the key, not a member of the union.
KeyValue = Annotated[StrictStr | StrictInt, AfterValidator(_valid_unicode)]


class FeatureRequest(BaseModel):
    """The body of ``POST /features``."""

    model_config = ConfigDict(extra="forbid")

    entities: list[dict[UnicodeStr, KeyValue]] = Field(
        min_length=1, description="one mapping of join key to value per entity"
    )
    features: list[UnicodeStr] = Field(
        min_length=1, description='"view:feature" or "view:*" references'
    )


class PredictRequest(BaseModel):
    """The body of ``POST /predict``."""

    model_config = ConfigDict(extra="forbid")

    model: UnicodeStr | None = Field(
        default=None, description="the served model's name (optional when one is served)"
    )
    entities: list[dict[UnicodeStr, KeyValue]] = Field(
        min_length=1, description="one mapping of join key to value per entity"
    )


def _freshness(store: OnlineStore, views: dict[str, FeatureView]) -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    report: dict[str, Any] = {}
    for name, view in sorted(views.items()):
        if not view.online:
            continue
        bookmark = store.get_state(name)
        entry: dict[str, Any] = {"materialized": bookmark is not None}
        if bookmark:
            entry.update(
                {k: bookmark.get(k) for k in ("source_version", "up_to", "materialized_at", "mode")}
            )
            if view.freshness_sla is not None and bookmark.get("materialized_at"):
                age = now - datetime.fromisoformat(bookmark["materialized_at"])
                entry["seconds_since_materialized"] = round(age.total_seconds(), 1)
                entry["freshness_sla_seconds"] = view.freshness_sla.total_seconds()
                entry["within_freshness_sla"] = age <= view.freshness_sla
        report[name] = entry
    return report


def create_app(
    config: ServingConfig,
    views: dict[str, FeatureView],
    store: OnlineStore,
    dashboard: str | None = None,
    models: OnlineModels | None = None,
    prediction_log: PredictionLog | None = None,
    stream_progress: str | None = None,
) -> FastAPI:
    """Build the serving app.

    Args:
        config: ``conf/serving.yaml`` (limits, audit log, roles and keys, served models).
        views: the declared feature views.
        store: the online store to read (closed when the app shuts down).
        dashboard: the monitoring dashboard's HTML file served at ``/dashboard`` (None: 404).
        models: the registered models ``/predict`` serves (None: ``/predict`` answers 404).
        prediction_log: where predictions are logged (flushed and closed at shutdown).
        stream_progress: the ``stream`` job's progress file, exported at ``/metrics``
            (``featurelake_stream_*`` gauges per query; none while the file is absent).

    Returns:
        The FastAPI application (ASGI), ready for uvicorn.

    Raises:
        ValueError: a role or grant names an undeclared view or feature.
    """
    authorizer = Authorizer(config.access, views)
    service = OnlineFeatureService(
        views,
        store,
        authorizer,
        max_entities=config.server.max_entities,
        max_features=config.server.max_features,
    )
    audit = AuditLog(config.server.audit_log, max_items=config.server.max_features)
    metrics = ServingMetrics(stream_progress)
    retry_after = {"Retry-After": str(config.server.retry_after_seconds)}
    predictor = (
        OnlinePredictor(service, models, config.models)
        if models is not None and config.models
        else None
    )

    # SQLite answers in microseconds: called inline on the event loop. A network store (Redis)
    # may hang until its timeout, so it is called from the thread pool, never blocking the loop.
    inline = isinstance(store, SqliteOnlineStore)

    async def blocking(call: Callable[..., Any], *args: Any) -> Any:
        if inline:
            return call(*args[:-1], role=args[-1])
        return await run_in_threadpool(lambda: call(*args[:-1], role=args[-1]))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if models is not None and config.models:
            # Models load in the background: the server answers /health and /features at once.
            threading.Thread(
                target=models.warm, args=(list(config.models),), name="models-warm", daemon=True
            ).start()
        yield
        if prediction_log is not None:
            prediction_log.close()
        audit.close()
        store.close()

    docs = config.server.expose_docs
    app = FastAPI(
        title="featurelake online features",
        version="1",
        lifespan=lifespan,
        description="Latest feature values per entity, with event time and staleness.",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Locations hold the body's own keys, so they are clipped like any echoed input.
        errors = exc.errors()
        problems = [
            {
                "location": clip_text(".".join(str(p) for p in e["loc"])),
                "problem": clip_text(e["msg"]),
            }
            for e in errors[:_MAX_PROBLEMS]
        ]
        message = clip_text(
            "; ".join(f"{p['location']}: {p['problem']}" for p in problems), _MAX_DETAIL_CHARS
        )
        if len(errors) > len(problems):
            message += f"; and {len(errors) - len(problems)} more problem(s)"
        request.state.error = message
        return JSONResponse(
            {"error": "invalid_request", "detail": message, "problems": problems}, status_code=422
        )

    def refused(error: str, exc: Exception, status_code: int, request: Request) -> JSONResponse:
        # The message may quote the request (a reference, an entity), so the answer carries
        # it cut; the audit log cuts what it is given.
        request.state.error = str(exc)
        return JSONResponse(
            {"error": error, "detail": clip_text(str(exc), _MAX_DETAIL_CHARS)},
            status_code=status_code,
        )

    # /features and /predict are async: the lookup (an SQLite read or one Redis round trip) and
    # the numpy scoring take less time than handing the request to a worker thread would.
    @app.post("/features")
    async def post_features(body: FeatureRequest, request: Request) -> JSONResponse:
        principal: Principal = request.state.principal
        request.state.entities = len(body.entities)
        request.state.features = body.features
        try:
            resolved = service.resolve(body.features)
            request.state.views = sorted(resolved)
            result = await blocking(service.get, body.entities, body.features, principal.role)
        except FeatureRequestError as exc:
            return refused("invalid_request", exc, 422, request)
        except AuthorizationError as exc:
            return refused("forbidden", exc, 403, request)
        except OnlineStoreUnavailableError as exc:
            log.warning("online store unavailable: %s", exc)
            request.state.error = str(exc)
            return JSONResponse(
                {
                    "error": "store_unavailable",
                    "detail": "the online store cannot be reached; retry later",
                },
                status_code=503,
                headers=retry_after,
            )
        for view_name, stats in result.lookups.items():
            metrics.lookups.labels(view_name, "hit").inc(stats.hits)
            metrics.lookups.labels(view_name, "miss").inc(stats.misses)
            metrics.lookups.labels(view_name, "expired").inc(stats.expired)
            histogram = metrics.staleness.labels(view_name)
            for seconds in stats.staleness_seconds:
                histogram.observe(seconds)
        return FastJSONResponse({"features": result.features, "results": result.to_records()})

    @app.post("/predict")
    async def post_predict(body: PredictRequest, request: Request) -> JSONResponse:
        started = time.perf_counter()
        principal: Principal = request.state.principal
        request.state.entities = len(body.entities)
        if predictor is None:
            request.state.error = "no model is served"
            return JSONResponse(
                {"error": "not_found", "detail": "no model is served (serving.yaml models)"},
                status_code=404,
            )
        try:
            name = predictor.model_name(body.model)
            request.state.model = name
            request.state.views = predictor.views(name)
            result = await blocking(predictor.predict, name, body.entities, principal.role)
        except (FeatureRequestError, UserError) as exc:
            if isinstance(exc, AuthorizationError):
                return refused("forbidden", exc, 403, request)
            return refused("invalid_request", exc, 422, request)
        except (ModelUnavailableError, OnlineStoreUnavailableError) as exc:
            log.warning("predict unavailable: %s", exc)
            request.state.error = str(exc)
            what = "model" if isinstance(exc, ModelUnavailableError) else "store"
            return JSONResponse(
                {"error": f"{what}_unavailable", "detail": clip_text(str(exc), _MAX_DETAIL_CHARS)},
                status_code=503,
                headers=retry_after,
            )
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        request.state.model_versions = sorted({p.model_version for p in result.predictions})
        for p in result.predictions:
            metrics.predictions.labels(name, p.arm, "true").inc()
            if p.shadow is not None:
                metrics.predictions.labels(name, "challenger", "false").inc()
        if prediction_log is not None:
            prediction_log.append(
                prediction_log_rows(
                    result,
                    request_id=request.state.request_id,
                    latency_ms=latency_ms,
                    key_id=principal.key_id,
                    role=principal.role,
                )
            )
        return FastJSONResponse(
            {
                "model": name,
                "mode": result.mode,
                "results": [p.as_dict() for p in result.predictions],
            }
        )

    def health_report(*, with_store: bool) -> JSONResponse:
        body: dict[str, Any] = {"status": "unavailable"}
        if with_store:
            body["store"] = store.describe()
            body["worker_pid"] = os.getpid()  # which of the serve job's workers answered
        try:
            if store.ping():
                body["views"] = _freshness(store, views)
                body["status"] = "ok"
        except OnlineStoreUnavailableError:  # lost between the ping and the bookmarks
            pass
        if body["status"] == "ok":
            return JSONResponse(body)
        return JSONResponse(body, status_code=503, headers=retry_after)

    @app.get("/health")
    def health() -> JSONResponse:
        return health_report(with_store=False)

    @app.get("/health/details")
    def health_details(request: Request) -> JSONResponse:
        principal: Principal = request.state.principal
        try:
            authorizer.authorize_health_details(principal.role)
        except AuthorizationError as exc:
            return refused("forbidden", exc, 403, request)
        return health_report(with_store=True)

    @app.get("/dashboard")
    def monitoring_dashboard(request: Request) -> Response:
        principal: Principal = request.state.principal
        try:
            authorizer.authorize_dashboard(principal.role)
        except AuthorizationError as exc:
            return refused("forbidden", exc, 403, request)
        if dashboard is None or not os.path.isfile(dashboard):
            request.state.error = "no dashboard yet"
            return JSONResponse(
                {"error": "not_found", "detail": "no dashboard yet: run the monitor job"},
                status_code=404,
            )
        with open(dashboard, encoding="utf-8") as page:
            return HTMLResponse(page.read())

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(
        ServingMiddleware,
        authorizer=authorizer,  # type: ignore[arg-type]
        header=config.server.api_key_header,
        audit=audit,
        metrics=metrics,
        max_body_bytes=config.server.max_body_bytes,
    )
    app.state.metrics = metrics
    app.state.audit = audit
    app.state.prediction_log = prediction_log
    return app


def build_app(settings: Settings) -> FastAPI:
    """The app for ``settings``: views from ``conf/features``, store and access from
    ``conf/serving.yaml``, the dashboard from ``report.path`` of ``conf/monitoring.yaml``.

    Raises:
        ConfigError: a configuration file is invalid.
        ValueError: a role or grant names an undeclared view or feature.
    """
    from featurelake.monitoring.config import load_monitoring_config, under_root

    config = load_serving_config(settings)
    views = load_feature_views(settings)
    dashboard = under_root(settings, load_monitoring_config(settings).report.path)
    models, prediction_log = None, None
    if config.models:

        def mlflow_client() -> Any:
            # Imported on first use (MLflow takes seconds to import): see OnlineModels.warm.
            import mlflow

            from featurelake.ml.tracking import store_uris

            tracking_uri, registry_uri = store_uris(settings.mlflow)
            return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)

        models = OnlineModels(
            mlflow_client, {name: m.reload_seconds for name, m in config.models.items()}
        )
        log_config = config.prediction_log
        prediction_log = PredictionLog(
            log_config.table,
            flush_rows=log_config.flush_rows,
            flush_seconds=log_config.flush_seconds,
            max_pending=log_config.max_pending,
        )
    return create_app(
        config,
        views,
        open_online_store(config.online_store),
        dashboard,
        models=models,
        prediction_log=prediction_log,
        stream_progress=os.path.join(settings.lakehouse.root, settings.streaming.progress_file),
    )


def app_from_environment() -> FastAPI:
    """uvicorn factory for several worker processes (``serve`` with ``server.workers > 1``).

    Reads ``FEATURELAKE_CONF_DIR``, ``FEATURELAKE_ENV`` and ``FEATURELAKE_CONF_OVERRIDES`` (a
    JSON list of ``key=value``), which the ``serve`` job sets for its workers.
    """
    settings = load_settings(
        os.environ.get("FEATURELAKE_CONF_DIR", "conf"),
        os.environ.get("FEATURELAKE_ENV"),
        json.loads(os.environ.get("FEATURELAKE_CONF_OVERRIDES", "[]")),
    )
    return build_app(settings)


@contextmanager
def running_server(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 30.0
) -> Iterator[str]:
    """Run ``app`` under uvicorn in a background thread; yields its base URL.

    For notebooks, tests and benchmarks: the socket is bound before the thread starts (port 0
    picks a free one), and the server is shut down gracefully on exit.

    Raises:
        RuntimeError: the server did not start within ``start_timeout_s``.
    """
    import socket

    import uvicorn

    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the listening
    # socket says TCP; without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, access_log=False, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{bound_port}", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"uvicorn did not start on {host}:{bound_port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
