"""Settings shared by every service, from ``FPH_*`` environment variables."""

from __future__ import annotations

import json
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_QUARTIERS = ["QN09301M", "QN09302M", "QN09303M"]
DEFAULT_SOURCES = ["city", "centre-social-nord", "conseil-citoyen", "demo"]


def comma_separated(value: Any) -> Any:
    """``"a, b,c"`` -> ``["a", "b", "c"]`` for list settings given as one variable."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def nats_servers(url: str) -> list[str]:
    """``FPH_NATS_URL`` as the server list for ``nats.connect(servers=...)``.

    The variable may name several servers of one cluster, comma-separated
    (``nats://a:4222,nats://b:4222,nats://c:4222``). nats-py takes a *list* for that: a
    single string is parsed as one URL, so the comma form must be split. The client tries
    them in random order at start-up and, once connected, also learns the cluster's other
    nodes from the server; on a disconnect it reconnects to the next one that answers.
    """
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError(f"no NATS server in {url!r}")
    return servers


class CommonSettings(BaseSettings):
    """What every service of one deployment agrees on."""

    model_config = SettingsConfigDict(env_prefix="FPH_", extra="ignore")

    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server URL, or several of one cluster comma-separated (see nats_servers)",
    )
    quartiers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_QUARTIERS),
        description="Comma-separated quartier codes (e.g. QPV codes QN09301M).",
    )
    sources: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SOURCES),
        description="Comma-separated source ids allowed to submit (partners, the city desk).",
    )
    source_types: dict[str, list[str]] = Field(
        default_factory=dict,
        description='JSON: source -> event types it may submit, e.g. {"asso-x": ["EnvieRecorded"]};'
        " a source not listed may submit every type not reserved to a service.",
    )
    timezone: str = "Europe/Paris"
    max_future_seconds: int = 300

    @field_validator("quartiers", "sources", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("source_types", mode="before")
    @classmethod
    def _json_map(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)
