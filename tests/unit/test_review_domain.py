"""The project workflow of CONTRACT 1.3 and review's guards (``services.review.domain``), pure."""

from __future__ import annotations

import typing
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from services.review import domain
from services.review.domain import (
    COMMITTEE_RULES,
    NEW,
    TRANSITIONS,
    EnvieView,
    Project,
    State,
    World,
    decide,
    evolve,
    step_of,
)
from services.review.settings import CommitteeRuleName, ReviewSettings
from services.review.store import ReviewModel, View
from shared.codec import FieldError, InvalidEvent, event_from_dict
from shared.events import EventBase
from tests import factories
from tests.factories import Q1, Q2

S = State
PID = "p-42"
ENVELOPE = "FPH-2026-QN09301M"
ALL_STATES: tuple[State | None, ...] = (NEW, *State)
BEFORE_COMPLETED = tuple(s for s in ALL_STATES if s is not S.completed)

# CONTRACT 1.3, written out independently of the implementation:
# step -> (states it may happen in, state it leads to; None = unchanged).
CONTRACT_WORKFLOW: dict[str, tuple[frozenset[State | None], State | None]] = {
    "ProjectAccompanied": (frozenset(BEFORE_COMPLETED), None),
    "ProjectSubmitted": (frozenset({S.accompanied, S.rejected, S.refused}), S.submitted),
    "CommitteeDecided:deferred": (frozenset({S.submitted}), S.submitted),
    "CommitteeDecided:rejected": (frozenset({S.submitted}), S.rejected),
    "CommitteeDecided:approved": (frozenset({S.submitted}), S.approved),
    "GrantAwarded": (frozenset({S.approved}), S.funded),
    "GrantRefused": (frozenset({S.approved}), S.refused),
    "ProjectCompleted": (frozenset({S.funded, S.completed}), S.completed),
    "ImpactAssessed": (frozenset({S.funded, S.completed}), None),
    "MobilisationRecorded": (frozenset({S.funded, S.completed}), None),
}

DECISION_DATA: dict[str, dict[str, Any]] = {
    "approved": {},  # the factory's default: 50000 cents, 4 residents of 7 members
    "rejected": {"decision": "rejected", "amount_approved_cents": 0},
    "deferred": {"decision": "deferred", "amount_approved_cents": 0},
}


def ev(event_type: str, **fields: Any) -> EventBase:
    """A valid event of ``event_type`` on project ``PID`` (funding's on its envelope)."""
    if event_type in ("GrantAwarded", "GrantRefused"):
        fields.setdefault("aggregate_id", ENVELOPE)
        fields["data"] = {"project_id": PID, **fields.get("data", {})}
    fields.setdefault("aggregate_id", PID)
    return event_from_dict(factories.submission(event_type, **fields))


def event_for(step: str, **fields: Any) -> EventBase:
    if step.startswith("CommitteeDecided:"):
        decision = step.split(":")[1]
        data = {**DECISION_DATA[decision], **fields.pop("data", {})}
        return ev("CommitteeDecided", data=data, **fields)
    return ev(step, **fields)


def project_in(state: State | None, **fields: Any) -> Project | None:
    """A project of ``Q1`` in ``state``; it asked for 80000 cents once submitted."""
    if state is NEW:
        return None
    requested = None if state is S.accompanied else 80000
    values: dict[str, Any] = {
        "envie_ids": frozenset({"e1"}),
        "porteur_ids": frozenset({"po1"}),
        "amount_requested_cents": requested,
        **fields,
    }
    return Project(PID, Q1, state, **values)


ENVIES = {
    "e1": EnvieView("e1", Q1, None),
    "e2": EnvieView("e2", Q1, "withdrawn"),
    "e-q2": EnvieView("e-q2", Q2, None),
    "e-dup": EnvieView("e-dup", Q1, "duplicate"),
    "e-err": EnvieView("e-err", Q1, "entered_in_error"),
    "e-redir": EnvieView("e-redir", Q1, "redirected"),
    "e-out": EnvieView("e-out", Q1, "out_of_scope"),
}


