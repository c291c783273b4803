"""Intake settings: ``FPH_*`` shared ones plus ``FPH_INTAKE_*``."""

from __future__ import annotations

from shared.settings import CommonSettings


class IntakeSettings(CommonSettings):
    intake_database_url: str = "sqlite:///.var/intake.db"
    intake_host: str = "127.0.0.1"
    intake_port: int = 8001
    intake_desk_source: str = "city"
    """The source the city desk's HTTP requests are submitted as."""
