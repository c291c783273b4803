"""Indicators service: the fiche's figures (CONTRACT 3), each traceable to its events.

It follows ``FPH_EVENTS`` into its store (``store.py``) and answers ``/indicators``
for any quartier, period and past ``as_of_seq`` from it; ``/indicators/{code}/lineage``
lists the events behind a figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

import nats
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from sqlalchemy.orm import Session

from services.indicators import reference, rejections, store
from services.indicators.settings import IndicatorsSettings
from shared.follower import Follower
from shared.log import EventLog, require_streams
from shared.settings import nats_servers
from shared.store import make_engine

log = logging.getLogger("fph.indicators")

FOLLOWER_NAME = "indicators-v1"


class Runtime:
    def __init__(self, settings: IndicatorsSettings) -> None:
        self.settings = settings

    async def start(self) -> None:
        s = self.settings
        self.nc = await nats.connect(
            nats_servers(s.nats_url), name="fph-indicators", max_reconnect_attempts=-1
        )
        js = self.nc.jetstream()
        await require_streams(js)
        self.log = EventLog(js)
        self.engine = make_engine(s.indicators_database_url)
        store.prepare(self.engine)
        self.follower = Follower(
            js, self.engine, FOLLOWER_NAME, store.IndicatorsProjection(s.tz), threaded=True
        )
        await self.follower.start()
        self.rejections = asyncio.create_task(
            rejections.follow(js, self.engine), name="indicators-rejections"
        )
        log.info("indicators following the log from seq %d", self.follower.position + 1)

    async def stop(self) -> None:
        await self.follower.stop()
        self.rejections.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.rejections
        try:
            await self.nc.drain()
        except Exception:
            await self.nc.close()
        self.engine.dispose()


def _error(status: int, field: str, message: str) -> HTTPException:
    return HTTPException(status, {"errors": [{"field": field, "message": message}]})


def _params(
    rt: Runtime, quartier: str | None, start: date, end: date, as_of_seq: int | None
) -> int:
    """Check the query; the sequence the answer is as of."""
    if quartier is not None and quartier not in rt.settings.quartiers:
        raise _error(
            422,
            "quartier",
            f"unknown quartier {quartier!r}; configured: {', '.join(rt.settings.quartiers)}",
        )
    if end <= start:
        raise _error(422, "to", f"must be after from ({start.isoformat()}); 'to' is exclusive")
    position = rt.follower.position
    if as_of_seq is None:
        return position
    if as_of_seq > position:
        raise _error(
            422,
            "as_of_seq",
            f"{as_of_seq} is beyond the log projected so far (seq {position});"
            " retry later or ask for an earlier seq",
        )
    return as_of_seq


Quartier = Annotated[str | None, Query(description="Quartier code; all quartiers if absent")]
From = Annotated[date, Query(alias="from", description="First local date (inclusive)")]
To = Annotated[date, Query(alias="to", description="End local date (exclusive)")]
AsOf = Annotated[int | None, Query(ge=0, description="Log sequence the figures are as of")]


def create_app(settings: IndicatorsSettings | None = None) -> FastAPI:
    settings = settings or IndicatorsSettings()
    rt = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(
        title="FPH indicators",
        summary="The fiche 1.1.6 indicators, traceable to the events behind them",
        version="1.0",
        lifespan=lifespan,
    )
    app.state.runtime = rt

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail
        body = detail if isinstance(detail, dict) else {"detail": detail}
        return JSONResponse(body, status_code=exc.status_code)

    @app.get("/indicators")
    def get_indicators(
        request: Request,
        start: From,
        end: To,
        quartier: Quartier = None,
        as_of_seq: AsOf = None,
    ) -> dict[str, Any]:
        """All 12 indicators of CONTRACT 3 for a quartier (or all) over ``[from, to)``."""
        as_of = _params(rt, quartier, start, end, as_of_seq)
        with Session(rt.engine) as session:
            values = store.indicators(session, quartier=quartier, start=start, end=end, as_of=as_of)
            digest = store.digest_at(session, as_of)
        query = {"from": start.isoformat(), "to": end.isoformat(), "as_of_seq": as_of}
        if quartier is not None:
            query["quartier"] = quartier
        base = str(request.base_url).rstrip("/")
        return {
            "quartier": quartier,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "as_of": {"seq": as_of, "digest": digest},
            "indicators": {
                code: {
                    "value": value,
                    "lineage": f"{base}/indicators/{code}/lineage?{urlencode(query)}",
                }
                for code, value in values.items()
            },
        }

    @app.get("/indicators/{code}/lineage")
    def get_lineage(
        code: str,
        start: From,
        end: To,
        quartier: Quartier = None,
        as_of_seq: AsOf = None,
    ) -> dict[str, Any]:
        """Every event that contributed to ``code`` (retracted or superseded ones marked);
        for ratios and means, the numerator's and the denominator's."""
        if code not in reference.INDICATOR_CODES:
            raise _error(
                404,
                "code",
                f"unknown indicator {code!r}; known: " + ", ".join(reference.INDICATOR_CODES),
            )
        as_of = _params(rt, quartier, start, end, as_of_seq)
        with Session(rt.engine) as session:
            events = store.logged_events(session, quartier, as_of)
            digest = store.digest_at(session, as_of)
        kwargs: dict[str, Any] = {
            "quartier": quartier,
            "start": start,
            "end": end,
            "as_of_seq": as_of,
            "tz": settings.tz,
        }
        return {
            "code": code,
            "quartier": quartier,
            "from": start.isoformat(),
            "to": end.isoformat(),
            "as_of": {"seq": as_of, "digest": digest},
            "value": reference.compute(events, **kwargs)[code],
            "contributions": reference.lineage(events, code, **kwargs),
        }

    @app.get("/health")
    async def health() -> JSONResponse:
        last = await rt.log.last_seq()
        return JSONResponse(
            {
                "status": "ok" if rt.nc.is_connected else "degraded",
                "log_position": rt.follower.position,
                "lag": max(0, last - rt.follower.position),
            },
            status_code=200 if rt.nc.is_connected else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        registry = CollectorRegistry()
        position = Gauge(
            "fph_log_position", "Last FPH_EVENTS sequence projected", ["service"], registry=registry
        )
        lag = Gauge(
            "fph_projection_lag", "Log sequences not projected yet", ["service"], registry=registry
        )
        figure = Gauge(
            "fph_indicator",
            "The fiche's indicators for the current year",
            ["code", "quartier"],
            registry=registry,
        )
        mechanism = Gauge(
            "fph_indicator_mobilisation",
            "MobilisationRecorded naming each mechanism, current year",
            ["mechanism", "quartier"],
            registry=registry,
        )
        refused = Counter(
            "fph_rejected_submissions",
            "Refused submissions kept in FPH_REJECTED, by event type and reason code (a"
            " submission refused for two reasons counts once under each); from the store",
            ["type", "reason"],
            registry=registry,
        )
        remaining = Gauge(
            "fph_log_envelope_remaining_cents",
            "What each FPH envelope can still award, computed from the log by the indicators"
            " service (funding's own read model exports fph_envelope_remaining_cents)",
            ["envelope", "quartier", "year"],
            registry=registry,
        )
        credited = Gauge(
            "fph_log_envelope_credited_cents",
            "What each FPH envelope was credited (opened + topped up + returned), from the log",
            ["envelope", "quartier", "year"],
            registry=registry,
        )
        last = await rt.log.last_seq()
        position.labels("indicators").set(rt.follower.position)
        lag.labels("indicators").set(max(0, last - rt.follower.position))
        year = datetime.now(UTC).astimezone(settings.tz).year
        with Session(rt.engine) as session:
            for event_type, reason, n in rejections.totals(session):
                refused.labels(event_type, reason).inc(n)
            for envelope, quartier, envelope_year, given, left in store.envelope_ledgers(session):
                credited.labels(envelope, quartier, str(envelope_year)).set(given)
                remaining.labels(envelope, quartier, str(envelope_year)).set(left)
            for q in settings.quartiers:
                values = store.indicators(
                    session,
                    quartier=q,
                    start=date(year, 1, 1),
                    end=date(year + 1, 1, 1),
                    as_of=rt.follower.position,
                )
                for code, value in values.items():
                    if isinstance(value, dict):
                        for m, count in value.items():
                            mechanism.labels(m, q).set(count)
                    elif value is not None:
                        figure.labels(code, q).set(value)
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    from services.indicators.reports_api import router as reports_router  # imports this module

    app.include_router(reports_router)
    return app
