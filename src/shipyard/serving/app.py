"""The HTTP service: FastAPI routes over the router, the contract check and the log.

Endpoints (the request schemas and the OpenAPI document come from the champion's contract):

- ``POST /predict``: one record or a list of records (JSON objects);
- the Open Inference Protocol (KServe V2) REST: ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/{name}[/versions/{v}]``, ``…/ready``, ``…/infer`` (JSON tensors, one input
  per column; errors as ``{"error": "…"}``);
- MLflow's scoring protocol: ``POST /invocations`` with ``dataframe_split`` or
  ``dataframe_records`` (JSON), or ``text/csv`` with a header row;
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
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from shipyard.errors import RequestRefused, ShipyardError
from shipyard.serving import protocol, schema
from shipyard.serving.admin import (
    ADMIN_TOKEN_ENV,
    ADMIN_WINDOW_SECONDS,
    AdminGuard,
    admin_token,
)
from shipyard.serving.connection import CONNECTIONS, TIMEOUT_SCOPE_KEY
from shipyard.serving.limits import Limits
from shipyard.serving.log import PredictionLog
from shipyard.serving.metrics import Metrics
from shipyard.serving.router import Answer, Router


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


class Service:
    """What the routes share: the router, the log, the metrics and the limits."""

    def __init__(
        self, router: Router, log: PredictionLog | None, model: str, id_field: str | None
    ) -> None:
        self.router = router
        self.log = log
        self.model = model
        self.id_field = id_field
        self.metrics = router.metrics
        self.limits = Limits.of(router.policy)
        self.max_records = self.limits.max_records
        self.max_bytes = self.limits.max_bytes

    def flush(self) -> None:
        """Write every answer logged so far, the shadow's too (blocking)."""
        if self.log is not None:
            self.log.flush()  # first: the shadow's copies come from this log
        self.router.flush_shadow()

    def close(self) -> None:
        """Flush the log, then stop the router's threads and its shadow (the app's
        shutdown): the shadow still answers the log's last rows."""
        if self.log is not None:
            self.log.close()
        self.router.close()

    async def raw(
        self, request: Request, kinds: tuple[str, ...], *, untyped: bool = False
    ) -> tuple[str, bytes]:
        """The body's media type (one of ``kinds``) and bytes, refused when of another type,
        too large or empty.

        ``untyped``: a body without a content type is read as ``kinds[0]`` (the Open
        Inference Protocol's clients send none)."""
        given = request.headers.get("content-type", "")
        kind = given.split(";")[0].strip().lower() or (kinds[0] if untyped else "")
        if kind not in kinds:
            wanted = " or ".join(f"'Content-Type: {k}'" for k in kinds)
            raise RequestRefused(415, f"send {wanted} (got {given or 'none'!r})", "content_type")
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            raise RequestRefused(
                413,
                f"the body is {int(length):,} bytes; the limit is {self.max_bytes:,} ([serving] max_body_mb)",
                "too_large",
            )
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > self.max_bytes:
                    raise RequestRefused(
                        413,
                        f"the body is over the limit of {self.max_bytes:,} bytes ([serving] max_body_mb)",
                        "too_large",
                    )
                chunks.append(chunk)
        except ClientDisconnect:  # counted (kind "disconnect" or "body_timeout"), not a traceback
            if request.scope.get(TIMEOUT_SCOPE_KEY) == "body":  # the server closed it
                raise RequestRefused(
                    408,
                    "the body did not arrive in time ([serving] body_timeout_seconds)",
                    "body_timeout",
                ) from None
            raise RequestRefused(
                400, "the client disconnected before sending the whole body", "disconnect"
            ) from None
        raw = b"".join(chunks)
        if not raw.strip():
            what = "a JSON document" if kind == "application/json" else "a header row and rows"
            raise RequestRefused(400, f"the body is empty; send {what}", "empty")
        return kind, raw

    async def body(self, request: Request, *, untyped: bool = False) -> Any:
        """The parsed JSON body, refused when it is not JSON, too large or empty
        (``untyped``: see :meth:`raw`)."""
        _, raw = await self.raw(request, ("application/json",), untyped=untyped)
        return self.parse_json(raw)

    def parse_json(self, raw: bytes) -> Any:
        """A JSON body, refused when malformed or nested past ``max_depth``."""
        body = protocol.parse_json(raw)
        self.limits.check_depth(body)
        return body

    def reply(self, data: Any) -> Response:
        """An answer (200), refused when larger than ``max_response_mb``."""
        body = self.limits.check_response(orjson.dumps(data))
        return Response(body, media_type="application/json")

    def records(self, records: Any) -> list[dict[str, Any]]:
        if not isinstance(records, list) or not records:
            raise RequestRefused(
                400, "expected one record (a JSON object) or a non-empty list of them", "shape"
            )
        self.limits.check_records(len(records))
        for i, record in enumerate(records):
            if not isinstance(record, dict):
                raise RequestRefused(
                    400, f"record {i} is {type(record).__name__}, not a JSON object", "shape"
                )
        return records

    def score(
        self, records: list[dict[str, Any]], endpoint: str, arm: str | None = None
    ) -> tuple[str, list[Answer], list[list[str]]]:
        """Validate every record, answer them, log them; a contract error refuses them all."""
        started = time.perf_counter()
        routes = self.router.routes
        problems: list[dict[str, Any]] = []
        warnings: list[list[str]] = []
        n_problems = 0  # all of them; `problems` holds the first `max_problems`
        room = self.limits.max_problems
        for i, record in enumerate(records):
            mine = []
            for v in routes.validate(record):
                if v.severity == "error":
                    n_problems += v.count
                    if len(problems) < room:
                        problem = {
                            "record": i,
                            "field": v.column,
                            "reason": v.reason,
                            "message": v.message,
                        }
                        if v.count > 1:
                            problem["count"] = v.count
                        problems.append(problem)
                else:
                    mine.append(f"{v.column}: {v.reason}")
                    self.metrics.count("shipyard_warnings_total", field=v.column, reason=v.reason)
            warnings.append(mine)
        if problems:
            fields = ", ".join(sorted({p["field"] for p in problems}))
            more = n_problems - sum(p.get("count", 1) for p in problems)
            raise RequestRefused(
                422,
                f"{n_problems:,} field problem(s) in {fields}"
                + (f" ({more:,} more not shown; [serving] max_problems)" if more else "")
                + f": {problems[0]['message']}",
                "contract",
                problems,
                summary={"problems": n_problems, "not_shown": more},
            )
        request_id = uuid.uuid4().hex
        entities = [self._entity(r, request_id) for r in records]
        if arm is None:
            answers = [
                self.router.answer(routes, r, e) for r, e in zip(records, entities, strict=True)
            ]
        else:  # a version asked for by number (OIP /versions/{v}): no routing
            target = routes.champion if arm == "champion" else routes.challenger
            if target is None:  # the challenger left between routing and answering
                raise RequestRefused(404, f"no {arm} is deployed now", "version")
            answers = []
            for r in records:
                start = time.perf_counter()
                out = target.score(r)
                answers.append(
                    Answer(out, arm, target.version, time.perf_counter() - start, target.classes)
                )
        elapsed = time.perf_counter() - started
        now = time.time()
        log_types = routes.log_types
        for record, entity, answer, warned in zip(
            records, entities, answers, warnings, strict=True
        ):
            self.metrics.count(
                "shipyard_requests_total",
                endpoint=endpoint,
                arm=answer.arm,
                version=str(answer.version),
            )
            if self.log is not None:
                self.log.append(
                    {
                        "request_id": request_id,
                        "time": now,
                        "entity_id": entity if entity != request_id else None,
                        "model_version": answer.version,
                        "arm": answer.arm,
                        "features": record,
                        "types": log_types.get(answer.arm),
                        "prediction": answer.output,
                        "latency_ms": answer.latency * 1e3,
                        "warnings": warned,
                        "error": None,
                    }
                )
        self.metrics.observe(
            "shipyard_latency_seconds",
            elapsed,
            endpoint=endpoint,
            arm=answers[0].arm,
            version=str(answers[0].version),
        )
        return request_id, answers, warnings

    def _entity(self, record: Mapping[str, Any], request_id: str) -> str:
        if self.id_field is not None:
            value = record.get(self.id_field)
            if value is not None:
                return str(value)
        return request_id


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
        body = await service.body(request)
        single = isinstance(body, dict)
        request_id, answers, warnings = service.score(
            service.records([body] if single else body), "predict"
        )
        items = [
            {
                **protocol.named(a.output, a.classes),
                "model_version": a.version,
                "arm": a.arm,
                "warnings": w,
            }
            for a, w in zip(answers, warnings, strict=True)
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
        kind, raw = await service.raw(request, ("application/json", "text/csv"))
        records = (
            protocol.csv_records(raw, service.limits)
            if kind == "text/csv"
            else protocol.mlflow_records(service.parse_json(raw), service.limits)
        )
        _, answers, _ = service.score(service.records(records), "invocations")
        predictions = [
            a.output if a.classes is None else protocol.named(a.output, a.classes) for a in answers
        ]
        return service.reply({"predictions": predictions})

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
        body = await service.body(request, untyped=True)
        records, request_id = protocol.oip_records(body, service.limits)
        _, answers, warnings = service.score(
            service.records(records), "infer", None if arm == "routed" else arm
        )
        return service.reply(
            {
                "model_name": name,
                "model_version": str(answers[0].version),
                "id": request_id,
                "parameters": {"warnings": warnings},
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
    service = Service(router, prediction_log, spec.project.name, spec.project.id)
    return create_app(service), service


def from_env() -> FastAPI:
    """The app factory uvicorn's workers call (``SHIPYARD_SPEC`` names the spec)."""
    return build(os.environ.get("SHIPYARD_SPEC", "shipyard.toml"))[0]
