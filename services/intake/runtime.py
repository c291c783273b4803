"""Intake's running parts: the shared service runtime with intake's model."""

from __future__ import annotations

from services.intake.settings import IntakeSettings
from services.intake.store import IntakeModel
from shared.runtime import ServiceRuntime


async def start_intake(settings: IntakeSettings) -> ServiceRuntime:
    """Intake also answers the submissions no service owns (the inbox's gatekeeper)."""
    return await ServiceRuntime.start(
        "intake",
        settings,
        database_url=settings.intake_database_url,
        desk_source=settings.intake_desk_source,
        model=IntakeModel(),
        gatekeeper=True,
    )
