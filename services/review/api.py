"""The city desk's HTTP API for the project workflow (OpenAPI at ``/docs``).

Every write is submitted through the inbox as the desk's source
(``FPH_REVIEW_DESK_SOURCE``) and answers its receipt: 201 with the log ``seq``,
422 with every reason, 202 if not decided within 10 s.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from services.review import store
from services.review.domain import State
from services.review.settings import ReviewSettings
from shared.events import Decision, Mechanism, Outcome, Stage
from shared.http import (
    DeskWrite,
    Endpoint,
    new_event,
    runtime_of,
    submission_route,
    submit_for_http,
)
from shared.runtime import ServiceRuntime

router = APIRouter()


class Accompany(DeskWrite):
    """A partner starts accompanying a project born from envies."""

    quartier: str = Field(examples=["QN09301M"])
    title: str = Field(min_length=1, max_length=300, examples=["Jardin partagé des Tilleuls"])
    envie_ids: list[str] = Field(min_length=1)
    porteur_ids: list[str] = Field(min_length=1)
    partner: str = Field(examples=["centre-social-nord"])
    stage: Stage = Stage.emergence
    project_id: str | None = Field(default=None, description="New id if absent")


class AccompanyMore(DeskWrite):
    """Add envies or porteurs, or move the project to a new stage."""

    title: str | None = Field(default=None, min_length=1, max_length=300)
    envie_ids: list[str] = Field(min_length=1)
    porteur_ids: list[str] = Field(min_length=1)
    partner: str
    stage: Stage


class CoFunding(BaseModel):
    funder: str
    amount_cents: int = Field(gt=0)


class Submit(DeskWrite):
    amount_requested_cents: int = Field(gt=0, examples=[150000])
    expected_participants: int = Field(ge=1, examples=[40])
    co_funding: list[CoFunding] = Field(default_factory=list)


class Votes(BaseModel):
    for_: int = Field(alias="for", ge=0)
    against: int = Field(ge=0)
    abstain: int = Field(ge=0)


class Decide(DeskWrite):
    """The FPH committee's decision on a submitted project."""

    decision: Decision
    amount_approved_cents: int = Field(ge=0, description="> 0 when approved, else 0")
    votes: Votes
    members_present: int = Field(ge=1)
    residents_present: int = Field(ge=0)


class Complete(DeskWrite):
    outcome: Outcome
    participants: int = Field(ge=0)


class Impact(DeskWrite):
    scores: dict[Literal["1", "2", "3", "4", "5"], int] = Field(
        examples=[{"1": 0, "2": 1, "3": 4, "4": 10, "5": 7}]
    )


class Mobilisation(DeskWrite):
    mechanisms: list[Mechanism] = Field(min_length=1)


def _project(request: Request, project_id: str) -> dict[str, Any]:
    with Session(runtime_of(request).engine) as session:
        row = session.execute(
            sa.select(store.projects).where(store.projects.c.project_id == project_id)
        ).first()
    if row is None:
        raise HTTPException(
            404,
            {"errors": [{"field": "project_id", "message": f"unknown project {project_id!r}"}]},
        )
    return store.project_json(row)


async def _write(
    request: Request,
    event_type: str,
    project: dict[str, Any],
    data: dict[str, Any],
    body: DeskWrite,
) -> JSONResponse:
    event = new_event(
        event_type,
        project["quartier"],
        project["project_id"],
        data,
        body.occurred_at,
        body.event_id,
        correlation_id=_correlation(project["project_id"]),
    )
    return (await submit_for_http(runtime_of(request), event))[1]


def _correlation(project_id: str) -> str | None:
    try:
        return str(uuid.UUID(project_id))
    except ValueError:
        return None


def _post(path: str, name: str) -> Callable[[Endpoint], Endpoint]:
    return submission_route(router, path, name)


@_post("/projects", "ProjectAccompanied")
async def accompany(body: Accompany, request: Request) -> JSONResponse:
    """A partner accompanies a new project from one or more envies (ProjectAccompanied)."""
    project_id = body.project_id or str(uuid.uuid4())
    data = {
        "title": body.title,
        "envie_ids": body.envie_ids,
        "porteur_ids": body.porteur_ids,
        "partner": body.partner,
        "stage": body.stage.value,
    }
    project = {"project_id": project_id, "quartier": body.quartier}
    return await _write(request, "ProjectAccompanied", project, data, body)


@_post("/projects/{project_id}/accompaniments", "ProjectAccompanied")
async def accompany_more(project_id: str, body: AccompanyMore, request: Request) -> JSONResponse:
    """Add envies, porteurs or a new stage to an existing project."""
    project = _project(request, project_id)
    data = {
        "title": body.title or project["title"],
        "envie_ids": body.envie_ids,
        "porteur_ids": body.porteur_ids,
        "partner": body.partner,
        "stage": body.stage.value,
    }
    return await _write(request, "ProjectAccompanied", project, data, body)


