"""Indicators settings: ``FPH_*`` shared ones plus ``FPH_INDICATORS_*``."""

from __future__ import annotations

from shared.settings import CommonSettings


class IndicatorsSettings(CommonSettings):
    indicators_database_url: str = "sqlite:///.var/indicators.db"
    indicators_host: str = "127.0.0.1"
    indicators_port: int = 8004
