"""Intake's database: read models rebuilt from the log, and the identity register.

``intake_envies`` and ``intake_porteurs`` are caches of the log. The identity
register (``intake_identities``) is *not* in the log (no personal data enters it):
it lives only here; ``intake_erasures`` remembers who asked to be erased.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.intake import domain
from shared.codec import FieldError
from shared.events import (
    EnvieClosed,
    EnvieRecorded,
    EventBase,
    PorteurRegistered,
    types_owned_by,
)
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
    return _envie_states(session, [envie_id]).get(envie_id)


def _envie_states(session: Session, ids: Iterable[str]) -> dict[str, domain.EnvieState]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = session.execute(
        sa.select(
            envies.c.envie_id, envies.c.quartier, envies.c.occurred_at, envies.c.closed_reason
        ).where(envies.c.envie_id.in_(wanted))
    )
    return {
        r.envie_id: domain.EnvieState(
            r.envie_id, r.quartier, _aware(r.occurred_at), r.closed_reason
        )
        for r in rows
    }


def _porteur_states(session: Session, ids: Iterable[str]) -> dict[str, domain.PorteurState]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = session.execute(
        sa.select(porteurs.c.porteur_id, porteurs.c.quartier).where(
            porteurs.c.porteur_id.in_(wanted)
        )
    )
    return {r.porteur_id: domain.PorteurState(r.porteur_id, r.quartier) for r in rows}


@dataclass
class View:
    """The envies and porteurs a batch of submissions touches."""

    envies: dict[str, domain.EnvieState] = field(default_factory=dict)
    porteurs: dict[str, domain.PorteurState] = field(default_factory=dict)


class IntakeModel:
    """Intake's read models and decisions, plugged into the shared follower and inbox."""

    followed_types = frozenset(types_owned_by("intake"))

    def load(self, session: Session, events: Sequence[EventBase]) -> View:
        by_aggregate: dict[str, list[str]] = {"envie": [], "porteur": []}
        for event in events:
            by_aggregate.setdefault(event.AGGREGATE.value, []).append(event.aggregate_id)
        return View(
            _envie_states(session, by_aggregate["envie"]),
            _porteur_states(session, by_aggregate["porteur"]),
        )

    def decide(self, view: View, event: EventBase) -> list[FieldError]:
        return domain.decide(
            event, view.envies.get(event.aggregate_id), view.porteurs.get(event.aggregate_id)
        )

    def note(self, view: View, event: EventBase) -> None:
        if isinstance(event, EnvieRecorded):
            view.envies[event.aggregate_id] = domain.EnvieState(
                event.aggregate_id, event.quartier, event.occurred_at, None
            )
        elif isinstance(event, EnvieClosed):
            before = view.envies[event.aggregate_id]
            view.envies[event.aggregate_id] = replace(before, closed_reason=event.data.reason.value)
        elif isinstance(event, PorteurRegistered):
            view.porteurs[event.aggregate_id] = domain.PorteurState(
                event.aggregate_id, event.quartier
            )

    def apply(self, session: Session, events: Sequence[tuple[EventBase, int]]) -> None:
        """Project intake's events in bulk: a few statements per batch."""
        recorded = [(e, s) for e, s in events if isinstance(e, EnvieRecorded)]
        registered = [(e, s) for e, s in events if isinstance(e, PorteurRegistered)]
        closed = [(e, s) for e, s in events if isinstance(e, EnvieClosed)]
        # Same id in two quartiers by racing instances: the first one logged wins.
        have = _envie_states(session, (e.aggregate_id for e, _ in recorded))
        rows = []
        for e, seq in recorded:
            if e.aggregate_id in have:
                continue
            have[e.aggregate_id] = domain.EnvieState(
                e.aggregate_id, e.quartier, e.occurred_at, None
            )
            d = e.data
            rows.append(
                {
                    "envie_id": e.aggregate_id,
                    "quartier": e.quartier,
                    "occurred_at": e.occurred_at.astimezone(UTC),  # SQLite keeps no offset
                    "channel": d.channel.value,
                    "theme": d.theme.value,
                    "summary": d.summary,
                    "place": d.place,
                    "porteur_id": d.porteur_id,
                    "wants_to_carry": d.wants_to_carry,
                    "source": e.source,
                    "seq": seq,
                }
            )
        if rows:
            session.execute(envies.insert(), rows)
        if closed:
            session.execute(
                envies.update()
                .where(envies.c.envie_id == sa.bindparam("k"))
                .values(
                    closed_reason=sa.bindparam("reason"),
                    closed_at=sa.bindparam("at"),
                    closed_seq=sa.bindparam("s"),
                ),
                [
                    {
                        "k": e.aggregate_id,
                        "reason": e.data.reason.value,
                        "at": e.occurred_at.astimezone(UTC),
                        "s": seq,
                    }
                    for e, seq in closed
                ],
            )
        known = _porteur_states(session, (p.aggregate_id for p, _ in registered))
        prow = []
        for p, seq in registered:
            if p.aggregate_id in known:
                continue
            known[p.aggregate_id] = domain.PorteurState(p.aggregate_id, p.quartier)
            prow.append(
                {
                    "porteur_id": p.aggregate_id,
                    "quartier": p.quartier,
                    "age_band": p.data.age_band.value,
                    "gender": p.data.gender.value,
                    "seq": seq,
                }
            )
        if prow:
            session.execute(porteurs.insert(), prow)
