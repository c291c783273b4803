"""Intake service: the FastAPI app (its runtime starts and stops with it)."""

from __future__ import annotations

from fastapi import FastAPI

from services.intake.api import router
from services.intake.runtime import start_intake
from services.intake.settings import IntakeSettings
from shared.http import service_app


def create_app(settings: IntakeSettings | None = None) -> FastAPI:
    settings = settings or IntakeSettings()
    return service_app(
        "FPH intake",
        "Envies and porteurs: the city desk's API (fiche 1.1.6)",
        router,
        lambda: start_intake(settings),
        settings.intake_desk_source,
    )
