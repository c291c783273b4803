"""Intake's database: read models rebuilt from the log, and the identity register.

``intake_envies`` and ``intake_porteurs`` are caches of the log. The identity
register (``intake_identities``) is *not* in the log (no personal data enters it):
it lives only here; ``intake_erasures`` remembers who asked to be erased.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.intake import domain
from shared.codec import FieldError
from shared.events import EnvieClosed, EnvieRecorded, EventBase, PorteurRegistered
from shared.store import metadata

envies = sa.Table(
    "intake_envies",
    metadata,
    sa.Column("envie_id", sa.String(128), primary_key=True),
    sa.Column("quartier", sa.String(128), nullable=False, index=True),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("theme", sa.String(32), nullable=False),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("place", sa.String(200)),
    sa.Column("porteur_id", sa.String(128)),
    sa.Column("wants_to_carry", sa.Boolean, nullable=False),
    sa.Column("source", sa.String(128)),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("closed_reason", sa.String(32)),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
    sa.Column("closed_seq", sa.BigInteger),
)

porteurs = sa.Table(
    "intake_porteurs",
    metadata,
    sa.Column("porteur_id", sa.String(128), primary_key=True),
    sa.Column("quartier", sa.String(128), nullable=False),
    sa.Column("age_band", sa.String(16), nullable=False),
    sa.Column("gender", sa.String(16), nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

identities = sa.Table(
    "intake_identities",
    metadata,
    sa.Column("porteur_id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(300), nullable=False),
    sa.Column("contact", sa.String(300), nullable=False),
)

erasures = sa.Table(
    "intake_erasures",
    metadata,
    sa.Column("porteur_id", sa.String(128), primary_key=True),
    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
)


def _aware(value: datetime) -> datetime:
    # SQLite gives naive datetimes back; they were stored in UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def envie_state(session: Session, envie_id: str) -> domain.EnvieState | None:
    row = session.execute(sa.select(envies).where(envies.c.envie_id == envie_id)).first()
    if row is None:
        return None
    return domain.EnvieState(row.envie_id, row.quartier, _aware(row.occurred_at), row.closed_reason)


def porteur_state(session: Session, porteur_id: str) -> domain.PorteurState | None:
    row = session.execute(sa.select(porteurs).where(porteurs.c.porteur_id == porteur_id)).first()
    return domain.PorteurState(row.porteur_id, row.quartier) if row else None


def rules(session: Session, event: EventBase) -> list[FieldError]:
    """Load the aggregate's state and ask the domain."""
    envie = envie_state(session, event.aggregate_id) if event.AGGREGATE.value == "envie" else None
    porteur = (
        porteur_state(session, event.aggregate_id) if event.AGGREGATE.value == "porteur" else None
    )
    return domain.decide(event, envie, porteur)


def apply(session: Session, event: EventBase, seq: int) -> None:
    """Project one of intake's events into the read models."""
    if isinstance(event, EnvieRecorded):
        if envie_state(session, event.aggregate_id) is not None:
            return  # same id in two quartiers by racing instances: the first one logged wins
        d = event.data
        session.execute(
            envies.insert().values(
                envie_id=event.aggregate_id,
                quartier=event.quartier,
                occurred_at=event.occurred_at,
                channel=d.channel.value,
                theme=d.theme.value,
                summary=d.summary,
                place=d.place,
                porteur_id=d.porteur_id,
                wants_to_carry=d.wants_to_carry,
                source=event.source,
                seq=seq,
            )
        )
    elif isinstance(event, EnvieClosed):
        session.execute(
            envies.update()
            .where(envies.c.envie_id == event.aggregate_id)
            .values(
                closed_reason=event.data.reason.value, closed_at=event.occurred_at, closed_seq=seq
            )
        )
    elif isinstance(event, PorteurRegistered):
        if porteur_state(session, event.aggregate_id) is not None:
            return
        session.execute(
            porteurs.insert().values(
                porteur_id=event.aggregate_id,
                quartier=event.quartier,
                age_band=event.data.age_band.value,
                gender=event.data.gender.value,
                seq=seq,
            )
        )
