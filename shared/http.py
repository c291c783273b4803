"""HTTP pieces shared by the services' FastAPI apps."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from nats.js import JetStreamContext

from shared.codec import FieldError
from shared.events import EVENT_TYPES
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