def world(project: Project | None, **fields: Any) -> World:
    values: dict[str, Any] = {
        "envies": ENVIES,
        "registered_porteurs": frozenset({"po1", "po2"}),
        "partners": frozenset({"cs-nord", "conseil-citoyen"}),
        **fields,
    }
    return World(project, **values)


def codes(errors: list[FieldError]) -> list[tuple[str, str]]:
    return [(e.field, e.code) for e in errors]


# --- the table ------------------------------------------------------------------


def test_the_transition_table_is_the_contracts():
    assert set(TRANSITIONS) == set(CONTRACT_WORKFLOW)
    for step, (allowed, target) in TRANSITIONS.items():
        assert (frozenset(allowed), target) == CONTRACT_WORKFLOW[step], step


def test_step_of_names_the_decision():
    assert step_of(event_for("CommitteeDecided:deferred")) == "CommitteeDecided:deferred"
    assert step_of(ev("ProjectSubmitted")) == "ProjectSubmitted"


ALLOWED = [
    (step, state)
    for step, (allowed, _) in CONTRACT_WORKFLOW.items()
    for state in ALL_STATES
    if state in allowed
]
REFUSED = [
    (step, state)
    for step, (allowed, _) in CONTRACT_WORKFLOW.items()
    for state in ALL_STATES
    if state not in allowed
]


def _id(value: object) -> str:
    return "new" if value is None else str(value)


@pytest.mark.parametrize(("step", "state"), ALLOWED, ids=_id)
def test_every_allowed_transition_is_accepted_and_leads_where_the_contract_says(
    step: str, state: State | None
):
    event = event_for(step)
    project = project_in(state)
    assert decide(event, world(project)) == []
    after = evolve(project, event)
    assert after is not None
    _, target = CONTRACT_WORKFLOW[step]
    expected = target or (S.accompanied if state is NEW else state)
    assert after.state is expected
    assert (after.project_id, after.quartier) == (PID, Q1)


@pytest.mark.parametrize(("step", "state"), REFUSED, ids=_id)
def test_every_other_transition_is_refused_with_one_wrong_state(step: str, state: State | None):
    event = event_for(step)
    errors = decide(event, world(project_in(state)))
    assert codes(errors) == [("aggregate_id", "wrong_state")]
    message = errors[0].message
    assert ("does not exist" if state is NEW else f"is {state}") in message
    allowed, _ = CONTRACT_WORKFLOW[step]
    for wanted in allowed:
        assert ("new" if wanted is NEW else str(wanted)) in message


# --- whole paths -----------------------------------------------------------------


def _walk(events: list[EventBase], w: World | None = None) -> list[State]:
    """Decide then evolve each event in turn (each must be accepted); the states passed."""
    project: Project | None = None
    states = []
    for event in events:
        errors = decide(event, replace(w or world(None), project=project))
        assert errors == [], (event.type, errors)
        project = evolve(project, event)
        assert project is not None
        states.append(project.state)
    return states


def test_the_full_path_from_accompaniment_to_a_superseding_completion():
    path = [
        ev("ProjectAccompanied"),
        ev("ProjectSubmitted"),
        event_for("CommitteeDecided:deferred"),
        event_for("CommitteeDecided:approved"),
        ev("GrantAwarded"),
        ev("MobilisationRecorded"),
        ev("ProjectCompleted", data={"outcome": "partial", "participants": 10}),
        ev("ImpactAssessed"),
        ev("ProjectCompleted", data={"outcome": "achieved", "participants": 35}),
    ]
    assert _walk(path) == [
        S.accompanied,
        S.submitted,
        S.submitted,
        S.approved,
        S.funded,
        S.funded,
        S.completed,
        S.completed,
        S.completed,
    ]


def test_a_rejected_or_refused_project_can_be_submitted_again():
    path = [
        ev("ProjectAccompanied"),
        ev("ProjectSubmitted"),
        event_for("CommitteeDecided:rejected"),
        ev("ProjectSubmitted"),
        event_for("CommitteeDecided:approved"),
        ev("GrantRefused"),
        ev("ProjectSubmitted", data={"amount_requested_cents": 60000}),
        event_for("CommitteeDecided:approved", data={"amount_approved_cents": 60000}),
        ev("GrantAwarded"),
    ]
    assert _walk(path) == [
        S.accompanied,
        S.submitted,
        S.rejected,
        S.submitted,
        S.approved,
        S.refused,
        S.submitted,
        S.approved,
        S.funded,
    ]


