"""Funding's decisions (``services.funding.domain``), pure: answers, envelopes, the desk's rules.

CONTRACT 1.2/1.3: an approved decision gets exactly one answer, and the answer
depends only on the log *before* the decision — credits (opening, top-ups,
returned money) logged before it, less the awards of the decisions logged before
it.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.funding import domain
from services.funding.domain import Envelope, Grant, PendingDecision
from shared.codec import event_from_dict
from shared.events import CommitteeDecided, EventBase, GrantAwarded, GrantRefused, envelope_id
from tests import factories
from tests.factories import Q1, Q2

PARIS = ZoneInfo("Europe/Paris")
ENV = envelope_id(2026, Q1)
WHEN = "2026-03-01T10:00:00+01:00"


# --- builders -------------------------------------------------------------------


def ev(event_type: str, data: dict[str, Any] | None = None, **fields: Any) -> EventBase:
    fields.setdefault("aggregate_id", ENV)
    return event_from_dict(factories.submission(event_type, data=data or {}, **fields))


def opened(seq: int = 1, amount: int = 100_000, cap: int = 30_000, quartier: str = Q1) -> Envelope:
    event = ev(
        "EnvelopeOpened",
        {
            "year": 2026,
            "amount_cents": amount,
            "cap_per_project_cents": cap,
            "funders": [{"funder": "ville", "amount_cents": amount}],
        },
        quartier=quartier,
        aggregate_id=envelope_id(2026, quartier),
    )
    env = domain.evolve(None, event, seq)
    assert env is not None
    return env


def topped_up(env: Envelope, seq: int, amount: int) -> Envelope:
    after = domain.evolve(env, ev("EnvelopeToppedUp", {"amount_cents": amount}), seq)
    assert after is not None
    return after


def awarded(env: Envelope, decision_seq: int, amount: int, grant_id: str | None = None) -> Envelope:
    grant = Grant(
        grant_id or f"g-{decision_seq}", env.envelope_id, f"p-{decision_seq}", amount, decision_seq
    )
    return domain.with_award(env, grant)


def paid(env: Envelope, seq: int, grant_id: str, amount: int) -> Envelope:
    after = domain.evolve(env, ev("GrantPaid", {"grant_id": grant_id, "amount_cents": amount}), seq)
    assert after is not None
    return after


def settled(env: Envelope, seq: int, grant_id: str, spent: int, returned: int) -> Envelope:
    data = {"grant_id": grant_id, "spent_cents": spent, "returned_cents": returned}
    after = domain.evolve(env, ev("GrantSettled", data), seq)
    assert after is not None
    return after


def committee(
    amount: int = 20_000,
    decision: str = "approved",
    occurred_at: str = WHEN,
    quartier: str = Q1,
    **fields: Any,
) -> CommitteeDecided:
    event = event_from_dict(
        factories.submission(
            "CommitteeDecided",
            aggregate_id=fields.pop("aggregate_id", "p-7"),
            quartier=quartier,
            occurred_at=occurred_at,
            data={"decision": decision, "amount_approved_cents": amount},
            **fields,
        )
    )
    assert isinstance(event, CommitteeDecided)
    return event


def decided(seq: int, amount: int = 20_000, **fields: Any) -> PendingDecision:
    pending = domain.pending_decision(committee(amount, **fields), seq, PARIS)
    assert pending is not None
    return pending


def outcome(ans: domain.Answer) -> str | int:
    """The awarded amount, or the refusal's reason."""
    if ans.type == "GrantAwarded":
        amount = ans.data["amount_cents"]
        assert isinstance(amount, int)
        return amount
    assert ans.type == "GrantRefused"
    return str(ans.data["reason"])


def codes(errors: list[Any]) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in errors]


# --- answer(): no envelope ----------------------------------------------------------


def test_no_envelope_is_refused_with_the_project():
    ans = domain.answer(decided(5), None)
    assert ans == domain.Answer("GrantRefused", {"project_id": "p-7", "reason": "no_envelope"})


def test_an_envelope_opened_after_the_decision_does_not_fund_it():
    env = opened(seq=10, amount=100_000)
    assert outcome(domain.answer(decided(9), env)) == "no_envelope"
    assert outcome(domain.answer(decided(11), env)) == 20_000


def test_non_approved_decisions_wait_for_no_answer():
    for decision in ("rejected", "deferred"):
        assert domain.pending_decision(committee(0, decision), 3, PARIS) is None


