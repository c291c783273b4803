"""In-process intake runtime on a real nats-server and a real database."""

from __future__ import annotations

from services.intake.settings import IntakeSettings

SOURCES = "city,centre-social-nord,demo,partner-b"


def intake_settings(nats_url: str, database_url: str, **overrides: object) -> IntakeSettings:
    values: dict[str, object] = {
        "nats_url": nats_url,
        "intake_database_url": database_url,
        "quartiers": "QN09301M,QN09302M",
        "sources": SOURCES,
    }
    values.update(overrides)
    return IntakeSettings(**values)  # type: ignore[arg-type]