def test_the_latest_submission_sets_the_amount_a_decision_is_held_to():
    project = project_in(S.refused)
    project = evolve(project, ev("ProjectSubmitted", data={"amount_requested_cents": 30000}))
    assert project is not None and project.amount_requested_cents == 30000
    decision = event_for("CommitteeDecided:approved", data={"amount_approved_cents": 50000})
    assert codes(decide(decision, world(project))) == [
        ("data.amount_approved_cents", "above_requested")
    ]


def test_accompanying_again_adds_envies_and_porteurs_and_keeps_the_state():
    for state in (S.accompanied, S.submitted, S.approved, S.funded, S.rejected, S.refused):
        project = project_in(state)
        more = ev(
            "ProjectAccompanied",
            data={"envie_ids": ["e2"], "porteur_ids": ["po2"], "stage": "montage"},
        )
        assert decide(more, world(project)) == []
        after = evolve(project, more)
        assert after is not None
        assert after.state is state
        assert after.envie_ids == {"e1", "e2"} and after.porteur_ids == {"po1", "po2"}
        assert project is not None
        assert after.amount_requested_cents == project.amount_requested_cents


def test_a_first_accompaniment_creates_the_project_in_its_quartier():
    event = ev("ProjectAccompanied", quartier=Q2, data={"envie_ids": ["e-q2"]})
    assert decide(event, world(None)) == []
    assert evolve(None, event) == Project(
        PID, Q2, S.accompanied, frozenset({"e-q2"}), frozenset({"po1"}), None
    )


def test_events_on_an_unknown_project_or_not_of_the_workflow_leave_nothing():
    assert evolve(None, ev("ProjectSubmitted")) is None
    assert evolve(None, ev("GrantAwarded")) is None
    project = project_in(S.funded)
    assert evolve(project, ev("EnvieRecorded")) is project
    assert evolve(project, ev("GrantPaid", aggregate_id=ENVELOPE)) is project


# --- the guards ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("envie_ids", "expected"),
    [
        (["e1", "missing"], [("data.envie_ids.1", "unknown_envie")]),
        (["e-q2"], [("data.envie_ids.0", "wrong_quartier")]),
        (["e1", "e-dup"], [("data.envie_ids.1", "envie_retracted")]),
        (["e-err"], [("data.envie_ids.0", "envie_retracted")]),
        (["e2", "e-redir", "e-out"], []),  # closed otherwise: still an envie that counts
    ],
)
def test_envies_must_exist_be_of_the_quartier_and_not_be_retracted(
    envie_ids: list[str], expected: list[tuple[str, str]]
):
    for state in (NEW, S.accompanied):
        event = ev("ProjectAccompanied", data={"envie_ids": envie_ids})
        assert codes(decide(event, world(project_in(state)))) == expected


def test_the_envie_messages_say_which_envie_and_why():
    event = ev("ProjectAccompanied", data={"envie_ids": ["missing", "e-q2", "e-dup"]})
    messages = [e.message for e in decide(event, world(None))]
    assert "'missing'" in messages[0]
    assert "'e-q2'" in messages[1] and Q2 in messages[1]
    assert "'e-dup'" in messages[2] and "duplicate" in messages[2]


def test_porteurs_must_be_registered():
    event = ev("ProjectAccompanied", data={"porteur_ids": ["po1", "ghost", "po2", "nobody"]})
    errors = decide(event, world(None))
    assert codes(errors) == [
        ("data.porteur_ids.1", "unknown_porteur"),
        ("data.porteur_ids.3", "unknown_porteur"),
    ]
    assert "'ghost'" in errors[0].message


def test_the_partner_must_be_configured():
    event = ev("ProjectAccompanied", data={"partner": "asso-inconnue"})
    errors = decide(event, world(None))
    assert codes(errors) == [("data.partner", "unknown_partner")]
    assert "'asso-inconnue'" in errors[0].message and "cs-nord" in errors[0].message
    assert decide(ev("ProjectAccompanied", data={"partner": "conseil-citoyen"}), world(None)) == []


