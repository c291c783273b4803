"""The city desk's HTTP API for intake (OpenAPI at ``/docs``).

Every write goes through the inbox as the desk's source (``FPH_INTAKE_DESK_SOURCE``),
so the HTTP API and partners share one decision path, one order and one record
of refusals. A refused request answers 422 with the receipt's errors; a request
whose body does not even parse is kept in ``FPH_REJECTED`` too.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy.orm import Session

from services.intake import store
from shared.events import AgeBand, Channel, CloseReason, Gender, Theme
from shared.http import (
    SUBMISSION_RESPONSES,
    SubmissionResult,
    new_event,
    runtime_of,
    submit_for_http,
)

router = APIRouter()


class RecordEnvie(BaseModel):
    """An envie heard at the desk or a permanence."""

    quartier: str = Field(examples=["QN09301M"])
    channel: Channel
    theme: Theme
    summary: str = Field(
        min_length=1, max_length=2000, examples=["Un jardin partagé au pied des tours"]
    )
    wants_to_carry: bool = False
    porteur_id: str | None = None
    place: str | None = Field(default=None, max_length=200, examples=["Permanence du mardi"])
    occurred_at: AwareDatetime | None = Field(
        default=None, description="When it was expressed; now if absent"
    )
    envie_id: str | None = Field(default=None, description="New id if absent")
    event_id: uuid.UUID | None = Field(
        default=None, description="Idempotency key: send the same to retry safely"
    )


class CloseEnvie(BaseModel):
    reason: CloseReason
    occurred_at: AwareDatetime | None = None
    event_id: uuid.UUID | None = None


class RegisterPorteur(BaseModel):
    """A resident carrying a project. Name and contact stay in intake's register only."""

    quartier: str
    age_band: AgeBand
    gender: Gender
    name: str = Field(min_length=1, max_length=300)
    contact: str = Field(min_length=1, max_length=300, description="Phone or e-mail")
    occurred_at: AwareDatetime | None = None
    event_id: uuid.UUID | None = None


@router.post(
    "/envies",
    name="EnvieRecorded",
    status_code=201,
    response_model=SubmissionResult,
    responses=SUBMISSION_RESPONSES,
)
async def record_envie(body: RecordEnvie, request: Request) -> JSONResponse:
    """Record an envie; answers its receipt (seq in the log, or every reason it was refused)."""
    data = {
        "channel": body.channel.value,
        "theme": body.theme.value,
        "summary": body.summary,
        "porteur_id": body.porteur_id,
        "wants_to_carry": body.wants_to_carry,
        "place": body.place,
    }
    event = new_event(
        "EnvieRecorded",
        body.quartier,
        body.envie_id or uuid.uuid4().hex,
        data,
        body.occurred_at,
        body.event_id,
    )
    return (await submit_for_http(runtime_of(request), event))[1]


@router.post(
    "/envies/{envie_id}/close",
    name="EnvieClosed",
    status_code=201,
    response_model=SubmissionResult,
    responses={404: {}, **SUBMISSION_RESPONSES},
)
async def close_envie(envie_id: str, body: CloseEnvie, request: Request) -> JSONResponse:
    """Close an envie (``duplicate`` and ``entered_in_error`` remove it from the counts)."""
    rt = runtime_of(request)
    with Session(rt.engine) as session:
        envie = store.envie_state(session, envie_id)
    if envie is None:
        raise HTTPException(
            404, {"errors": [{"field": "envie_id", "message": f"unknown envie {envie_id!r}"}]}
        )
    event = new_event(
        "EnvieClosed",
        envie.quartier,
        envie_id,
        {"reason": body.reason.value},
        body.occurred_at,
        body.event_id,
    )
    return (await submit_for_http(rt, event))[1]


@router.post(
    "/porteurs",
    name="PorteurRegistered",
    status_code=201,
    response_model=SubmissionResult,
    responses=SUBMISSION_RESPONSES,
)
async def register_porteur(body: RegisterPorteur, request: Request) -> JSONResponse:
    """Register a porteur: the log gets a pseudonymous id, the identity stays here."""
    rt = runtime_of(request)
    porteur_id = uuid.uuid4().hex
    data = {"age_band": body.age_band.value, "gender": body.gender.value}
    event = new_event(
        "PorteurRegistered", body.quartier, porteur_id, data, body.occurred_at, body.event_id
    )
    receipt, response = await submit_for_http(rt, event)
    if receipt is not None and receipt.ok:
        with Session(rt.engine) as session, session.begin():
            exists = session.scalar(
                sa.select(store.identities.c.porteur_id).where(
                    store.identities.c.porteur_id == porteur_id
                )
            )
            if not exists:
                session.execute(
                    store.identities.insert().values(
                        porteur_id=porteur_id, name=body.name, contact=body.contact
                    )
                )
    return response


