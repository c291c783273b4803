"""Intake's decisions, pure: the state an event meets -> every reason to refuse it.

Rules (beyond the schema and the shared contract checks of ``shared.inbox``):

- ``EnvieRecorded``: the envie id is new (in every quartier).
- ``EnvieClosed``: the envie exists, in this quartier; it is closed at most once;
  not before it was recorded.
- ``PorteurRegistered``: the porteur id is new (in every quartier).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.codec import FieldError
from shared.events import EnvieClosed, EnvieRecorded, EventBase, PorteurRegistered


@dataclass(frozen=True)
class EnvieState:
    envie_id: str
    quartier: str
    occurred_at: datetime
    closed_reason: str | None


@dataclass(frozen=True)
class PorteurState:
    porteur_id: str
    quartier: str


def decide_envie_recorded(event: EnvieRecorded, existing: EnvieState | None) -> list[FieldError]:
    if existing is None:
        return []
    return [
        FieldError(
            "aggregate_id",
            f"envie {existing.envie_id!r} is already recorded (quartier {existing.quartier});"
            " use a new id for a new envie",
            "already_exists",
        )
    ]


def decide_envie_closed(event: EnvieClosed, envie: EnvieState | None) -> list[FieldError]:
    if envie is None:
        return [
            FieldError(
                "aggregate_id",
                f"unknown envie {event.aggregate_id!r}: record it before closing it",
                "unknown_envie",
            )
        ]
    errors: list[FieldError] = []
    if envie.quartier != event.quartier:
        errors.append(
            FieldError(
                "quartier",
                f"envie {envie.envie_id!r} belongs to quartier {envie.quartier}",
                "wrong_quartier",
            )
        )
    if envie.closed_reason is not None:
        errors.append(
            FieldError(
                "aggregate_id",
                f"envie {envie.envie_id!r} is already closed ({envie.closed_reason});"
                " an envie is closed at most once",
                "already_closed",
            )
        )
    if event.occurred_at < envie.occurred_at:
        errors.append(
            FieldError(
                "occurred_at",
                f"closed at {event.occurred_at.isoformat()}, before it was recorded"
                f" ({envie.occurred_at.isoformat()})",
                "before_recorded",
            )
        )
    return errors


def decide_porteur_registered(
    event: PorteurRegistered, existing: PorteurState | None
) -> list[FieldError]:
    if existing is None:
        return []
    return [
        FieldError(
            "aggregate_id",
            f"porteur {existing.porteur_id!r} is already registered (quartier {existing.quartier})",
            "already_exists",
        )
    ]


def decide(
    event: EventBase, envie: EnvieState | None, porteur: PorteurState | None
) -> list[FieldError]:
    """Every reason to refuse ``event`` given the aggregate's current state."""
    if isinstance(event, EnvieRecorded):
        return decide_envie_recorded(event, envie)
    if isinstance(event, EnvieClosed):
        return decide_envie_closed(event, envie)
    if isinstance(event, PorteurRegistered):
        return decide_porteur_registered(event, porteur)
    raise TypeError(f"intake does not decide {event.type}")
