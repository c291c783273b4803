"""HTTP pieces shared by the services' FastAPI apps."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from nats.js import JetStreamContext
from pydantic import AwareDatetime, BaseModel, Field

from shared.client import ReceiptTimeout
from shared.codec import FieldError
from shared.events import EVENT_TYPES
from shared.receipts import Receipt
from shared.runtime import ServiceRuntime
from shared.subjects import rejected_subject

log = logging.getLogger(__name__)


def _field(loc: tuple[int | str, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path"):
        parts = parts[1:] if parts[0] == "body" else parts
    return ".".join(parts) or "(body)"


def keep_refused_requests(app: FastAPI, js: Callable[[], JetStreamContext], source: str) -> None:
    """Answer a request that fails validation with 422 and, when it was meant to submit an
    event (its route is named after the event type), keep its bytes in ``FPH_REJECTED``."""

    @app.exception_handler(RequestValidationError)
    async def refused(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            FieldError(_field(tuple(e["loc"])), str(e["msg"]), str(e["type"])) for e in exc.errors()
        ]
        route = request.scope.get("route")
        event_type = getattr(route, "name", None)
        if event_type in EVENT_TYPES:
            raw = await request.body()
            try:
                await js().publish(
                    rejected_subject(source, str(event_type)),
                    raw,
                    headers={
                        "Fph-Http-Path": request.url.path,
                        "Fph-Errors": json.dumps([e.as_dict() for e in errors]),
                    },
                )
            except Exception:  # the answer matters more than the copy
                log.exception("could not keep a refused HTTP request in FPH_REJECTED")
        return JSONResponse(
            {"status": "rejected", "errors": [e.as_dict() for e in errors]}, status_code=422
        )


class SubmissionResult(BaseModel):
    """What a write answers: the receipt, and the id of the aggregate written."""

    status: Literal["accepted", "rejected", "pending"]
    inbox_seq: int | None = None
    event_id: str | None = None
    seq: int | None = None
    errors: list[dict[str, str]] | None = None
    aggregate_id: str | None = None


SUBMISSION_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": SubmissionResult, "description": "Refused: every reason, field by field"},
    202: {"model": SubmissionResult, "description": "Kept, not decided within 10 s"},
}


class DeskWrite(BaseModel):
    """Fields every desk write may carry."""

    occurred_at: AwareDatetime | None = Field(default=None, description="Now if absent")
    event_id: uuid.UUID | None = Field(
        default=None, description="Idempotency key: send the same to retry safely"
    )


Endpoint = Callable[..., Awaitable[JSONResponse]]


def submission_route(router: APIRouter, path: str, name: str) -> Callable[[Endpoint], Endpoint]:
    """A POST that submits the event type ``name`` and answers its receipt."""
    return router.post(
        path,
        name=name,
        status_code=201,
        response_model=SubmissionResult,
        responses={404: {}, **SUBMISSION_RESPONSES},
    )


def new_event(
    event_type: str,
    quartier: str,
    aggregate_id: str,
    data: dict[str, Any],
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> dict[str, Any]:
    """A submission built from a desk request (current schema version; now if no time)."""
    return {
        "event_id": str(event_id or uuid.uuid4()),
        "type": event_type,
        "schema_version": EVENT_TYPES[event_type].CURRENT_VERSION,
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
        "quartier": quartier,
        "aggregate_id": aggregate_id,
        "correlation_id": correlation_id,
        "causation_id": causation_id,
        "data": data,
    }


async def submit_for_http(
    rt: ServiceRuntime, event: dict[str, Any]
) -> tuple[Receipt | None, JSONResponse]:
    """Submit through the inbox as the desk; 201 accepted, 422 refused, 202 still pending."""
    try:
        receipt = await rt.client.submit(event, timeout=10.0)
    except ReceiptTimeout as exc:
        body = {"status": "pending", "aggregate_id": event["aggregate_id"], "detail": str(exc)}
        return None, JSONResponse(body, status_code=202)
    body = {**receipt.as_dict(), "aggregate_id": event["aggregate_id"]}
    return receipt, JSONResponse(body, status_code=201 if receipt.ok else 422)


def runtime_of(request: Request) -> ServiceRuntime:
    rt: ServiceRuntime = request.app.state.runtime
    return rt


def service_app(
    title: str,
    summary: str,
    router: APIRouter,
    start: Callable[[], Awaitable[ServiceRuntime]],
    desk_source: str,
    on_scrape: Callable[[ServiceRuntime], None] | None = None,
) -> FastAPI:
    """A service's FastAPI app: its runtime started and stopped with the app, its routes,
    and ``/health`` and ``/metrics`` (``on_scrape`` refreshes service gauges first)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start()
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title=title, summary=summary, version="1.0", lifespan=lifespan)
    app.include_router(router)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        # One shape for every refusal: {"errors": [{"field", "message"}...]}.
        detail = exc.detail
        if isinstance(detail, dict) and "errors" in detail:
            return JSONResponse(detail, status_code=exc.status_code)
        return JSONResponse({"detail": detail}, status_code=exc.status_code)

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        """``ok`` when connected to NATS and the inbox loop runs; role and log position."""
        return health_response(runtime_of(request))

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        rt = runtime_of(request)
        rt.metrics.log_position.labels(rt.name).set(rt.follower.position)
        if on_scrape is not None:
            on_scrape(rt)
        return rt.metrics.response()

    keep_refused_requests(app, lambda: app.state.runtime.nc.jetstream(), desk_source)
    return app


def health_response(rt: ServiceRuntime) -> JSONResponse:
    """``ok`` when connected to NATS and the inbox loop runs (deciding, or standing by
    while another instance holds the lease); the log position reached."""
    ok = rt.nc.is_connected and rt.inbox_running()
    return JSONResponse(
        {
            "status": "ok" if ok else "degraded",
            "nats_connected": rt.nc.is_connected,
            "role": "deciding" if rt.inbox.active else "standby",
            "log_position": rt.follower.position,
        },
        status_code=200 if ok else 503,
    )
