"""Funding service: the FastAPI app (its runtime starts and stops with it)."""

from __future__ import annotations

from fastapi import FastAPI

from services.funding.api import refresh_envelope_gauge, router
from services.funding.runtime import start_funding
from services.funding.settings import FundingSettings
from shared.http import service_app


def create_app(settings: FundingSettings | None = None) -> FastAPI:
    settings = settings or FundingSettings()
    return service_app(
        "FPH funding",
        "FPH envelopes, grants and payments: the finance desk's API and ledger (fiche 1.1.6)",
        router,
        lambda: start_funding(settings),
        settings.funding_desk_source,
        on_scrape=refresh_envelope_gauge,
    )