@router.get("/porteurs/{porteur_id}")
def get_porteur(porteur_id: str, request: Request) -> dict[str, Any]:
    """A porteur's attributes, and their identity unless it was erased."""
    rt = runtime_of(request)
    with Session(rt.engine) as session:
        row = session.execute(
            sa.select(store.porteurs).where(store.porteurs.c.porteur_id == porteur_id)
        ).first()
        if row is None:
            raise HTTPException(404, f"unknown porteur {porteur_id!r}")
        ident = session.execute(
            sa.select(store.identities).where(store.identities.c.porteur_id == porteur_id)
        ).first()
        erased = session.scalar(
            sa.select(store.erasures.c.erased_at).where(store.erasures.c.porteur_id == porteur_id)
        )
    return {
        "porteur_id": row.porteur_id,
        "quartier": row.quartier,
        "age_band": row.age_band,
        "gender": row.gender,
        "seq": row.seq,
        "identity": {"name": ident.name, "contact": ident.contact} if ident else None,
        "erased_at": erased.isoformat() if erased else None,
    }


@router.delete("/porteurs/{porteur_id}/identity")
def erase_identity(porteur_id: str, request: Request) -> dict[str, Any]:
    """Erase a person's name and contact (RGPD). The log and every count stay valid."""
    rt = runtime_of(request)
    now = datetime.now(UTC)
    with Session(rt.engine) as session, session.begin():
        known = session.scalar(
            sa.select(store.porteurs.c.porteur_id).where(store.porteurs.c.porteur_id == porteur_id)
        )
        if known is None:
            raise HTTPException(404, f"unknown porteur {porteur_id!r}")
        session.execute(
            store.identities.delete().where(store.identities.c.porteur_id == porteur_id)
        )
        already = session.scalar(
            sa.select(store.erasures.c.erased_at).where(store.erasures.c.porteur_id == porteur_id)
        )
        if already is None:
            session.execute(store.erasures.insert().values(porteur_id=porteur_id, erased_at=now))
    return {"porteur_id": porteur_id, "erased_at": (already or now).isoformat()}


@router.get("/envies")
def list_envies(
    request: Request,
    quartier: Annotated[str | None, Query(description="Quartier code; all if absent")] = None,
    status: Literal["open", "closed", "all"] = "all",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Envies by quartier, in log order."""
    rt = runtime_of(request)
    q = sa.select(store.envies).order_by(store.envies.c.seq)
    if quartier is not None:
        if quartier not in rt.settings.quartiers:
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
        q = q.where(store.envies.c.quartier == quartier)
    if status == "open":
        q = q.where(store.envies.c.closed_reason.is_(None))
    elif status == "closed":
        q = q.where(store.envies.c.closed_reason.is_not(None))
    with Session(rt.engine) as session:
        rows = session.execute(q.limit(limit).offset(offset)).all()
    return {"envies": [_envie_json(r) for r in rows], "limit": limit, "offset": offset}


@router.get("/envies/{envie_id}")
def get_envie(envie_id: str, request: Request) -> dict[str, Any]:
    with Session(runtime_of(request).engine) as session:
        row = session.execute(
            sa.select(store.envies).where(store.envies.c.envie_id == envie_id)
        ).first()
    if row is None:
        raise HTTPException(404, f"unknown envie {envie_id!r}")
    return _envie_json(row)


def _envie_json(row: Any) -> dict[str, Any]:
    return {
        "envie_id": row.envie_id,
        "quartier": row.quartier,
        "occurred_at": store._aware(row.occurred_at).isoformat(),
        "channel": row.channel,
        "theme": row.theme,
        "summary": row.summary,
        "place": row.place,
        "porteur_id": row.porteur_id,
        "wants_to_carry": row.wants_to_carry,
        "source": row.source,
        "seq": row.seq,
        "closed_reason": row.closed_reason,
        "closed_at": store._aware(row.closed_at).isoformat() if row.closed_at else None,
    }
