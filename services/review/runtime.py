"""Review's running parts: the shared service runtime with review's model."""

from __future__ import annotations

from services.review.settings import ReviewSettings
from services.review.store import ReviewModel
from shared.runtime import ServiceRuntime


async def start_review(settings: ReviewSettings) -> ServiceRuntime:
    return await ServiceRuntime.start(
        "review",
        settings,
        database_url=settings.review_database_url,
        desk_source=settings.review_desk_source,
        model=ReviewModel(settings),
    )