# --- answer(): the cap, to the cent -------------------------------------------------


def test_cap_boundary_to_the_cent():
    env = opened(amount=1_000_000, cap=30_000)
    assert outcome(domain.answer(decided(2, 30_000), env)) == 30_000
    assert outcome(domain.answer(decided(2, 30_001), env)) == "cap_exceeded"


def test_above_the_cap_is_cap_exceeded_even_when_the_envelope_is_also_short():
    env = awarded(opened(amount=40_000, cap=30_000), 2, 30_000)
    assert outcome(domain.answer(decided(3, 30_001), env)) == "cap_exceeded"
    assert outcome(domain.answer(decided(3, 10_001), env)) == "envelope_exhausted"


# --- answer(): exhaustion, to the cent ----------------------------------------------


def test_exactly_what_remains_is_awarded_one_cent_more_is_exhausted():
    env = opened(amount=100_000, cap=30_000)
    for seq in (2, 3, 4):
        env = awarded(env, seq, 30_000)
    assert env.available_before(5) == 10_000
    assert outcome(domain.answer(decided(5, 10_000), env)) == 10_000
    assert outcome(domain.answer(decided(5, 10_001), env)) == "envelope_exhausted"


def test_awards_of_later_decisions_do_not_count_against_an_earlier_one():
    env = awarded(awarded(opened(amount=50_000), 8, 30_000), 9, 20_000)  # all spent, later on
    assert env.available_before(10) == 0
    assert outcome(domain.answer(decided(10, 1), env)) == "envelope_exhausted"
    assert env.available_before(5) == 50_000
    assert outcome(domain.answer(decided(5, 30_000), env)) == 30_000


# --- answer(): returned money and top-ups count only for later decisions -------------


def test_returned_money_counts_only_for_decisions_after_the_settlement():
    env = awarded(opened(amount=60_000, cap=30_000), 2, 30_000, "g-a")
    env = awarded(env, 3, 30_000, "g-b")
    env = paid(env, 4, "g-a", 30_000)
    env = settled(env, 6, "g-a", spent=25_000, returned=5_000)
    assert env.returns == ((6, 5_000),)
    assert outcome(domain.answer(decided(5, 1), env)) == "envelope_exhausted"
    assert outcome(domain.answer(decided(7, 5_000), env)) == 5_000
    assert outcome(domain.answer(decided(7, 5_001), env)) == "envelope_exhausted"


def test_a_settlement_returning_nothing_adds_no_credit():
    env = awarded(opened(amount=30_000), 2, 30_000, "g-a")
    env = settled(paid(env, 3, "g-a", 30_000), 4, "g-a", spent=30_000, returned=0)
    assert env.returns == ()
    assert outcome(domain.answer(decided(5, 1), env)) == "envelope_exhausted"


def test_top_ups_count_only_for_decisions_after_them():
    env = awarded(opened(amount=30_000, cap=30_000), 2, 30_000)
    env = topped_up(env, 6, 12_345)
    assert outcome(domain.answer(decided(5, 1), env)) == "envelope_exhausted"
    assert outcome(domain.answer(decided(7, 12_345), env)) == 12_345
    assert outcome(domain.answer(decided(7, 12_346), env)) == "envelope_exhausted"


def test_the_ledger_figures():
    env = awarded(opened(amount=100_000, cap=50_000), 2, 50_000, "g-a")
    env = topped_up(env, 3, 7_000)
    env = paid(paid(env, 4, "g-a", 20_000), 5, "g-a", 10_000)
    env = settled(env, 6, "g-a", spent=26_000, returned=4_000)
    assert env.totals() == {
        "opened_cents": 100_000,
        "topped_up_cents": 7_000,
        "awarded_cents": 50_000,
        "paid_cents": 30_000,
        "returned_cents": 4_000,
        "remaining_cents": 61_000,
    }
    assert env.grants["g-a"].paid_cents == 30_000 and env.grants["g-a"].settled


# --- the answer depends only on the log before the decision (property) --------------

Move = tuple[str, int]  # ("credit" | "award" | "return", cents)


