"""Funding settings: ``FPH_*`` shared ones plus ``FPH_FUNDING_*``."""

from __future__ import annotations

from shared.settings import CommonSettings


class FundingSettings(CommonSettings):
    funding_database_url: str = "sqlite:///.var/funding.db"
    funding_host: str = "127.0.0.1"
    funding_port: int = 8003
    funding_desk_source: str = "city"
    """The source the finance desk's HTTP requests are submitted as."""
