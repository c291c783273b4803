"""The project workflow of CONTRACT 1.3, pure: state + event -> refusals, or the next state.

The whole workflow is the table ``TRANSITIONS`` below: for each event (and, for a
committee decision, its outcome) the states it may happen in and the state it
leads to. ``decide`` adds the guards that need more than the state (envies,
porteurs, partner, committee rule, amounts); ``evolve`` applies an event.

    (none)      --ProjectAccompanied-->        accompanied
    accompanied --ProjectSubmitted-->          submitted
    submitted   --CommitteeDecided(deferred)-> submitted
    submitted   --CommitteeDecided(rejected)-> rejected  --ProjectSubmitted--> submitted
    submitted   --CommitteeDecided(approved)-> approved  --GrantAwarded-->     funded
    approved    --GrantRefused-->              refused   --ProjectSubmitted--> submitted
    funded      --ProjectCompleted-->          completed --ProjectCompleted--> completed
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

from shared.codec import FieldError
from shared.events import (
    RETRACTING_REASONS,
    CommitteeDecided,
    CommitteeDecidedData,
    EventBase,
    GrantAwarded,
    GrantRefused,
    ImpactAssessed,
    MobilisationRecorded,
    ProjectAccompanied,
    ProjectCompleted,
    ProjectSubmitted,
)


class State(StrEnum):
    accompanied = "accompanied"
    submitted = "submitted"
    approved = "approved"
    rejected = "rejected"
    funded = "funded"
    refused = "refused"
    completed = "completed"


NEW = None  # the state of a project that does not exist yet
S = State

BEFORE_COMPLETED = (NEW, S.accompanied, S.submitted, S.approved, S.rejected, S.funded, S.refused)

TRANSITIONS: dict[str, tuple[tuple[State | None, ...], State | None]] = {
    # step: (states it may happen in, state it leads to; None = unchanged)
    "ProjectAccompanied": (BEFORE_COMPLETED, None),
    "ProjectSubmitted": ((S.accompanied, S.rejected, S.refused), S.submitted),
    "CommitteeDecided:deferred": ((S.submitted,), S.submitted),
    "CommitteeDecided:rejected": ((S.submitted,), S.rejected),
    "CommitteeDecided:approved": ((S.submitted,), S.approved),
    "GrantAwarded": ((S.approved,), S.funded),
    "GrantRefused": ((S.approved,), S.refused),
    "ProjectCompleted": ((S.funded, S.completed), S.completed),
    "ImpactAssessed": ((S.funded, S.completed), None),
    "MobilisationRecorded": ((S.funded, S.completed), None),
}


def step_of(event: EventBase) -> str:
    if isinstance(event, CommitteeDecided):
        return f"CommitteeDecided:{event.data.decision.value}"
    return event.type


@dataclass(frozen=True)
class Project:
    """What review knows of a project, from the log."""

    project_id: str
    quartier: str
    state: State
    envie_ids: frozenset[str] = frozenset()
    porteur_ids: frozenset[str] = frozenset()
    amount_requested_cents: int | None = None


@dataclass(frozen=True)
class EnvieView:
    envie_id: str
    quartier: str
    closed_reason: str | None


CommitteeRule = Callable[[CommitteeDecidedData], bool]


def residents_majority(data: CommitteeDecidedData) -> bool:
    """The default committee rule: residents are a majority of the members present."""
    return data.residents_present * 2 > data.members_present


COMMITTEE_RULES: dict[str, tuple[CommitteeRule, str]] = {
    "residents_majority": (residents_majority, "residents_present * 2 > members_present"),
    "residents_at_least_half": (
        lambda d: d.residents_present * 2 >= d.members_present,
        "residents_present * 2 >= members_present",
    ),
    "residents_at_least_one": (lambda d: d.residents_present >= 1, "residents_present >= 1"),
    "none": (lambda d: True, "no rule"),
}
"""The committee rules a deployment may choose (``FPH_REVIEW_COMMITTEE_RULE``)."""


@dataclass(frozen=True)
class World:
    """Everything a decision on one project may look at."""

    project: Project | None
    envies: Mapping[str, EnvieView] = field(default_factory=dict)
    registered_porteurs: frozenset[str] = frozenset()
    partners: frozenset[str] = frozenset()
    committee_rule: CommitteeRule = residents_majority
    committee_rule_text: str = "residents_present * 2 > members_present"


def decide(event: EventBase, world: World) -> list[FieldError]:
    """Every reason to refuse ``event`` on the project as ``world`` describes it."""
    project = world.project
    errors: list[FieldError] = []
    state = project.state if project else NEW
    allowed, _ = TRANSITIONS[step_of(event)]
    if state not in allowed:
        errors.append(_wrong_state(event, state, allowed))
    if project is not None and event.quartier != project.quartier:
        errors.append(
            FieldError(
                "quartier",
                f"project {project.project_id!r} belongs to quartier {project.quartier}",
                "wrong_quartier",
            )
        )
    if isinstance(event, ProjectAccompanied):
        errors += _accompany_guards(event, world)
    elif isinstance(event, CommitteeDecided):
        errors += _decision_guards(event, world)
    return errors


def _wrong_state(
    event: EventBase, state: State | None, allowed: tuple[State | None, ...]
) -> FieldError:
    where = "does not exist" if state is NEW else f"is {state.value}"
    wanted = ", ".join("new" if s is NEW else s.value for s in allowed)
    return FieldError(
        "aggregate_id",
        f"{step_of(event).replace(':', ' ')} is not possible: project {event.aggregate_id!r}"
        f" {where} (possible when: {wanted})",
        "wrong_state",
    )


def _accompany_guards(event: ProjectAccompanied, world: World) -> list[FieldError]:
    errors: list[FieldError] = []
    d = event.data
    for i, envie_id in enumerate(d.envie_ids):
        envie = world.envies.get(envie_id)
        where = f"data.envie_ids.{i}"
        if envie is None:
            errors.append(FieldError(where, f"unknown envie {envie_id!r}", "unknown_envie"))
            continue
        if envie.quartier != event.quartier:
            errors.append(
                FieldError(
                    where,
                    f"envie {envie_id!r} is in quartier {envie.quartier}, not {event.quartier}",
                    "wrong_quartier",
                )
            )
        if envie.closed_reason in RETRACTING_REASONS:
            errors.append(
                FieldError(
                    where,
                    f"envie {envie_id!r} was closed as {envie.closed_reason}: it does not count",
                    "envie_retracted",
                )
            )
    for i, porteur_id in enumerate(d.porteur_ids):
        if porteur_id not in world.registered_porteurs:
            errors.append(
                FieldError(
                    f"data.porteur_ids.{i}",
                    f"porteur {porteur_id!r} is not registered: register them first",
                    "unknown_porteur",
                )
            )
    if d.partner not in world.partners:
        errors.append(
            FieldError(
                "data.partner",
                f"unknown partner {d.partner!r}; configured: " + ", ".join(sorted(world.partners)),
                "unknown_partner",
            )
        )
    return errors


def _decision_guards(event: CommitteeDecided, world: World) -> list[FieldError]:
    errors: list[FieldError] = []
    d = event.data
    if not world.committee_rule(d):
        errors.append(
            FieldError(
                "data.residents_present",
                f"the committee rule ({world.committee_rule_text}) does not hold with"
                f" {d.residents_present} residents of {d.members_present} members present",
                "committee_rule",
            )
        )
    requested = world.project.amount_requested_cents if world.project else None
    if requested is not None and d.amount_approved_cents > requested:
        errors.append(
            FieldError(
                "data.amount_approved_cents",
                f"{d.amount_approved_cents} cents is more than the {requested} cents requested",
                "above_requested",
            )
        )
    return errors


def evolve(project: Project | None, event: EventBase) -> Project | None:
    """The project after ``event`` (events of the workflow only; others leave it as is)."""
    if isinstance(event, (GrantAwarded, GrantRefused)):
        if project is None:
            return None
        return replace(project, state=S.funded if isinstance(event, GrantAwarded) else S.refused)
    step = step_of(event)
    if step not in TRANSITIONS:
        return project
    _, target = TRANSITIONS[step]
    if isinstance(event, ProjectAccompanied):
        if project is None:
            project = Project(event.aggregate_id, event.quartier, S.accompanied)
        return replace(
            project,
            envie_ids=project.envie_ids | set(event.data.envie_ids),
            porteur_ids=project.porteur_ids | set(event.data.porteur_ids),
        )
    if project is None:
        return None  # the log never holds this: review refused it
    if isinstance(event, ProjectSubmitted):
        project = replace(project, amount_requested_cents=event.data.amount_requested_cents)
    if (
        isinstance(event, (ProjectCompleted, ImpactAssessed, MobilisationRecorded))
        and target is None
    ):
        return project
    return replace(project, state=target) if target is not None else project
