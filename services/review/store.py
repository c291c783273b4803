"""Review's database: read models of projects (and of the envies, porteurs and grants
they depend on) and every project's timeline, all rebuilt from the log."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.review import domain
from services.review.settings import ReviewSettings
from shared.codec import FieldError
from shared.events import (
    CommitteeDecided,
    EnvieClosed,
    EnvieRecorded,
    EventBase,
    GrantAwarded,
    GrantPaid,
    GrantRefused,
    GrantSettled,
    PorteurRegistered,
    ProjectAccompanied,
    event_to_dict,
    types_owned_by,
)
from shared.store import metadata

envies = sa.Table(
    "review_envies",
    metadata,
    sa.Column("envie_id", sa.String(128), primary_key=True),
    sa.Column("quartier", sa.String(128), nullable=False),
    sa.Column("closed_reason", sa.String(32)),
)

porteurs = sa.Table(
    "review_porteurs",
    metadata,
    sa.Column("porteur_id", sa.String(128), primary_key=True),
    sa.Column("quartier", sa.String(128), nullable=False),
)

projects = sa.Table(
    "review_projects",
    metadata,
    sa.Column("project_id", sa.String(128), primary_key=True),
    sa.Column("quartier", sa.String(128), nullable=False, index=True),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("title", sa.String(300), nullable=False),
    sa.Column("partner", sa.String(128), nullable=False),
    sa.Column("stage", sa.String(16), nullable=False),
    sa.Column("envie_ids", sa.Text, nullable=False),
    sa.Column("porteur_ids", sa.Text, nullable=False),
    sa.Column("amount_requested_cents", sa.BigInteger),
    sa.Column("amount_approved_cents", sa.BigInteger),
    sa.Column("grant_id", sa.String(128)),
    sa.Column("first_seq", sa.BigInteger, nullable=False),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)

grants = sa.Table(
    "review_grants",
    metadata,
    sa.Column("grant_id", sa.String(128), primary_key=True),
    sa.Column("project_id", sa.String(128), nullable=False, index=True),
    sa.Column("amount_cents", sa.BigInteger, nullable=False),
)

timeline = sa.Table(
    "review_timeline",
    metadata,
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("source", sa.String(128)),
    sa.Column("occurred_at", sa.String(40), nullable=False),
    sa.Column("project_id", sa.String(128), index=True),
    sa.Column("envie_id", sa.String(128), index=True),
    sa.Column("body", sa.Text, nullable=False),
)


# --- reading state ------------------------------------------------------------


def oldest_undecided(session: Session) -> dict[str, datetime]:
    """Per quartier, the earliest latest-submission time of the projects in state
    ``submitted`` (waiting for, or deferred by, the committee)."""
    query = sa.select(projects.c.project_id, projects.c.quartier).where(
        projects.c.state == "submitted"
    )
    waiting: dict[str, str] = {p: q for p, q in session.execute(query)}
    if not waiting:
        return {}
    latest: dict[str, tuple[int, str]] = {}
    for seq, project_id, occurred_at in session.execute(
        sa.select(timeline.c.seq, timeline.c.project_id, timeline.c.occurred_at).where(
            timeline.c.type == "ProjectSubmitted",
            timeline.c.project_id.in_(sorted(waiting)),
        )
    ):
        if project_id not in latest or seq > latest[project_id][0]:
            latest[project_id] = (int(seq), occurred_at)
    oldest: dict[str, datetime] = {}
    for project_id, (_, occurred_at) in latest.items():
        since = datetime.fromisoformat(occurred_at)
        if since.tzinfo is None:  # stored without offset: UTC
            since = since.replace(tzinfo=UTC)
        quartier = waiting[project_id]
        if quartier not in oldest or since < oldest[quartier]:
            oldest[quartier] = since
    return oldest


def _project_from_row(row: Any) -> domain.Project:
    return domain.Project(
        project_id=row.project_id,
        quartier=row.quartier,
        state=domain.State(row.state),
        envie_ids=frozenset(json.loads(row.envie_ids)),
        porteur_ids=frozenset(json.loads(row.porteur_ids)),
        amount_requested_cents=row.amount_requested_cents,
    )


def load_projects(session: Session, ids: Iterable[str]) -> dict[str, domain.Project]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = session.execute(sa.select(projects).where(projects.c.project_id.in_(wanted)))
    return {r.project_id: _project_from_row(r) for r in rows}


def load_envies(session: Session, ids: Iterable[str]) -> dict[str, domain.EnvieView]:
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = session.execute(sa.select(envies).where(envies.c.envie_id.in_(wanted)))
    return {r.envie_id: domain.EnvieView(r.envie_id, r.quartier, r.closed_reason) for r in rows}


def load_porteurs(session: Session, ids: Iterable[str]) -> set[str]:
    wanted = list(set(ids))
    if not wanted:
        return set()
    rows = session.execute(
        sa.select(porteurs.c.porteur_id).where(porteurs.c.porteur_id.in_(wanted))
    )
    return {r.porteur_id for r in rows}


@dataclass
class View:
    """The projects, envies and porteurs a batch of submissions touches."""

    projects: dict[str, domain.Project] = field(default_factory=dict)
    envies: dict[str, domain.EnvieView] = field(default_factory=dict)
    porteurs: set[str] = field(default_factory=set)


# --- the model plugged into the shared follower and inbox -------------------------

FOLLOWED = frozenset(
    [
        *types_owned_by("review"),
        *("EnvieRecorded", "EnvieClosed", "PorteurRegistered"),
        *("GrantAwarded", "GrantRefused", "GrantPaid", "GrantSettled"),
    ]
)


class ReviewModel:
    """Review's read models and decisions (the workflow lives in ``domain``)."""

    followed_types = FOLLOWED

    def __init__(self, settings: ReviewSettings) -> None:
        rule, text = domain.COMMITTEE_RULES[settings.review_committee_rule]
        self.partners = frozenset(settings.partners)
        self.rule, self.rule_text = rule, text

    def load(self, session: Session, events: Sequence[EventBase]) -> View:
        envie_ids = [
            i for e in events if isinstance(e, ProjectAccompanied) for i in e.data.envie_ids
        ]
        porteur_ids = [
            i for e in events if isinstance(e, ProjectAccompanied) for i in e.data.porteur_ids
        ]
        return View(
            load_projects(session, (e.aggregate_id for e in events)),
            load_envies(session, envie_ids),
            load_porteurs(session, porteur_ids),
        )

    def decide(self, view: View, event: EventBase) -> list[FieldError]:
        world = domain.World(
            project=view.projects.get(event.aggregate_id),
            envies=view.envies,
            registered_porteurs=frozenset(view.porteurs),
            partners=self.partners,
            committee_rule=self.rule,
            committee_rule_text=self.rule_text,
        )
        return domain.decide(event, world)

    def note(self, view: View, event: EventBase) -> None:
        project = domain.evolve(view.projects.get(event.aggregate_id), event)
        if project is not None:
            view.projects[event.aggregate_id] = project

    def apply(self, session: Session, events: Sequence[tuple[EventBase, int]]) -> None:
        for event, seq in events:
            apply_one(session, event, seq)


