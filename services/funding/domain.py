"""Funding's decisions, pure: envelopes, grants, and the answer to an approved decision.

The answer to a committee decision depends only on the log before it, so that
replaying the log gives the same answers: the envelope as it stood when the
decision was logged (opened, topped up, money returned, all *before* the
decision), less what the decisions logged before it were awarded (they are
answered first: first decided, first served).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from shared.codec import FieldError
from shared.events import (
    CommitteeDecided,
    EnvelopeOpened,
    EnvelopeToppedUp,
    EventBase,
    GrantPaid,
    GrantRefusalReason,
    GrantSettled,
    envelope_id,
)

ANSWER_NAMESPACE = uuid.UUID("6f1d3c52-8a4e-4d0b-9f57-1f6c2a9e7b10")


@dataclass(frozen=True)
class Grant:
    grant_id: str
    envelope_id: str
    project_id: str
    amount_cents: int
    decision_seq: int
    paid_cents: int = 0
    settled: bool = False


@dataclass(frozen=True)
class Envelope:
    """What funding knows of one envelope, each amount with the sequence it was logged at."""

    envelope_id: str
    quartier: str
    year: int
    cap_per_project_cents: int
    opened_seq: int
    credits: tuple[tuple[int, int], ...] = ()
    """(seq, cents) put in: the opening amount and the top-ups."""
    returns: tuple[tuple[int, int], ...] = ()
    """(seq, cents) given back by settled grants."""
    awards: tuple[tuple[int, int], ...] = ()
    """(decision seq, cents) awarded, keyed by the decision's place in the log."""
    grants: dict[str, Grant] = field(default_factory=dict)

    def available_before(self, seq: int) -> int:
        """What the envelope could give a decision logged at ``seq``."""
        credited = sum(c for s, c in (*self.credits, *self.returns) if s < seq)
        awarded = sum(c for s, c in self.awards if s < seq)
        return credited - awarded

    def totals(self) -> dict[str, int]:
        """The ledger's figures (cents)."""
        opened = self.credits[0][1] if self.credits else 0
        topped_up = sum(c for _, c in self.credits[1:])
        returned = sum(c for _, c in self.returns)
        awarded = sum(c for _, c in self.awards)
        return {
            "opened_cents": opened,
            "topped_up_cents": topped_up,
            "awarded_cents": awarded,
            "paid_cents": sum(g.paid_cents for g in self.grants.values()),
            "returned_cents": returned,
            "remaining_cents": opened + topped_up + returned - awarded,
        }


def envelope_of(decision: CommitteeDecided, tz: ZoneInfo) -> str:
    """The envelope of a decision: its quartier's, for the year of its local date."""
    local: datetime = decision.occurred_at.astimezone(tz)
    return envelope_id(local.year, decision.quartier)


def answer_id(decision_event_id: str) -> str:
    """The answer's event id, derived from the decision's: a decision can be answered once."""
    return str(uuid.uuid5(ANSWER_NAMESPACE, f"answer:{decision_event_id}"))


def grant_id_for(decision_event_id: str) -> str:
    return "g-" + uuid.uuid5(ANSWER_NAMESPACE, f"grant:{decision_event_id}").hex[:16]


@dataclass(frozen=True)
class Answer:
    """``GrantAwarded`` (reason None) or ``GrantRefused`` (with its reason)."""

    type: str
    data: dict[str, object]


@dataclass(frozen=True)
class PendingDecision:
    """An approved committee decision waiting for funding's answer."""

    decision_seq: int
    event_id: str
    project_id: str
    quartier: str
    envelope_id: str
    amount_cents: int
    occurred_at: datetime
    correlation_id: str | None


def pending_decision(
    decision: CommitteeDecided, decision_seq: int, tz: ZoneInfo
) -> PendingDecision | None:
    """The decision as funding must answer it; None unless approved."""
    if decision.data.decision.value != "approved":
        return None
    return PendingDecision(
        decision_seq=decision_seq,
        event_id=str(decision.event_id),
        project_id=decision.aggregate_id,
        quartier=decision.quartier,
        envelope_id=envelope_of(decision, tz),
        amount_cents=decision.data.amount_approved_cents,
        occurred_at=decision.occurred_at,
        correlation_id=str(decision.correlation_id) if decision.correlation_id else None,
    )


def answer(decision: PendingDecision, envelope: Envelope | None) -> Answer:
    """First decided, first served: award if the envelope can, else say why not."""

    def refused(reason: GrantRefusalReason) -> Answer:
        return Answer("GrantRefused", {"project_id": decision.project_id, "reason": reason.value})

    if envelope is None or envelope.opened_seq > decision.decision_seq:
        return refused(GrantRefusalReason.no_envelope)
    if decision.amount_cents > envelope.cap_per_project_cents:
        return refused(GrantRefusalReason.cap_exceeded)
    if decision.amount_cents > envelope.available_before(decision.decision_seq):
        return refused(GrantRefusalReason.envelope_exhausted)
    return Answer(
        "GrantAwarded",
        {
            "grant_id": grant_id_for(decision.event_id),
            "project_id": decision.project_id,
            "amount_cents": decision.amount_cents,
        },
    )


