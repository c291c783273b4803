"""Intake service: the FastAPI app and its lifespan (start/stop the running parts)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.intake.api import router
from services.intake.runtime import IntakeRuntime
from services.intake.settings import IntakeSettings
from shared.http import keep_refused_requests


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await IntakeRuntime.start(settings)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title="FPH intake",
        summary="Envies and porteurs: the city desk's API (fiche 1.1.6)",
        version="1.0",
        lifespan=lifespan,
    )
    app.include_router(router)
    keep_refused_requests(
        app, lambda: app.state.runtime.nc.jetstream(), settings.intake_desk_source
    )
    return app