@_post("/projects/{project_id}/submission", "ProjectSubmitted")
async def submit(project_id: str, body: Submit, request: Request) -> JSONResponse:
    """Submit the project to the FPH committee with its budget request."""
    data = {
        "amount_requested_cents": body.amount_requested_cents,
        "expected_participants": body.expected_participants,
        "co_funding": [c.model_dump() for c in body.co_funding],
    }
    return await _write(request, "ProjectSubmitted", _project(request, project_id), data, body)


@_post("/projects/{project_id}/decision", "CommitteeDecided")
async def decide(project_id: str, body: Decide, request: Request) -> JSONResponse:
    """Record the committee's decision (approved amounts are granted by funding)."""
    data = {
        "decision": body.decision.value,
        "amount_approved_cents": body.amount_approved_cents,
        "votes": body.votes.model_dump(by_alias=True),
        "members_present": body.members_present,
        "residents_present": body.residents_present,
    }
    return await _write(request, "CommitteeDecided", _project(request, project_id), data, body)


@_post("/projects/{project_id}/completion", "ProjectCompleted")
async def complete(project_id: str, body: Complete, request: Request) -> JSONResponse:
    """Record how a funded project ended; a later completion supersedes this one."""
    data = {"outcome": body.outcome.value, "participants": body.participants}
    return await _write(request, "ProjectCompleted", _project(request, project_id), data, body)


@_post("/projects/{project_id}/impact", "ImpactAssessed")
async def impact(project_id: str, body: Impact, request: Request) -> JSONResponse:
    """Participants' answers, level by level, to "this project improved life in my quartier"."""
    data = {"scores": dict(body.scores)}
    return await _write(request, "ImpactAssessed", _project(request, project_id), data, body)


@_post("/projects/{project_id}/mobilisation", "MobilisationRecorded")
async def mobilisation(project_id: str, body: Mobilisation, request: Request) -> JSONResponse:
    """The mechanisms that mobilised residents on the project."""
    data = {"mechanisms": [m.value for m in body.mechanisms]}
    return await _write(request, "MobilisationRecorded", _project(request, project_id), data, body)


@router.get("/projects")
def list_projects(
    request: Request,
    quartier: Annotated[str | None, Query(description="Quartier code; all if absent")] = None,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Projects by quartier and state, in the order they were first accompanied."""
    rt = runtime_of(request)
    if quartier is not None and quartier not in rt.settings.quartiers:
        raise HTTPException(
            422,
            {
                "errors": [
                    {
                        "field": "quartier",
                        "message": f"unknown quartier {quartier!r};"
                        " configured: " + ", ".join(rt.settings.quartiers),
                    }
                ]
            },
        )
    q = sa.select(store.projects).order_by(store.projects.c.first_seq)
    if quartier is not None:
        q = q.where(store.projects.c.quartier == quartier)
    if state is not None:
        q = q.where(store.projects.c.state == state.value)
    with Session(rt.engine) as session:
        rows = session.execute(q.limit(limit).offset(offset)).all()
    return {"projects": [store.project_json(r) for r in rows], "limit": limit, "offset": offset}


@router.get("/projects/{project_id}")
def get_project(project_id: str, request: Request) -> dict[str, Any]:
    """The project and its timeline: every event of the project, of its envies and of its
    grant, in log order, with seq and source — the path from envie to result."""
    project = _project(request, project_id)
    with Session(runtime_of(request).engine) as session:
        project["timeline"] = store.project_timeline(session, project_id, project["envie_ids"])
    return project


def refresh_project_gauge(rt: ServiceRuntime) -> None:
    """Projects by quartier and state, and the longest wait for a decision, read from the
    store at scrape time."""
    gauge = rt.metrics.projects
    gauge.clear()
    with Session(rt.engine) as session:
        rows = session.execute(
            sa.select(store.projects.c.quartier, store.projects.c.state, sa.func.count()).group_by(
                store.projects.c.quartier, store.projects.c.state
            )
        ).all()
        waiting = store.oldest_undecided(session)
    for quartier, state, count in rows:
        gauge.labels(quartier, state).set(count)
    oldest = rt.metrics.oldest_undecided
    oldest.clear()
    now = datetime.now(UTC)
    for quartier, since in waiting.items():
        oldest.labels(quartier).set(max(0.0, (now - since).total_seconds()))
    settings = cast(ReviewSettings, rt.settings)  # review's runtime runs on its settings
    rt.metrics.decision_target.set(settings.review_decision_target_days * 86400)