@pytest.mark.parametrize(
    "step",
    [
        "ProjectAccompanied",
        "ProjectSubmitted",
        "CommitteeDecided:approved",
        "ProjectCompleted",
        "ImpactAssessed",
        "MobilisationRecorded",
    ],
)
def test_an_event_must_be_in_the_projects_quartier(step: str):
    allowed, _ = CONTRACT_WORKFLOW[step]
    state = next(s for s in ALL_STATES if s in allowed and s is not NEW)
    data = {"envie_ids": ["e-q2"]} if step == "ProjectAccompanied" else {}
    event = event_for(step, quartier=Q2, data=data)
    errors = decide(event, world(project_in(state)))
    assert codes(errors) == [("quartier", "wrong_quartier")]
    assert Q1 in errors[0].message and PID in errors[0].message


def test_the_committee_rule_must_hold():
    # 3 residents of 7 members: not a residents' majority (the default rule).
    data = {"residents_present": 3}
    errors = decide(
        event_for("CommitteeDecided:approved", data=data), world(project_in(S.submitted))
    )
    assert codes(errors) == [("data.residents_present", "committee_rule")]
    assert "residents_present * 2 > members_present" in errors[0].message
    assert "3 residents of 7 members" in errors[0].message
    for step in ("CommitteeDecided:rejected", "CommitteeDecided:deferred"):
        errors = decide(event_for(step, data=data), world(project_in(S.submitted)))
        assert codes(errors) == [("data.residents_present", "committee_rule")], step


@pytest.mark.parametrize(("approved", "refused"), [(80000, False), (80001, True), (1, False)])
def test_the_approved_amount_is_at_most_the_requested_one(approved: int, refused: bool):
    decision = event_for("CommitteeDecided:approved", data={"amount_approved_cents": approved})
    errors = decide(decision, world(project_in(S.submitted)))
    assert codes(errors) == ([("data.amount_approved_cents", "above_requested")] if refused else [])
    if refused:
        assert "80001" in errors[0].message and "80000" in errors[0].message


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"votes": {"for": 5, "against": 1, "abstain": 0}}, "data.votes"),
        ({"votes": {"for": 6, "against": 1, "abstain": 1}}, "data.votes"),
        ({"residents_present": 8}, "data.residents_present"),
        ({"amount_approved_cents": 0}, "data.amount_approved_cents"),
        ({"decision": "rejected"}, "data.amount_approved_cents"),  # 50000 cents unless approved
        ({"decision": "deferred", "amount_approved_cents": 1}, "data.amount_approved_cents"),
    ],
)
def test_the_decisions_own_consistency_is_the_schemas(data: dict[str, Any], field: str):
    with pytest.raises(InvalidEvent) as caught:
        event_from_dict(factories.submission("CommitteeDecided", data=data))
    assert codes(caught.value.errors) == [(field, "rule")]


def test_every_reason_is_reported_together():
    # A completed project of Q1, accompanied again from Q2 with every mistake at once.
    event = ev(
        "ProjectAccompanied",
        quartier=Q2,
        data={
            "envie_ids": ["e-q2", "e1", "missing", "e-dup"],
            "porteur_ids": ["po1", "ghost"],
            "partner": "nobody",
        },
    )
    assert codes(decide(event, world(project_in(S.completed)))) == [
        ("aggregate_id", "wrong_state"),
        ("quartier", "wrong_quartier"),
        ("data.envie_ids.1", "wrong_quartier"),
        ("data.envie_ids.2", "unknown_envie"),
        ("data.envie_ids.3", "wrong_quartier"),
        ("data.envie_ids.3", "envie_retracted"),
        ("data.porteur_ids.1", "unknown_porteur"),
        ("data.partner", "unknown_partner"),
    ]
    decision = event_for(
        "CommitteeDecided:approved",
        quartier=Q2,
        data={"amount_approved_cents": 90000, "residents_present": 2},
    )
    assert codes(decide(decision, world(project_in(S.submitted)))) == [
        ("quartier", "wrong_quartier"),
        ("data.residents_present", "committee_rule"),
        ("data.amount_approved_cents", "above_requested"),
    ]
    assert codes(decide(decision, world(project_in(S.funded)))) == [
        ("aggregate_id", "wrong_state"),
        ("quartier", "wrong_quartier"),
        ("data.residents_present", "committee_rule"),
        ("data.amount_approved_cents", "above_requested"),
    ]