@settings(max_examples=200, deadline=None)
@given(
    opening=st.integers(1, 200_000),
    cap=st.integers(1, 100_000),
    moves=st.lists(
        st.tuples(st.sampled_from(["credit", "award", "return"]), st.integers(1, 80_000)),
        max_size=25,
    ),
    amount=st.integers(1, 120_000),
    at=st.integers(0, 26),
)
def test_answer_ignores_everything_logged_after_the_decision(
    opening: int, cap: int, moves: list[Move], amount: int, at: int
):
    """Whatever follows the decision in the log, its answer is the one a naive walk of
    the log before it gives."""
    env = opened(seq=1, amount=opening, cap=cap)
    decision_seq = 2 + 2 * at + 1  # odd: between the moves (even seqs)
    available = opening
    for i, (kind, cents) in enumerate(moves):
        seq = 2 + 2 * i
        if kind == "credit":
            env = topped_up(env, seq, cents)
        elif kind == "award":
            env = awarded(env, seq, cents)
        else:
            env = replace(env, returns=(*env.returns, (seq, cents)))
        if seq < decision_seq:
            available += -cents if kind == "award" else cents
    expected: str | int
    if amount > cap:
        expected = "cap_exceeded"
    elif amount > available:
        expected = "envelope_exhausted"
    else:
        expected = amount
    assert outcome(domain.answer(decided(decision_seq, amount), env)) == expected


# --- envelope_of(): the year of the local (Paris) date -------------------------------


@pytest.mark.parametrize(
    ("occurred_at", "year"),
    [
        ("2026-12-31T23:30:00Z", 2027),  # 00:30 on 1 January in Paris
        ("2026-12-31T22:59:59Z", 2026),  # 23:59:59 on 31 December in Paris
        ("2026-12-31T23:00:00Z", 2027),  # midnight in Paris
        ("2027-01-01T00:30:00+05:00", 2026),  # 20:30 on 31 December in Paris
        ("2026-06-30T23:30:00Z", 2026),
    ],
)
def test_envelope_of_takes_the_year_of_the_paris_date(occurred_at: str, year: int):
    decision = committee(occurred_at=occurred_at, quartier=Q2)
    assert domain.envelope_of(decision, PARIS) == f"FPH-{year}-{Q2}"
    pending = domain.pending_decision(decision, 1, PARIS)
    assert pending is not None and pending.envelope_id == f"FPH-{year}-{Q2}"
    utc_year = datetime.fromisoformat(occurred_at).astimezone(UTC).year
    assert domain.envelope_of(decision, ZoneInfo("UTC")) == f"FPH-{utc_year}-{Q2}"


# --- answer ids and the answer as an event ------------------------------------------


def test_answer_id_is_derived_from_the_decision_deterministically():
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    assert domain.answer_id(a) == domain.answer_id(a)
    assert domain.answer_id(a) != domain.answer_id(b)
    assert uuid.UUID(domain.answer_id(a)).version == 5
    assert domain.answer_id(a) != a
    assert domain.grant_id_for(a) == domain.grant_id_for(a) != domain.grant_id_for(b)
    # stable across releases: a replay must find the answers already logged
    fixed = "00000000-0000-4000-8000-000000000001"
    assert domain.answer_id(fixed) == str(
        uuid.uuid5(uuid.UUID("6f1d3c52-8a4e-4d0b-9f57-1f6c2a9e7b10"), f"answer:{fixed}")
    )


@pytest.mark.parametrize("amount", [30_000, 30_001])
def test_the_answer_event_carries_the_decision_s_time_cause_and_envelope(amount: int):
    correlation = str(uuid.uuid4())
    decision = committee(
        amount, occurred_at="2026-12-31T23:30:00Z", correlation_id=correlation, aggregate_id="p-9"
    )
    pending = domain.pending_decision(decision, 40, PARIS)
    assert pending is not None
    env = opened(amount=100_000, cap=30_000)
    env = replace(env, envelope_id=f"FPH-2027-{Q1}", year=2027)
    ans = domain.answer(pending, env)
    event = event_from_dict(domain.answer_event(pending, ans))
    assert isinstance(event, GrantAwarded if amount == 30_000 else GrantRefused)
    assert str(event.event_id) == domain.answer_id(str(decision.event_id))
    assert str(event.causation_id) == str(decision.event_id)
    assert str(event.correlation_id) == correlation
    assert event.occurred_at == decision.occurred_at
    assert event.occurred_at == datetime.fromisoformat("2026-12-31T23:30:00+00:00")
    assert event.aggregate_id == f"FPH-2027-{Q1}" and event.quartier == Q1
    assert event.data.project_id == "p-9"
    if isinstance(event, GrantAwarded):
        assert event.data.amount_cents == 30_000
        assert event.data.grant_id == domain.grant_id_for(str(decision.event_id))
    else:
        assert event.data.reason.value == "cap_exceeded"


