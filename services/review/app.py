"""Review service: the FastAPI app (its runtime starts and stops with it)."""

from __future__ import annotations

from fastapi import FastAPI

from services.review.api import refresh_project_gauge, router
from services.review.runtime import start_review
from services.review.settings import ReviewSettings
from shared.http import service_app


def create_app(settings: ReviewSettings | None = None) -> FastAPI:
    settings = settings or ReviewSettings()
    return service_app(
        "FPH review",
        "The project workflow, from accompaniment to completion (fiche 1.1.6)",
        router,
        lambda: start_review(settings),
        settings.review_desk_source,
        on_scrape=refresh_project_gauge,
    )
