"""The city's finance desk HTTP API: envelopes, payments, settlements, the ledger.

Writes go through the inbox as the desk's source (``FPH_FUNDING_DESK_SOURCE``).
Grants are not written here: funding answers each approved committee decision
itself (``services/funding/answers.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from services.funding import store
from shared.events import envelope_id
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


class FunderShare(BaseModel):
    funder: str = Field(min_length=1, examples=["Ville"])
    amount_cents: int = Field(gt=0)


class OpenEnvelope(DeskWrite):
    """Open a quartier's FPH envelope for a year (one per quartier and year)."""

    quartier: str = Field(examples=["QN09301M"])
    year: int = Field(ge=2000, le=2100, examples=[2026])
    amount_cents: int = Field(gt=0, examples=[1500000])
    cap_per_project_cents: int = Field(gt=0, examples=[300000])
    funders: list[FunderShare] = Field(min_length=1, description="Shares summing to the amount")


class TopUp(DeskWrite):
    amount_cents: int = Field(gt=0)
    funder: str = Field(min_length=1)


class Payment(DeskWrite):
    grant_id: str
    amount_cents: int = Field(gt=0)


class Settlement(DeskWrite):
    grant_id: str
    spent_cents: int = Field(ge=0)
    returned_cents: int = Field(ge=0, description="Goes back to the envelope")


def _post(path: str, name: str) -> Callable[[Endpoint], Endpoint]:
    return submission_route(router, path, name)


def _quartier_of(request: Request, envelope: str) -> str:
    with Session(runtime_of(request).engine) as session:
        quartier = session.scalar(
            sa.select(store.envelopes.c.quartier).where(store.envelopes.c.envelope_id == envelope)
        )
    if quartier is None:
        raise HTTPException(
            404, {"errors": [{"field": "envelope_id", "message": f"unknown envelope {envelope!r}"}]}
        )
    return str(quartier)


async def _write(
    request: Request,
    event_type: str,
    quartier: str,
    envelope: str,
    data: dict[str, Any],
    body: DeskWrite,
) -> JSONResponse:
    event = new_event(event_type, quartier, envelope, data, body.occurred_at, body.event_id)
    return (await submit_for_http(runtime_of(request), event))[1]


@_post("/envelopes", "EnvelopeOpened")
async def open_envelope(body: OpenEnvelope, request: Request) -> JSONResponse:
    """Open ``FPH-<year>-<quartier>`` with its amount, per-project cap and funders."""
    data = {
        "year": body.year,
        "amount_cents": body.amount_cents,
        "cap_per_project_cents": body.cap_per_project_cents,
        "funders": [f.model_dump() for f in body.funders],
    }
    envelope = envelope_id(body.year, body.quartier)
    return await _write(request, "EnvelopeOpened", body.quartier, envelope, data, body)


@_post("/envelopes/{envelope_id}/top-ups", "EnvelopeToppedUp")
async def top_up(envelope_id: str, body: TopUp, request: Request) -> JSONResponse:
    """Add a funder's money to an open envelope."""
    data = {"amount_cents": body.amount_cents, "funder": body.funder}
    quartier = _quartier_of(request, envelope_id)
    return await _write(request, "EnvelopeToppedUp", quartier, envelope_id, data, body)


@_post("/envelopes/{envelope_id}/payments", "GrantPaid")
async def pay(envelope_id: str, body: Payment, request: Request) -> JSONResponse:
    """Record a payment on a grant (payments never add up above the award)."""
    data = {"grant_id": body.grant_id, "amount_cents": body.amount_cents}
    quartier = _quartier_of(request, envelope_id)
    return await _write(request, "GrantPaid", quartier, envelope_id, data, body)


@_post("/envelopes/{envelope_id}/settlements", "GrantSettled")
async def settle(envelope_id: str, body: Settlement, request: Request) -> JSONResponse:
    """Settle a grant: spent + returned == paid; the returned money can fund later decisions."""
    data = {
        "grant_id": body.grant_id,
        "spent_cents": body.spent_cents,
        "returned_cents": body.returned_cents,
    }
    quartier = _quartier_of(request, envelope_id)
    return await _write(request, "GrantSettled", quartier, envelope_id, data, body)


@router.get("/envelopes")
def list_envelopes(
    request: Request, year: Annotated[int | None, Query(ge=2000, le=2100)] = None
) -> dict[str, Any]:
    """Envelopes (of a year, or all) with their figures."""
    q = sa.select(store.envelopes.c.envelope_id).order_by(store.envelopes.c.envelope_id)
    if year is not None:
        q = q.where(store.envelopes.c.year == year)
    with Session(runtime_of(request).engine) as session:
        ids = list(session.scalars(q))
        envs = store.load_envelopes(session, ids)
    return {
        "envelopes": [
            {
                "envelope_id": i,
                "quartier": envs[i].quartier,
                "year": envs[i].year,
                "cap_per_project_cents": envs[i].cap_per_project_cents,
                **envs[i].totals(),
            }
            for i in ids
        ]
    }


@router.get("/envelopes/{envelope_id}")
def get_envelope(envelope_id: str, request: Request) -> dict[str, Any]:
    """The ledger: opened, topped up, awarded, paid, returned, remaining, and every
    movement with its event id and seq."""
    with Session(runtime_of(request).engine) as session:
        found = store.ledger(session, envelope_id)
    if found is None:
        raise HTTPException(404, f"unknown envelope {envelope_id!r}")
    return found


def refresh_envelope_gauge(rt: ServiceRuntime) -> None:
    """Remaining cents per envelope, from the store at scrape time."""
    gauge = rt.metrics.envelope_remaining
    gauge.clear()
    with Session(rt.engine) as session:
        ids = list(session.scalars(sa.select(store.envelopes.c.envelope_id)))
        for env in store.load_envelopes(session, ids).values():
            gauge.labels(env.envelope_id, env.quartier, str(env.year)).set(
                env.totals()["remaining_cents"]
            )