def apply_one(session: Session, event: EventBase, seq: int) -> None:
    """Project one event into review's read models and the timeline."""
    project_id: str | None = None
    envie_id: str | None = None
    if isinstance(event, EnvieRecorded):
        envie_id = event.aggregate_id
        if not load_envies(session, [envie_id]):
            session.execute(envies.insert().values(envie_id=envie_id, quartier=event.quartier))
    elif isinstance(event, EnvieClosed):
        envie_id = event.aggregate_id
        session.execute(
            envies.update()
            .where(envies.c.envie_id == envie_id)
            .values(closed_reason=event.data.reason.value)
        )
    elif isinstance(event, PorteurRegistered):
        if not load_porteurs(session, [event.aggregate_id]):
            session.execute(
                porteurs.insert().values(porteur_id=event.aggregate_id, quartier=event.quartier)
            )
        return  # porteurs have no timeline of their own
    elif isinstance(event, (GrantAwarded, GrantRefused)):
        project_id = event.data.project_id
        _evolve_project(session, project_id, event, seq)
        if isinstance(event, GrantAwarded):
            session.execute(
                grants.insert().values(
                    grant_id=event.data.grant_id,
                    project_id=project_id,
                    amount_cents=event.data.amount_cents,
                )
            )
            session.execute(
                projects.update()
                .where(projects.c.project_id == project_id)
                .values(grant_id=event.data.grant_id)
            )
    elif isinstance(event, (GrantPaid, GrantSettled)):
        project_id = session.scalar(
            sa.select(grants.c.project_id).where(grants.c.grant_id == event.data.grant_id)
        )
    else:
        project_id = event.aggregate_id
        _evolve_project(session, project_id, event, seq)
    session.execute(
        timeline.insert().values(
            seq=seq,
            event_id=str(event.event_id),
            type=event.type,
            source=event.source,
            occurred_at=event.occurred_at.isoformat(),
            project_id=project_id,
            envie_id=envie_id,
            body=json.dumps(event_to_dict(event), ensure_ascii=False),
        )
    )


def _evolve_project(session: Session, project_id: str, event: EventBase, seq: int) -> None:
    before = load_projects(session, [project_id]).get(project_id)
    after = domain.evolve(before, event)
    if after is None:
        return
    values: dict[str, Any] = {
        "state": after.state.value,
        "envie_ids": json.dumps(sorted(after.envie_ids)),
        "porteur_ids": json.dumps(sorted(after.porteur_ids)),
        "amount_requested_cents": after.amount_requested_cents,
        "last_seq": seq,
    }
    if isinstance(event, ProjectAccompanied):
        values.update(
            title=event.data.title, partner=event.data.partner, stage=event.data.stage.value
        )
    if isinstance(event, CommitteeDecided):
        values["amount_approved_cents"] = event.data.amount_approved_cents
    if before is None:
        session.execute(
            projects.insert().values(
                project_id=project_id, quartier=after.quartier, first_seq=seq, **values
            )
        )
    else:
        session.execute(
            projects.update().where(projects.c.project_id == project_id).values(**values)
        )


# --- queries for the API ----------------------------------------------------------


def project_json(row: Any) -> dict[str, Any]:
    return {
        "project_id": row.project_id,
        "quartier": row.quartier,
        "state": row.state,
        "title": row.title,
        "partner": row.partner,
        "stage": row.stage,
        "envie_ids": json.loads(row.envie_ids),
        "porteur_ids": json.loads(row.porteur_ids),
        "amount_requested_cents": row.amount_requested_cents,
        "amount_approved_cents": row.amount_approved_cents,
        "grant_id": row.grant_id,
        "first_seq": row.first_seq,
        "last_seq": row.last_seq,
    }


def project_timeline(
    session: Session, project_id: str, envie_ids: list[str]
) -> list[dict[str, Any]]:
    """Every event of the project, of its envies and of its grant, in log order."""
    cond = timeline.c.project_id == project_id
    if envie_ids:
        cond = sa.or_(cond, timeline.c.envie_id.in_(envie_ids))
    rows = session.execute(sa.select(timeline).where(cond).order_by(timeline.c.seq))
    return [
        {
            "seq": r.seq,
            "event_id": r.event_id,
            "type": r.type,
            "source": r.source,
            "occurred_at": r.occurred_at,
            "event": json.loads(r.body),
        }
        for r in rows
    ]