# --- decide(): the finance desk's submissions ---------------------------------------


def test_an_envelope_is_opened_once():
    first = ev(
        "EnvelopeOpened",
        {"amount_cents": 1_000, "funders": [{"funder": "ville", "amount_cents": 1_000}]},
    )
    assert domain.decide(first, None) == []
    assert codes(domain.decide(first, opened())) == [("aggregate_id", "already_exists")]


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        ("EnvelopeToppedUp", {"amount_cents": 1_000}),
        ("GrantPaid", {"grant_id": "g-1", "amount_cents": 1_000}),
        ("GrantSettled", {"grant_id": "g-1", "spent_cents": 1_000, "returned_cents": 0}),
    ],
)
def test_nothing_goes_on_an_unknown_envelope(event_type: str, data: dict[str, Any]):
    errors = domain.decide(ev(event_type, data), None)
    assert codes(errors) == [("aggregate_id", "unknown_envelope")]


def test_an_envelope_belongs_to_its_quartier():
    env = awarded(opened(quartier=Q1), 2, 10_000, "g-1")
    wrong = {"quartier": Q2, "aggregate_id": ENV}
    top_up = ev("EnvelopeToppedUp", {"amount_cents": 1}, **wrong)
    assert codes(domain.decide(top_up, env)) == [("quartier", "wrong_quartier")]
    pay = ev("GrantPaid", {"grant_id": "g-1", "amount_cents": 10_001}, **wrong)
    assert codes(domain.decide(pay, env)) == [
        ("quartier", "wrong_quartier"),
        ("data.amount_cents", "above_award"),
    ]
    assert domain.decide(ev("EnvelopeToppedUp", {"amount_cents": 1}), env) == []


def test_payments_never_add_up_above_the_award_to_the_cent():
    env = awarded(opened(), 2, 50_000, "g-1")
    env = paid(env, 3, "g-1", 20_000)

    def pay(cents: int) -> list[tuple[str, str]]:
        return codes(
            domain.decide(ev("GrantPaid", {"grant_id": "g-1", "amount_cents": cents}), env)
        )

    assert pay(30_000) == []
    assert pay(30_001) == [("data.amount_cents", "above_award")]
    env = paid(env, 4, "g-1", 30_000)
    assert pay(1) == [("data.amount_cents", "above_award")]


def test_payments_and_settlements_need_a_grant_of_this_envelope():
    env = awarded(opened(), 2, 50_000, "g-1")
    pay = ev("GrantPaid", {"grant_id": "g-2", "amount_cents": 1})
    assert codes(domain.decide(pay, env)) == [("data.grant_id", "unknown_grant")]
    settle = ev("GrantSettled", {"grant_id": "g-2", "spent_cents": 0, "returned_cents": 0})
    assert codes(domain.decide(settle, env)) == [("data.grant_id", "unknown_grant")]


def test_a_settled_grant_takes_no_more_payments_or_settlements():
    env = awarded(opened(), 2, 50_000, "g-1")
    env = settled(paid(env, 3, "g-1", 20_000), 4, "g-1", spent=20_000, returned=0)
    pay = ev("GrantPaid", {"grant_id": "g-1", "amount_cents": 1})
    assert codes(domain.decide(pay, env)) == [("data.grant_id", "settled")]
    again = ev("GrantSettled", {"grant_id": "g-1", "spent_cents": 20_000, "returned_cents": 0})
    assert codes(domain.decide(again, env)) == [("data.grant_id", "settled")]


def test_a_settlement_accounts_for_every_cent_paid():
    env = paid(awarded(opened(), 2, 50_000, "g-1"), 3, "g-1", 40_000)

    def settle(spent: int, returned: int) -> list[tuple[str, str]]:
        data = {"grant_id": "g-1", "spent_cents": spent, "returned_cents": returned}
        return codes(domain.decide(ev("GrantSettled", data), env))

    assert settle(35_000, 5_000) == []
    assert settle(40_000, 0) == []
    assert settle(35_000, 5_001) == [("data", "settlement_mismatch")]
    assert settle(34_999, 5_000) == [("data", "settlement_mismatch")]
    assert settle(45_000, 5_000) == [("data", "settlement_mismatch")]  # more than paid


def test_funding_does_not_decide_other_types():
    with pytest.raises(TypeError):
        domain.decide(committee(), opened())