def answer_event(decision: PendingDecision, ans: Answer) -> dict[str, object]:
    """The answer as an event: on the envelope, at the decision's time, caused by it."""
    return {
        "event_id": answer_id(decision.event_id),
        "type": ans.type,
        "schema_version": 1,
        "occurred_at": decision.occurred_at.isoformat(),
        "quartier": decision.quartier,
        "aggregate_id": decision.envelope_id,
        "correlation_id": decision.correlation_id,
        "causation_id": decision.event_id,
        "data": ans.data,
    }


# --- the finance desk's submissions -------------------------------------------------


def decide(event: EventBase, envelope: Envelope | None) -> list[FieldError]:
    """Every reason to refuse an envelope event submitted by the finance desk."""
    if isinstance(event, EnvelopeOpened):
        if envelope is not None:
            return [
                FieldError(
                    "aggregate_id",
                    f"envelope {envelope.envelope_id} is already open: one per quartier and"
                    " year (top it up instead)",
                    "already_exists",
                )
            ]
        return []
    if envelope is None:
        return [
            FieldError(
                "aggregate_id",
                f"no envelope {event.aggregate_id!r}: open it first",
                "unknown_envelope",
            )
        ]
    errors: list[FieldError] = []
    if event.quartier != envelope.quartier:
        errors.append(
            FieldError(
                "quartier",
                f"envelope {envelope.envelope_id} belongs to quartier {envelope.quartier}",
                "wrong_quartier",
            )
        )
    if isinstance(event, EnvelopeToppedUp):
        return errors
    if isinstance(event, (GrantPaid, GrantSettled)):
        grant = envelope.grants.get(event.data.grant_id)
        if grant is None:
            return [
                *errors,
                FieldError(
                    "data.grant_id",
                    f"no grant {event.data.grant_id!r} in envelope {envelope.envelope_id}",
                    "unknown_grant",
                ),
            ]
        if grant.settled:
            errors.append(
                FieldError("data.grant_id", f"grant {grant.grant_id} is settled", "settled")
            )
        if isinstance(event, GrantPaid):
            after = grant.paid_cents + event.data.amount_cents
            if after > grant.amount_cents:
                errors.append(
                    FieldError(
                        "data.amount_cents",
                        f"payments would reach {after} cents, above the {grant.amount_cents}"
                        f" cents awarded ({grant.paid_cents} already paid)",
                        "above_award",
                    )
                )
        else:
            d = event.data
            if d.spent_cents + d.returned_cents != grant.paid_cents:
                errors.append(
                    FieldError(
                        "data",
                        f"spent {d.spent_cents} + returned {d.returned_cents} must equal the"
                        f" {grant.paid_cents} cents paid",
                        "settlement_mismatch",
                    )
                )
        return errors
    raise TypeError(f"funding does not decide {event.type} submissions")


def evolve(envelope: Envelope | None, event: EventBase, seq: int) -> Envelope | None:
    """The envelope after one of its events (``seq`` its place in the log)."""
    if isinstance(event, EnvelopeOpened):
        return Envelope(
            envelope_id=event.aggregate_id,
            quartier=event.quartier,
            year=event.data.year,
            cap_per_project_cents=event.data.cap_per_project_cents,
            opened_seq=seq,
            credits=((seq, event.data.amount_cents),),
        )
    if envelope is None:
        return None
    if isinstance(event, EnvelopeToppedUp):
        return replace(envelope, credits=(*envelope.credits, (seq, event.data.amount_cents)))
    if isinstance(event, GrantPaid):
        grant = envelope.grants[event.data.grant_id]
        paid = replace(grant, paid_cents=grant.paid_cents + event.data.amount_cents)
        return replace(envelope, grants={**envelope.grants, grant.grant_id: paid})
    if isinstance(event, GrantSettled):
        grant = envelope.grants[event.data.grant_id]
        grants = {**envelope.grants, grant.grant_id: replace(grant, settled=True)}
        returns = envelope.returns
        if event.data.returned_cents:
            returns = (*returns, (seq, event.data.returned_cents))
        return replace(envelope, grants=grants, returns=returns)
    return envelope


def with_award(envelope: Envelope, grant: Grant) -> Envelope:
    """The envelope once ``grant`` is awarded (counted at its decision's place in the log)."""
    return replace(
        envelope,
        awards=(*envelope.awards, (grant.decision_seq, grant.amount_cents)),
        grants={**envelope.grants, grant.grant_id: grant},
    )
