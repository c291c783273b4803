"""The replay benchmark's event generator (``bench.generate``): a log every service accepts.

One generated log of 5,000 events is checked against the services' own pure rules:
intake's (envies, porteurs), review's workflow table and guards (CONTRACT 1.3),
funding's answers and ledger (the very answer ``services.funding.domain`` gives
for each approved decision, envelopes never overspent), and the reference
indicators (every one non-null over the whole span).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import timedelta
from uuid import UUID

import pytest

from bench.generate import PARTNERS, EnvieRecordedV1, Simulation, generate, quartier_codes
from services.funding import domain as funding
from services.indicators import reference
from services.intake import domain as intake
from services.review import domain as review
from shared.codec import event_from_dict, parse_logged
from shared.events import (
    RETRACTING_REASONS,
    CommitteeDecided,
    Decision,
    EnvelopeOpened,
    EnvelopeToppedUp,
    EnvieClosed,
    EnvieRecorded,
    EventBase,
    GrantAwarded,
    GrantPaid,
    GrantRefused,
    GrantSettled,
    PorteurRegistered,
    ProjectAccompanied,
    ProjectCompleted,
    ProjectSubmitted,
    envelope_id,
    with_recording,
)

PARIS = reference.PARIS
N = 5000
SEED = 7
WORKFLOW = (ProjectAccompanied, ProjectSubmitted, CommitteeDecided, GrantAwarded, GrantRefused)


@pytest.fixture(scope="module")
def generated() -> list[EventBase]:
    return list(generate(N, seed=SEED))


@pytest.fixture(scope="module")
def bodies(generated: list[EventBase]) -> list[bytes]:
    return [e.to_json() for e in generated]


@pytest.fixture(scope="module")
def logged(bodies: list[bytes]) -> list[EventBase]:
    """The log as its readers see it: every body parsed back (schema 1 upcast)."""
    return [parse_logged(b) for b in bodies]


def test_exactly_n_events_for_any_n():
    for n in (0, 1, 2, 3, 50, 777):
        assert sum(1 for _ in generate(n, seed=1)) == n


def test_exactly_n_and_deterministic_for_a_seed(generated: list[EventBase], bodies: list[bytes]):
    assert len(generated) == N
    assert [e.to_json() for e in generate(N, seed=SEED)] == bodies
    other = [e.to_json() for e in generate(N, seed=SEED + 1)]
    assert len(other) == N and other != bodies
    assert len({e.event_id for e in generated}) == N


def test_every_event_parses_back_through_the_codec(
    generated: list[EventBase], bodies: list[bytes], logged: list[EventBase]
):
    v1 = 0
    for event, body, back in zip(generated, bodies, logged, strict=True):
        assert back.event_id == event.event_id and back.type == event.type
        if isinstance(event, EnvieRecordedV1):
            v1 += 1
            doc = json.loads(body)
            assert doc["schema_version"] == 1 and "place" not in doc["data"]
            assert isinstance(back, EnvieRecorded) and back.schema_version == 2
            assert back.data.place is None and back.data.summary == event.data.summary
        else:
            assert back.to_json() == body  # the bytes are the canonical serialisation
    assert v1 > 0, "some schema-1 envies now and then"


def test_envelope_fields_as_the_log_holds_them(logged: list[EventBase]):
    codes = set(quartier_codes(50))
    assert {e.quartier for e in logged} == codes
    for prev, event in itertools.pairwise(logged):
        assert event.occurred_at >= prev.occurred_at
        assert event.recorded_at is not None and prev.recorded_at is not None
        assert event.recorded_at > prev.recorded_at
    for event in logged:
        assert event.source and event.recorded_at is not None
        assert event.recorded_at >= event.occurred_at
        assert event.occurred_at.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    span = logged[-1].occurred_at - logged[0].occurred_at
    assert timedelta(days=700) < span < timedelta(days=1100), span
    assert logged[0].occurred_at.year == 2024


def test_envies_and_porteurs_follow_intake_rules(logged: list[EventBase]):
    envies: dict[str, intake.EnvieState] = {}
    porteurs: dict[str, intake.PorteurState] = {}
    reasons: Counter[str] = Counter()
    for event in logged:
        if isinstance(event, EnvieRecorded | EnvieClosed | PorteurRegistered):
            errors = intake.decide(
                event, envies.get(event.aggregate_id), porteurs.get(event.aggregate_id)
            )
            assert errors == [], (event, errors)
        if isinstance(event, EnvieRecorded):
            envies[event.aggregate_id] = intake.EnvieState(
                event.aggregate_id, event.quartier, event.occurred_at, None
            )
            assert event.aggregate_id not in porteurs
        elif isinstance(event, EnvieClosed):
            reasons[event.data.reason.value] += 1
            old = envies[event.aggregate_id]
            envies[event.aggregate_id] = intake.EnvieState(
                old.envie_id, old.quartier, old.occurred_at, event.data.reason.value
            )
        elif isinstance(event, PorteurRegistered):
            porteurs[event.aggregate_id] = intake.PorteurState(event.aggregate_id, event.quartier)
    assert set(reasons) == {"duplicate", "entered_in_error", "withdrawn", "redirected",
                            "out_of_scope"}  # fmt: skip
    channels = {e.data.channel for e in logged if isinstance(e, EnvieRecorded)}
    themes = {e.data.theme for e in logged if isinstance(e, EnvieRecorded)}
    assert len(channels) == 7 and len(themes) == 10


def test_projects_follow_the_workflow_of_contract_1_3(logged: list[EventBase]):
    """Every project event is one review accepts: state table, envies, porteurs, partner,
    committee rule, amounts (``services.review.domain.decide`` on the state so far)."""
    envies: dict[str, review.EnvieView] = {}
    porteurs: set[str] = set()
    projects: dict[str, review.Project] = {}
    steps: Counter[str] = Counter()
    for event in logged:
        if isinstance(event, EnvieRecorded):
            envies[event.aggregate_id] = review.EnvieView(event.aggregate_id, event.quartier, None)
        elif isinstance(event, EnvieClosed):
            envies[event.aggregate_id] = review.EnvieView(
                event.aggregate_id, event.quartier, event.data.reason.value
            )
        elif isinstance(event, PorteurRegistered):
            porteurs.add(event.aggregate_id)
        project_id = (
            event.data.project_id
            if isinstance(event, GrantAwarded | GrantRefused)
            else event.aggregate_id
        )
        if review.step_of(event) not in review.TRANSITIONS:
            continue
        project = projects.get(project_id)
        world = review.World(
            project,
            envies=envies,
            registered_porteurs=frozenset(porteurs),
            partners=frozenset(PARTNERS),
        )
        assert review.decide(event, world) == [], (event, review.decide(event, world))
        if isinstance(event, ProjectAccompanied):
            for envie_id in event.data.envie_ids:
                assert envies[envie_id].closed_reason not in RETRACTING_REASONS
        new = review.evolve(project, event)
        assert new is not None
        projects[project_id] = new
        steps[review.step_of(event)] += 1
        if isinstance(event, ProjectSubmitted) and project is not None:
            steps[f"resubmitted after {project.state.value}"] += 1
    assert set(steps) >= {
        "ProjectAccompanied",
        "ProjectSubmitted",
        "CommitteeDecided:approved",
        "CommitteeDecided:rejected",
        "CommitteeDecided:deferred",
        "GrantAwarded",
        "GrantRefused",
        "ProjectCompleted",
        "ImpactAssessed",
        "MobilisationRecorded",
        "resubmitted after rejected",
        "resubmitted after refused",
    }, steps
    completions = Counter(e.aggregate_id for e in logged if isinstance(e, ProjectCompleted))
    assert any(count > 1 for count in completions.values()), "some projects completed twice"
    states = Counter(p.state.value for p in projects.values())
    assert states["completed"] > 0 and states["rejected"] > 0


def test_each_approved_decision_has_exactly_the_answer_funding_gives(logged: list[EventBase]):
    """Replays funding's pure domain: each approved decision's answer is the one
    ``services.funding.domain`` computes (same id, envelope, time, causation, data),
    right after it; desk events are accepted; envelopes are never overspent."""
    envelopes: dict[str, funding.Envelope] = {}
    approved: dict[UUID, int] = {}
    answers: Counter[UUID] = Counter()
    pending: funding.PendingDecision | None = None
    reasons: Counter[str] = Counter()
    opened: Counter[tuple[str, int]] = Counter()
    for seq, event in enumerate(logged, start=1):
        if pending is not None:  # the decision just before wants its answer here
            envelope = envelopes.get(pending.envelope_id)
            expected = event_from_dict(
                funding.answer_event(pending, funding.answer(pending, envelope))
            )
            assert event == with_recording(
                expected, source="funding", recorded_at=event.recorded_at
            )
            if isinstance(event, GrantAwarded):
                assert envelope is not None
                envelopes[pending.envelope_id] = funding.with_award(
                    envelope,
                    funding.Grant(
                        event.data.grant_id,
                        pending.envelope_id,
                        pending.project_id,
                        event.data.amount_cents,
                        pending.decision_seq,
                    ),
                )
                totals = envelopes[pending.envelope_id].totals()
                assert totals["remaining_cents"] >= 0
                assert event.data.amount_cents <= envelope.cap_per_project_cents
            else:
                assert isinstance(event, GrantRefused)
                reasons[event.data.reason.value] += 1
            answers[event.causation_id] += 1  # type: ignore[index]
            pending = None
            continue
        assert not isinstance(event, GrantAwarded | GrantRefused), "an answer without decision"
        if isinstance(event, CommitteeDecided):
            pending = funding.pending_decision(event, seq, PARIS)
            if pending is not None:
                approved[event.event_id] = seq
                assert pending.envelope_id == envelope_id(
                    event.occurred_at.astimezone(PARIS).year, event.quartier
                )
        elif isinstance(event, EnvelopeOpened | EnvelopeToppedUp | GrantPaid | GrantSettled):
            envelope = envelopes.get(event.aggregate_id)
            assert funding.decide(event, envelope) == [], (event, funding.decide(event, envelope))
            if isinstance(event, EnvelopeOpened):
                opened[(event.quartier, event.data.year)] += 1
            after = funding.evolve(envelope, event, seq)
            assert after is not None
            envelopes[event.aggregate_id] = after
    assert pending is None
    assert set(answers) == set(approved) and set(answers.values()) == {1}
    assert set(reasons) == {"no_envelope", "cap_exceeded", "envelope_exhausted"}, reasons
    assert set(opened.values()) == {1} and len(opened) >= 100  # two years at least, 50 quartiers
    for envelope in envelopes.values():
        assert envelope.totals()["remaining_cents"] >= 0
        for grant in envelope.grants.values():
            assert grant.paid_cents <= grant.amount_cents


def test_indicators_are_all_non_null_over_the_whole_span(logged: list[EventBase]):
    log = list(enumerate(logged, start=1))
    start = logged[0].occurred_at.astimezone(PARIS).date()
    end = logged[-1].occurred_at.astimezone(PARIS).date() + timedelta(days=1)
    values = reference.compute(log, quartier=None, start=start, end=end, as_of_seq=None)
    assert set(values) == set(reference.INDICATOR_CODES)
    for code, value in values.items():
        assert value is not None, code
        if isinstance(value, dict):
            assert all(count > 0 for count in value.values()), (code, value)
        else:
            assert value > 0, (code, value)
    assert values["envies_recueillies"] < sum(isinstance(e, EnvieRecorded) for e in logged)


def test_every_decision_kind_has_valid_votes(logged: list[EventBase]):
    decisions = [e for e in logged if isinstance(e, CommitteeDecided)]
    assert {d.data.decision for d in decisions} == set(Decision)
    for d in decisions:
        data = d.data
        assert data.votes.for_ + data.votes.against + data.votes.abstain == data.members_present
        assert data.residents_present * 2 > data.members_present
        assert (data.amount_approved_cents > 0) == (data.decision is Decision.approved)


def test_the_working_set_does_not_grow_with_n():
    """At a capped daily rate, three times the events take three times as long, with the
    same pool of open workflows."""
    small = Simulation(10_000, seed=3, span_days=100, max_events_per_day=30)
    for _ in small.events():
        pass
    large = Simulation(30_000, seed=3, span_days=100, max_events_per_day=30)
    for _ in large.events():
        pass
    assert large.stats.max_open_projects <= 1.3 * small.stats.max_open_projects
    assert large.stats.max_pending_actions <= 1.3 * small.stats.max_pending_actions
    assert large.stats.last_occurred_at and small.stats.last_occurred_at
    assert large.stats.last_occurred_at - small.stats.last_occurred_at > timedelta(days=365)
