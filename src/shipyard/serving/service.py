"""What the service's routes share (:class:`Service`): the router, the prediction log, the
feedback log, the metrics and the per-request limits; reading a body within them, checking
records against the champion's contract, answering and logging them, and accepting
feedback (:meth:`Service.accept_feedback`).

A body's CPU work (parse, nesting, records, the contract's check) runs on the event loop
when the body is small, and in a worker thread, one at a time, when it is large
(:data:`OFFLOAD_BYTES`), so that ``/health`` and small requests keep being answered while a
client sends 4 MB bodies.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from shipyard.errors import RequestRefused, Unexplainable
from shipyard.serving import protocol
from shipyard.serving.connection import TIMEOUT_SCOPE_KEY
from shipyard.serving.feedback import FeedbackLog, parse_feedback
from shipyard.serving.limits import Limits
from shipyard.serving.log import PredictionLog
from shipyard.serving.router import Answer, Arm, Router, Routes

if TYPE_CHECKING:
    from shipyard.monitoring.labels import Vocabulary
    from shipyard.serving.compaction import DailyCompaction

T = TypeVar("T")
E = TypeVar("E")  # what a route's parse returns beside the records
#: Bodies from this size on are parsed and checked in a worker thread (one at a time), not on
#: the event loop: below it the thread's hand-off costs more than it saves.
OFFLOAD_BYTES = 256 * 1024


def record_ids(request_id: str, n: int) -> list[str]:
    """The id each record of a request is logged (and labelled) under: the request's own id
    for a single record, ``<request id>-<i>`` (``i`` from 0) for the records of a list, so a
    label or a shadow's copy names one record, never a whole batch.

    >>> record_ids("ab12", 1), record_ids("ab12", 2)
    (['ab12'], ['ab12-0', 'ab12-1'])
    """
    return [request_id] if n == 1 else [f"{request_id}-{i}" for i in range(n)]


class Service:
    """What the routes share: the router, the log, the metrics and the limits."""

    def __init__(
        self,
        router: Router,
        log: PredictionLog | None,
        model: str,
        id_field: str | None,
        feedback: FeedbackLog | None = None,
        compaction: DailyCompaction | None = None,
    ) -> None:
        self.router = router
        self.log = log
        self.feedback = feedback
        self.compaction = compaction  # the log's closed days, compacted in its own thread
        self.model = model
        self.id_field = id_field
        self.metrics = router.metrics
        self.limits = Limits.of(router.policy)
        self._heavy = asyncio.Semaphore(1)  # large bodies are parsed one at a time

    def flush(self) -> None:
        """Write every answer logged so far, the shadow's too, and the feedback (blocking)."""
        if self.log is not None:
            self.log.flush()  # first: the shadow's copies come from this log
        self.router.flush_shadow()
        if self.feedback is not None:
            self.feedback.flush()

    def close(self) -> None:
        """Flush the logs, then stop the router's threads and its shadow (the app's
        shutdown): the shadow still answers the log's last rows."""
        if self.log is not None:
            self.log.close()
        if self.feedback is not None:
            self.feedback.close()
        if self.compaction is not None:
            self.compaction.close()
        self.router.close()

    async def accept_feedback(self, request: Request) -> dict[str, int]:
        """Check a ``POST /feedback`` body against the champion's target of the moment
        (``serving/feedback.py``) and queue its items for the feedback log: the counts
        ``{"accepted", "duplicates"}``. Refused whole (4xx) or queued whole: 503 when the
        server keeps no feedback log or its queue has no room for every item."""
        log = self.feedback
        if log is None:
            raise RequestRefused(
                503, "this server keeps no feedback log (it was started without its logs)", "off"
            )
        _, raw = await self.raw(request, ("application/json",))
        vocabulary = self.vocabulary(self.router.routes.champion)
        items, duplicates = await self.offload(
            len(raw), lambda: parse_feedback(self.parse_json(raw), vocabulary, self.limits)
        )
        if log.pending + len(items) > log.max_queue:
            raise RequestRefused(
                503,
                f"the feedback log's queue is full ({log.pending:,} items waiting): nothing "
                "was accepted; retry shortly",
                "feedback_full",
            )
        now = time.time()
        for item in items:
            log.append({**item, "time": now})
        self.metrics.count("shipyard_feedback_total", float(len(items)))
        return {"accepted": len(items), "duplicates": duplicates}

    @staticmethod
    def vocabulary(champion: Arm) -> Vocabulary:
        """What a label of ``champion``'s target may be (its bundle's task and classes)."""
        from shipyard.monitoring.labels import Vocabulary

        return Vocabulary(champion.bundle.task, list(champion.bundle.classes or []))

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
        if length is not None and length.isdigit():
            self.limits.check_length(int(length), declared=True)
        chunks, size = [], 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                self.limits.check_length(size, declared=False)
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

    def parse_json(self, raw: bytes) -> Any:
        """A JSON body, refused when malformed or nested past ``max_depth``."""
        body = protocol.parse_json(raw)
        self.limits.check_depth(body)
        return body

    async def take(
        self,
        request: Request,
        kinds: tuple[str, ...],
        parse: Callable[[str, bytes], tuple[Any, E]],
        *,
        untyped: bool = False,
    ) -> tuple[Routes, list[dict[str, Any]], E, list[list[str]]]:
        """A request's records, checked on the routes of the moment it arrived: the routes,
        the records, what ``parse(kind, raw)`` returned beside them, and each record's
        warnings. Parsing and checking a large body runs off the event loop (:meth:`offload`);
        ``untyped``: see :meth:`raw`."""
        kind, raw = await self.raw(request, kinds, untyped=untyped)
        routes = self.router.routes

        def prepare() -> tuple[list[dict[str, Any]], E, list[list[str]]]:
            parsed, extra = parse(kind, raw)
            records = self.records(parsed)
            return records, extra, self.check(records, routes)

        records, extra, warnings = await self.offload(len(raw), prepare)
        return routes, records, extra, warnings

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

    async def offload(self, size: int, work: Callable[[], T]) -> T:
        """CPU work on a body of ``size`` bytes (parse, check): inline when small; a large
        body's in a worker thread, one at a time, so that the event loop keeps answering
        meanwhile (a 4 MB body takes about 0.1 s to parse and check)."""
        if size < OFFLOAD_BYTES:
            return work()
        async with self._heavy:
            return await run_in_threadpool(work)

    def check(self, records: list[dict[str, Any]], routes: Routes) -> list[list[str]]:
        """Every record's warnings; any error refuses them all (422, the first
        ``max_problems`` named, all counted)."""
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
            raise self.limits.refused("field", "contract", problems, n_problems)
        return warnings

    def score(
        self,
        records: list[dict[str, Any]],
        endpoint: str,
        arm: str | None = None,
        *,
        routes: Routes,
        warnings: list[list[str]],
        explain: bool = False,
    ) -> tuple[str, list[Answer], list[list[str]]]:
        """Answer records already checked on ``routes`` (their ``warnings``: :meth:`take`),
        and log them. ``explain``: each answer also carries its explanation, by the arm that
        answered it (refused first, 422, when an arm that may answer cannot explain); an
        answer without it costs nothing more."""
        if explain:
            self.explainable(routes, arm)
        started = time.perf_counter()
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
        if explain:
            self._explain(routes, records, answers)
        elapsed = time.perf_counter() - started
        now = time.time()
        log_types = routes.log_types
        for record_id, record, entity, answer, warned in zip(
            record_ids(request_id, len(records)), records, entities, answers, warnings, strict=True
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
                        "request_id": record_id,
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

    @staticmethod
    def explainable(routes: Routes, arm: str | None = None) -> None:
        """Refuse (422, :class:`~shipyard.errors.Unexplainable`) an explained request that an
        arm without an explainer may answer: the champion, or the challenger when it takes a
        share of traffic (canary) or is asked for by version."""
        arms = [routes.champion] if arm in (None, "champion") else []
        canary = routes.mode == "canary" and arm is None
        if routes.challenger is not None and (arm == "challenger" or canary):
            arms.append(routes.challenger)
        for target in arms:
            model = target.bundle.model
            if not model.explains:
                raise Unexplainable(
                    f"explanations were asked of version {target.version}, a '{model.name}' "
                    "model: that family has no explainer, so it cannot say why it gave a "
                    "score. Ask without explain (the query parameter, or OIP parameters.explain)"
                )

    def _explain(
        self, routes: Routes, records: list[dict[str, Any]], answers: list[Answer]
    ) -> None:
        """Attach each answer's explanation, the records of each arm explained together."""
        arms = {"champion": routes.champion}
        if routes.challenger is not None:
            arms["canary"] = arms["challenger"] = routes.challenger
        for name, target in arms.items():
            mine = [i for i, a in enumerate(answers) if a.arm == name]
            if not mine:
                continue
            for i, explanation in zip(
                mine, target.explain([records[i] for i in mine]), strict=True
            ):
                answers[i].explanation = explanation
            self.metrics.count("shipyard_explanations_total", float(len(mine)), arm=name)

    def _entity(self, record: Mapping[str, Any], request_id: str) -> str:
        if self.id_field is not None:
            value = record.get(self.id_field)
            if value is not None:
                return str(value)
        return request_id
