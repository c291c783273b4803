"""Funding's database: envelopes, grants, the ledger of movements, and the approved
decisions waiting for an answer — all rebuilt from the log."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.funding import domain
from shared.codec import FieldError
from shared.events import (
    CommitteeDecided,
    EnvelopeOpened,
    EnvelopeToppedUp,
    EventBase,
    GrantAwarded,
    GrantPaid,
    GrantRefused,
    GrantSettled,
    types_owned_by,
)
from shared.store import metadata

envelopes = sa.Table(
    "funding_envelopes",
    metadata,
    sa.Column("envelope_id", sa.String(128), primary_key=True),
    sa.Column("quartier", sa.String(128), nullable=False),
    sa.Column("year", sa.Integer, nullable=False, index=True),
    sa.Column("cap_per_project_cents", sa.BigInteger, nullable=False),
    sa.Column("opened_seq", sa.BigInteger, nullable=False),
)

movements = sa.Table(
    "funding_movements",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("envelope_id", sa.String(128), nullable=False, index=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("occurred_at", sa.String(40), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("returned_cents", sa.BigInteger, nullable=False, default=0),
    sa.Column("grant_id", sa.String(128)),
    sa.Column("project_id", sa.String(128)),
    sa.Column("decision_seq", sa.BigInteger),
    sa.Column("detail", sa.String(300)),
)

grants = sa.Table(
    "funding_grants",
    metadata,
    sa.Column("grant_id", sa.String(128), primary_key=True),
    sa.Column("envelope_id", sa.String(128), nullable=False, index=True),
    sa.Column("project_id", sa.String(128), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    sa.Column("decision_seq", sa.BigInteger, nullable=False),
    sa.Column("paid_cents", sa.BigInteger, nullable=False, default=0),
    sa.Column("settled", sa.Boolean, nullable=False, default=False),
)

decisions = sa.Table(
    "funding_decisions",
    metadata,
    sa.Column("decision_seq", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("project_id", sa.String(128), nullable=False),
    sa.Column("quartier", sa.String(128), nullable=False),
    sa.Column("envelope_id", sa.String(128), nullable=False),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
    # RFC 3339 text, offset kept: the answer's occurred_at is the decision's, exactly
    # (a DateTime column drops the offset on SQLite and reads it back as UTC).
    sa.Column("occurred_at", sa.String(40), nullable=False),
    sa.Column("correlation_id", sa.String(36)),
    sa.Column("answered_seq", sa.BigInteger, index=True),
    sa.Column("answer", sa.String(40)),
)


def _timestamp(value: str | datetime) -> datetime:
    """A decision's ``occurred_at`` as stored (text; a datetime from an older table)."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def load_envelopes(session: Session, ids: Iterable[str]) -> dict[str, domain.Envelope]:
    """Envelopes with their credits, returns, awards and grants (a few queries)."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = session.execute(sa.select(envelopes).where(envelopes.c.envelope_id.in_(wanted)))
    found = {
        r.envelope_id: domain.Envelope(
            r.envelope_id, r.quartier, r.year, r.cap_per_project_cents, r.opened_seq
        )
        for r in rows
    }
    if not found:
        return {}
    credits: dict[str, list[tuple[int, int]]] = {k: [] for k in found}
    returns: dict[str, list[tuple[int, int]]] = {k: [] for k in found}
    for m in session.execute(
        sa.select(movements)
        .where(movements.c.envelope_id.in_(list(found)))
        .where(movements.c.type.in_(["EnvelopeOpened", "EnvelopeToppedUp", "GrantSettled"]))
        .order_by(movements.c.seq)
    ):
        if m.type == "GrantSettled":
            if m.returned_cents:
                returns[m.envelope_id].append((m.seq, m.returned_cents))
        else:
            credits[m.envelope_id].append((m.seq, m.amount_cents))
    grant_rows: dict[str, dict[str, domain.Grant]] = {k: {} for k in found}
    for g in session.execute(sa.select(grants).where(grants.c.envelope_id.in_(list(found)))):
        grant_rows[g.envelope_id][g.grant_id] = domain.Grant(
            g.grant_id,
            g.envelope_id,
            g.project_id,
            g.amount_cents,
            g.decision_seq,
            g.paid_cents,
            g.settled,
        )
    out = {}
    for key, env in found.items():
        gs = grant_rows[key]
        out[key] = domain.Envelope(
            env.envelope_id,
            env.quartier,
            env.year,
            env.cap_per_project_cents,
            env.opened_seq,
            credits=tuple(credits[key]),
            returns=tuple(returns[key]),
            awards=tuple(sorted((g.decision_seq, g.amount_cents) for g in gs.values())),
            grants=gs,
        )
    return out


def pending_decisions(session: Session, limit: int = 200) -> list[domain.PendingDecision]:
    """Approved decisions not answered yet, in log order."""
    rows = session.execute(
        sa.select(decisions)
        .where(decisions.c.answered_seq.is_(None))
        .order_by(decisions.c.decision_seq)
        .limit(limit)
    )
    return [
        domain.PendingDecision(
            r.decision_seq,
            r.event_id,
            r.project_id,
            r.quartier,
            r.envelope_id,
            r.amount_cents,
            _timestamp(r.occurred_at),
            r.correlation_id,
        )
        for r in rows
    ]


FOLLOWED = frozenset([*types_owned_by("funding"), "CommitteeDecided"])
FAR_FUTURE = 2**62  # the sequence given to a not-yet-logged event in a batch's view


class FundingModel:
    """Funding's read models and decisions on the finance desk's submissions."""

    followed_types = FOLLOWED

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz

    def load(self, session: Session, events: Sequence[EventBase]) -> dict[str, domain.Envelope]:
        return load_envelopes(session, (e.aggregate_id for e in events))

    def decide(self, view: dict[str, domain.Envelope], event: EventBase) -> list[FieldError]:
        return domain.decide(event, view.get(event.aggregate_id))

    def note(self, view: dict[str, domain.Envelope], event: EventBase) -> None:
        after = domain.evolve(view.get(event.aggregate_id), event, FAR_FUTURE)
        if after is not None:
            view[event.aggregate_id] = after

    def apply(self, session: Session, events: Sequence[tuple[EventBase, int]]) -> None:
        for event, seq in events:
            self._apply_one(session, event, seq)

    def _apply_one(self, session: Session, event: EventBase, seq: int) -> None:
        if isinstance(event, CommitteeDecided):
            pending = domain.pending_decision(event, seq, self.tz)
            if pending is not None:
                session.execute(
                    decisions.insert().values(
                        decision_seq=seq,
                        event_id=pending.event_id,
                        project_id=pending.project_id,
                        quartier=pending.quartier,
                        envelope_id=pending.envelope_id,
                        amount_cents=pending.amount_cents,
                        occurred_at=pending.occurred_at.isoformat(),
                        correlation_id=pending.correlation_id,
                    )
                )
            return
        row: dict[str, Any] = {
            "seq": seq,
            "envelope_id": event.aggregate_id,
            "event_id": str(event.event_id),
            "type": event.type,
            "occurred_at": event.occurred_at.isoformat(),
            "amount_cents": 0,
            "returned_cents": 0,
        }
        if isinstance(event, EnvelopeOpened):
            session.execute(
                envelopes.insert().values(
                    envelope_id=event.aggregate_id,
                    quartier=event.quartier,
                    year=event.data.year,
                    cap_per_project_cents=event.data.cap_per_project_cents,
                    opened_seq=seq,
                )
            )
            row.update(
                amount_cents=event.data.amount_cents,
                detail=", ".join(f.funder for f in event.data.funders),
            )
        elif isinstance(event, EnvelopeToppedUp):
            row.update(amount_cents=event.data.amount_cents, detail=event.data.funder)
        elif isinstance(event, (GrantAwarded, GrantRefused)):
            decision_seq = session.scalar(
                sa.select(decisions.c.decision_seq).where(
                    decisions.c.event_id == str(event.causation_id)
                )
            )
            if decision_seq is not None:
                session.execute(
                    decisions.update()
                    .where(decisions.c.decision_seq == decision_seq)
                    .values(answered_seq=seq, answer=_answer_text(event))
                )
            row.update(project_id=event.data.project_id, decision_seq=decision_seq)
            if isinstance(event, GrantAwarded):
                session.execute(
                    grants.insert().values(
                        grant_id=event.data.grant_id,
                        envelope_id=event.aggregate_id,
                        project_id=event.data.project_id,
                        amount_cents=event.data.amount_cents,
                        decision_seq=decision_seq if decision_seq is not None else seq,
                        paid_cents=0,
                        settled=False,
                    )
                )
                row.update(amount_cents=event.data.amount_cents, grant_id=event.data.grant_id)
            else:
                row.update(detail=event.data.reason.value)
        elif isinstance(event, GrantPaid):
            session.execute(
                grants.update()
                .where(grants.c.grant_id == event.data.grant_id)
                .values(paid_cents=grants.c.paid_cents + event.data.amount_cents)
            )
            row.update(amount_cents=event.data.amount_cents, grant_id=event.data.grant_id)
        elif isinstance(event, GrantSettled):
            session.execute(
                grants.update().where(grants.c.grant_id == event.data.grant_id).values(settled=True)
            )
            row.update(
                amount_cents=event.data.spent_cents,
                returned_cents=event.data.returned_cents,
                grant_id=event.data.grant_id,
            )
        session.execute(movements.insert().values(**row))


def _answer_text(event: GrantAwarded | GrantRefused) -> str:
    return "awarded" if isinstance(event, GrantAwarded) else event.data.reason.value


def ledger(session: Session, envelope_id: str) -> dict[str, Any] | None:
    """An envelope's figures and every movement with its event id and seq."""
    env = load_envelopes(session, [envelope_id]).get(envelope_id)
    if env is None:
        return None
    rows = session.execute(
        sa.select(movements).where(movements.c.envelope_id == envelope_id).order_by(movements.c.seq)
    )
    return {
        "envelope_id": env.envelope_id,
        "quartier": env.quartier,
        "year": env.year,
        "cap_per_project_cents": env.cap_per_project_cents,
        **env.totals(),
        "movements": [
            {
                "seq": m.seq,
                "event_id": m.event_id,
                "type": m.type,
                "occurred_at": m.occurred_at,
                "amount_cents": m.amount_cents,
                "returned_cents": m.returned_cents,
                "grant_id": m.grant_id,
                "project_id": m.project_id,
                "decision_seq": m.decision_seq,
                "detail": m.detail,
            }
            for m in rows
        ],
    }
