"""Funding's running parts: the shared runtime, plus the answers to committee decisions."""

from __future__ import annotations

from services.funding.answers import answer_decisions
from services.funding.settings import FundingSettings
from services.funding.store import FundingModel
from shared.runtime import ServiceRuntime


async def start_funding(settings: FundingSettings) -> ServiceRuntime:
    return await ServiceRuntime.start(
        "funding",
        settings,
        database_url=settings.funding_database_url,
        desk_source=settings.funding_desk_source,
        model=FundingModel(settings.tz),
        background=[answer_decisions],
    )
