"""The HTTP service: FastAPI routes over the router, the contract check and the log.

Endpoints (the request schemas and the OpenAPI document come from the champion's contract):

- ``POST /predict``: one record or a list of records (JSON objects); ``?explain=true`` adds
  each answer's ``explanation`` (attributions per feature and the top reasons; the OIP's
  ``parameters: {"explain": true}`` answers them in ``parameters.explanations``);
- the Open Inference Protocol (KServe V2) REST: ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/{name}[/versions/{v}]``, ``…/ready``, ``…/infer`` (JSON tensors, one input
  per column; errors as ``{"error": "…"}``);
- MLflow's scoring protocol: ``POST /invocations`` with ``dataframe_split`` or
  ``dataframe_records`` (JSON), or ``text/csv`` with a header row;
- ``POST /feedback``: labels of answered requests, ``{"feedback": [{"request_id", "label"}, …]}``,
  checked against the champion's target and answered 202 (``serving/feedback.py``); a data
  route like ``/predict``, with no token, on a server that keeps its logs;
- ``GET /metrics`` (Prometheus), ``GET /health``;
- ``POST /admin/reload`` and ``GET /admin/state`` with ``Authorization: Bearer $SHIPYARD_ADMIN_TOKEN``.

Handlers take the raw request and parse it with orjson, and the stdlib ``csv`` module for
``text/csv`` (no pydantic or pandas on the request path; the wire formats are
``protocol.py``); every refusal is a 4xx naming what is wrong, and nothing reaches a client
as a traceback. Each answered record goes to the prediction log off the request path.

A multiclass answer names its classes on every route
(:func:`~shipyard.serving.protocol.named`): the label (the most probable class, as batch
output's ``prediction``) and the probability of each class by name (batch's
``proba_<class>``); binary and regression answers are one number.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from shipyard.errors import RequestRefused, ShipyardError
from shipyard.serving import protocol, schema
from shipyard.serving.admin import (
    ADMIN_TOKEN_ENV,
    ADMIN_WINDOW_SECONDS,
    AdminGuard,
    admin_token,
)
from shipyard.serving.compaction import DailyCompaction
from shipyard.serving.connection import CONNECTIONS
from shipyard.serving.feedback import FeedbackLog
from shipyard.serving.log import PredictionLog
from shipyard.serving.metrics import Metrics
from shipyard.serving.router import Router
from shipyard.serving.service import Service, record_ids


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def create_app(service: Service) -> FastAPI:
    """The FastAPI application over a :class:`Service`."""
    routes = service.router.routes
    contract = routes.champion.bundle.contract
    features = routes.champion.features
    record_schema = schema.record_schema(contract, features, service.id_field)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        lifespan=lifespan,
        title=f"shipyard: {service.model}",
        version=str(routes.champion.version),
        description=f"Predictions of '{service.model}'. Inputs follow the champion's data contract.",
    )
    app.state.service = service

    @app.exception_handler(ShipyardError)
    async def refused(request: Request, exc: ShipyardError) -> Response:
        # the one place an error becomes an HTTP status: each error class knows its own
        service.metrics.count(
            "shipyard_errors_total",
            endpoint=request.url.path.split("/")[1] or "root",
            kind=getattr(exc, "kind", type(exc).__name__),
        )
        body: dict[str, Any] = {"error": str(exc)}
        details = getattr(exc, "details", None)
        if details is not None:
            body["details"] = details
        body.update(getattr(exc, "summary", None) or {})
        return _json(body, exc.http_status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = _json({"error": str(exc.detail)}, exc.status_code)
        response.headers.update(exc.headers or {})  # 405 keeps its Allow header
        if exc.status_code == 405 and "allow" not in response.headers:
            allowed = sorted(
                m
                for route in app.routes
                if getattr(route, "path", None) == request.url.path
                for m in (getattr(route, "methods", None) or ())
            )
            response.headers["allow"] = ", ".join(allowed)
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        return _json(
            {"error": "invalid request: " + "; ".join(str(e.get("msg")) for e in exc.errors())}, 422
        )

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> Response:
        service.metrics.count(
            "shipyard_errors_total",
            endpoint=request.url.path.split("/")[1] or "root",
            kind="internal",
        )
        return _json(
            {
                "error": f"internal error ({type(exc).__name__}); the server logged it and keeps serving"
            },
            500,
        )

    @app.post(
        "/predict",
        openapi_extra=schema.predict_openapi(record_schema, routes.champion.classes),
        response_class=Response,
    )
    async def predict(request: Request) -> Response:
        def parse(_: str, raw: bytes) -> tuple[Any, bool]:
            body = service.parse_json(raw)
            single = isinstance(body, dict)
            return ([body] if single else body), single

        query = request.scope.get("query_string", b"")
        explain = protocol.explain_query(
            query, request.query_params.get("explain") if query else None
        )
        now, records, single, checked = await service.take(request, ("application/json",), parse)
        request_id, answers, warnings = service.score(
            records, "predict", routes=now, warnings=checked, explain=explain
        )
        items = [
            {
                **({} if single else {"request_id": record_id}),
                **protocol.named(a.output, a.classes),
                "model_version": a.version,
                "arm": a.arm,
                "warnings": w,
                **({} if a.explanation is None else {"explanation": a.explanation}),
            }
            for record_id, a, w in zip(
                record_ids(request_id, len(answers)), answers, warnings, strict=True
            )
        ]
        if single:
            return service.reply({"request_id": request_id, **items[0]})
        return service.reply({"request_id": request_id, "predictions": items})

    @app.post(
        "/invocations",
        openapi_extra=schema.invocations_openapi(record_schema, routes.champion.classes),
        response_class=Response,
    )
    async def invocations(request: Request) -> Response:
        def parse(kind: str, raw: bytes) -> tuple[Any, None]:
            if kind == "text/csv":
                return protocol.csv_records(raw, service.limits), None
            return protocol.mlflow_records(service.parse_json(raw), service.limits), None

        now, records, _, checked = await service.take(
            request, ("application/json", "text/csv"), parse
        )
        _, answers, _ = service.score(records, "invocations", routes=now, warnings=checked)
        predictions = [
            a.output if a.classes is None else protocol.named(a.output, a.classes) for a in answers
        ]
        return service.reply({"predictions": predictions})

    if service.feedback is not None:  # a server built without its logs has no feedback

        @app.post(
            "/feedback",
            status_code=202,
            openapi_extra=schema.feedback_openapi(
                routes.champion.bundle.task, routes.champion.bundle.classes
            ),
            response_class=Response,
        )
        async def feedback(request: Request) -> Response:
            return _json(await service.accept_feedback(request), 202)

    @app.get("/health", response_class=Response, openapi_extra=schema.plain_openapi())
    async def health() -> Response:
        r = service.router.routes
        problem = service.router.state_error
        return _json(
            {
                "status": "ok" if problem is None else "degraded",
                **({} if problem is None else {"error": problem}),
                "model": service.model,
                "champion": r.champion.version,
                "challenger": None if r.challenger is None else r.challenger.version,
                "mode": r.mode,
                "percent": r.percent,
                "revision": r.revision,
                "shadow": service.router.shadow_state(),
            }
        )

    @app.get("/metrics", response_class=Response, openapi_extra=schema.text_openapi())
    async def metrics() -> Response:
        if service.log is not None:
            service.metrics.gauges["shipyard_log_dropped_total"] = service.log.dropped
        if service.feedback is not None:
            service.metrics.gauges["shipyard_feedback_dropped_total"] = service.feedback.dropped
        service.metrics.gauges["shipyard_shadow_pending"] = service.router.shadow_pending()
        text = service.metrics.render() + CONNECTIONS.render()
        return Response(text, media_type="text/plain; version=0.0.4")

    @app.get("/v2/health/live", response_class=Response, openapi_extra=schema.plain_openapi())
    async def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready", response_class=Response, openapi_extra=schema.plain_openapi())
    async def ready() -> Response:
        problem = service.router.state_error
        if problem is not None:  # still answering with the last good routes, but say so
            return _json({"ready": False, "error": problem}, 503)
        return _json({"ready": True})

    def arm_of(name: str, version: str | None) -> str:
        if name != service.model:
            raise RequestRefused(
                404,
                f"model '{name}' is not served here; this server serves '{service.model}'",
                "not_found",
            )
        r = service.router.routes
        if version is None:
            return "routed"
        if version == str(r.champion.version):
            return "champion"
        if r.challenger is not None and version == str(r.challenger.version):
            return "challenger"
        served = [str(r.champion.version), *([str(r.challenger.version)] if r.challenger else [])]
        raise RequestRefused(
            404,
            f"version '{version}' of '{name}' is not served; served: {', '.join(served)}",
            "not_found",
        )

    def metadata(name: str, version: str | None) -> Response:
        arm = arm_of(name, version)
        r = service.router.routes
        target = r.challenger if arm == "challenger" and r.challenger else r.champion
        return _json(
            {
                "name": name,
                "versions": [
                    str(r.champion.version),
                    *([str(r.challenger.version)] if r.challenger else []),
                ],
                "platform": "shipyard",
                "inputs": schema.oip_inputs(target.bundle.contract, target.features),
                "outputs": schema.oip_outputs(target.classes),
            }
        )

    async def infer(request: Request, name: str, version: str | None) -> Response:
        arm = arm_of(name, version)
        if request.headers.get("inference-header-content-length"):
            raise RequestRefused(
                400,
                "binary tensor data is not supported; send JSON tensors (binary_data=False)",
                "datatype",
            )

        def parse(_: str, raw: bytes) -> tuple[Any, tuple[str, bool]]:
            body = service.parse_json(raw)
            records, request_id = protocol.oip_records(body, service.limits)
            return records, (request_id, protocol.oip_explain(body))

        now, records, (request_id, explain), checked = await service.take(
            request, ("application/json",), parse, untyped=True
        )
        _, answers, warnings = service.score(
            records,
            "infer",
            None if arm == "routed" else arm,
            routes=now,
            warnings=checked,
            explain=explain,
        )
        parameters: dict[str, Any] = {"warnings": warnings}
        if explain:
            parameters["explanations"] = [a.explanation for a in answers]
        return service.reply(
            {
                "model_name": name,
                "model_version": str(answers[0].version),
                "id": request_id,
                "parameters": parameters,
                "outputs": protocol.oip_outputs(answers, answers[0].classes),
            }
        )

    oip = schema.oip_openapi()
    plain = schema.plain_openapi()

    @app.get("/v2/models/{name}", response_class=Response, openapi_extra=plain)
    async def model_metadata(name: str) -> Response:
        return metadata(name, None)

    @app.get("/v2/models/{name}/versions/{version}", response_class=Response, openapi_extra=plain)
    async def version_metadata(name: str, version: str) -> Response:
        return metadata(name, version)

    @app.get("/v2/models/{name}/ready", response_class=Response, openapi_extra=plain)
    async def model_ready(name: str) -> Response:
        arm_of(name, None)
        return _json({"name": name, "ready": True})

    @app.get(
        "/v2/models/{name}/versions/{version}/ready", response_class=Response, openapi_extra=plain
    )
    async def version_ready(name: str, version: str) -> Response:
        arm_of(name, version)
        return _json({"name": name, "ready": True})

    @app.post("/v2/models/{name}/infer", response_class=Response, openapi_extra=oip)
    async def model_infer(name: str, request: Request) -> Response:
        return await infer(request, name, None)

    @app.post(
        "/v2/models/{name}/versions/{version}/infer", response_class=Response, openapi_extra=oip
    )
    async def version_infer(name: str, version: str, request: Request) -> Response:
        return await infer(request, name, version)

    token = admin_token()
    guard = AdminGuard()

    def admin(request: Request) -> None:
        if token is None:
            raise RequestRefused(
                403, f"admin routes are off: start the server with {ADMIN_TOKEN_ENV} set", "admin"
            )
        client = request.client.host if request.client else "unknown"
        if guard.blocked(client):
            service.metrics.count("shipyard_admin_failures_total", outcome="rate_limited")
            raise RequestRefused(
                429,
                f"too many failed admin attempts from {client}; wait {ADMIN_WINDOW_SECONDS:g} s",
                "admin_rate_limited",
            )
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, b"Bearer " + token.encode()):
            guard.failed(client)
            service.metrics.count("shipyard_admin_failures_total", outcome="refused")
            raise RequestRefused(401, f"send 'Authorization: Bearer <{ADMIN_TOKEN_ENV}>'", "admin")

    @app.post("/admin/reload", response_class=Response, openapi_extra=plain)
    async def reload(request: Request) -> Response:
        admin(request)
        r = service.router.reload()
        return _json(
            {
                "revision": r.revision,
                "champion": r.champion.version,
                "challenger": None if r.challenger is None else r.challenger.version,
            }
        )

    @app.get("/admin/state", response_class=Response, openapi_extra=plain)
    async def state(request: Request) -> Response:
        admin(request)
        deployment = service.router.registry.state()
        return _json(
            {
                "state": deployment.to_dict(),
                "serving_revision": service.router.routes.revision,
                "breaches": service.router.breaches,
                "log": None
                if service.log is None
                else {
                    "written": service.log.written,
                    "dropped": service.log.dropped,
                    "errors": service.log.errors,
                },
            }
        )

    return app


def build(
    spec_path: Path | str, *, arm_loader: Any = None, log: bool = True
) -> tuple[FastAPI, Service]:
    """The app of a project: the router over its deployment state, its log, its metrics."""
    from shipyard.monitoring.watch import keep_days
    from shipyard.spec import load_spec
    from shipyard.workspace import Workspace

    spec = load_spec(Path(spec_path))
    workspace = Workspace.of(spec)
    metrics = Metrics()
    policy = spec.serving
    log_options: dict[str, Any] = {
        "batch_rows": policy.log_batch_rows,
        "flush_seconds": policy.log_flush_seconds,
    }
    prediction_log = PredictionLog(workspace.logs, **log_options) if log else None
    feedback_log = FeedbackLog(workspace.feedback, **log_options) if log else None
    kwargs = {} if arm_loader is None else {"arm_loader": arm_loader}
    router = Router(
        workspace,
        policy,
        id_field=spec.project.id,
        metrics=metrics,
        log=prediction_log,
        shadow_log=functools.partial(
            PredictionLog,
            workspace.logs,
            **{**log_options, "flush_seconds": max(1.0, policy.log_flush_seconds)},
        )
        if log
        else None,
        **kwargs,
    )
    service = Service(
        router,
        prediction_log,
        spec.project.name,
        spec.project.id,
        feedback=feedback_log,
        compaction=DailyCompaction(
            workspace.logs, after=functools.partial(keep_days, spec, workspace)
        )
        if log
        else None,
    )
    return create_app(service), service


def from_env() -> FastAPI:
    """The app factory uvicorn's workers call (``SHIPYARD_SPEC`` names the spec)."""
    return build(os.environ.get("SHIPYARD_SPEC", "shipyard.toml"))[0]