# --- committee rules --------------------------------------------------------------


def _decision(members: int, residents: int) -> EventBase:
    return event_for(
        "CommitteeDecided:approved",
        data={
            "votes": {"for": members, "against": 0, "abstain": 0},
            "members_present": members,
            "residents_present": residents,
        },
    )


@pytest.mark.parametrize(
    ("rule", "members", "residents", "holds"),
    [
        ("residents_majority", 7, 4, True),
        ("residents_majority", 6, 3, False),
        ("residents_majority", 1, 0, False),
        ("residents_majority", 1, 1, True),
        ("residents_at_least_half", 6, 3, True),
        ("residents_at_least_half", 7, 3, False),
        ("residents_at_least_one", 9, 1, True),
        ("residents_at_least_one", 9, 0, False),
        ("none", 5, 0, True),
    ],
)
def test_committee_rules(rule: str, members: int, residents: int, holds: bool):
    check, text = COMMITTEE_RULES[rule]
    event = _decision(members, residents)
    assert isinstance(event.data, domain.CommitteeDecidedData)
    assert check(event.data) is holds
    w = world(project_in(S.submitted), committee_rule=check, committee_rule_text=text)
    errors = decide(event, w)
    assert codes(errors) == ([] if holds else [("data.residents_present", "committee_rule")])
    if not holds:
        assert f"({text})" in errors[0].message


def test_the_default_rule_is_the_residents_majority():
    assert ReviewSettings().review_committee_rule == "residents_majority"
    assert World(None).committee_rule is domain.residents_majority
    assert COMMITTEE_RULES["residents_majority"][0] is domain.residents_majority


def test_the_rules_offered_are_the_rules_known():
    assert set(typing.get_args(CommitteeRuleName)) == set(COMMITTEE_RULES)


def test_the_configured_rule_and_partners_are_the_ones_review_decides_with(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("FPH_REVIEW_COMMITTEE_RULE", "residents_at_least_half")
    monkeypatch.setenv("FPH_PARTNERS", "cs-nord, asso-b")
    settings = ReviewSettings()
    assert settings.review_committee_rule == "residents_at_least_half"
    assert settings.partners == ["cs-nord", "asso-b"]
    model = ReviewModel(settings)
    view = View(projects={PID: project_in(S.submitted)})  # type: ignore[dict-item]
    assert model.decide(view, _decision(6, 3)) == []  # half is enough here
    assert codes(model.decide(view, _decision(7, 3))) == [
        ("data.residents_present", "committee_rule")
    ]
    strict = ReviewModel(
        ReviewSettings(review_committee_rule="residents_majority", partners=["cs-nord"])
    )
    assert codes(strict.decide(view, _decision(6, 3))) == [
        ("data.residents_present", "committee_rule")
    ]
    accompany = ev("ProjectAccompanied", data={"partner": "asso-b"})
    full_view = View(envies=dict(ENVIES), porteurs={"po1"})
    assert model.decide(full_view, accompany) == []
    assert codes(strict.decide(full_view, accompany)) == [("data.partner", "unknown_partner")]


def test_an_unknown_rule_name_is_refused_by_the_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FPH_REVIEW_COMMITTEE_RULE", "mayor_decides")
    with pytest.raises(ValidationError):
        ReviewSettings()


def test_note_keeps_a_batch_view_current():
    model = ReviewModel(ReviewSettings(partners="cs-nord"))  # type: ignore[arg-type]
    view = View(envies=dict(ENVIES), porteurs={"po1"})
    first = ev("ProjectAccompanied")
    assert model.decide(view, first) == []
    model.note(view, first)
    submitted = ev("ProjectSubmitted")
    assert model.decide(view, submitted) == []
    model.note(view, submitted)
    assert view.projects[PID].state is S.submitted
    assert codes(model.decide(view, ev("ProjectSubmitted"))) == [("aggregate_id", "wrong_state")]
