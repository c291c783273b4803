"""HTTP of the reports: the fiche for a period as CSV, JSON and a printable HTML page.

``GET /reports/fiche.{csv,json,html}?from=&to=[&as_of_seq=]``: one row per configured
quartier, then the total (all quartiers together), every figure from the store as
``/indicators`` gives it, all as of one sequence (the latest projected by default).
The parameters are checked exactly as ``/indicators`` checks them (422 naming the field).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from services.indicators import reports, store
from services.indicators.app import AsOf, From, Runtime, To, _params

router = APIRouter(prefix="/reports", tags=["reports"])

CSV = "text/csv; charset=utf-8"
JSON = "application/json"
HTML = "text/html; charset=utf-8"


def fiche(rt: Runtime, start: date, end: date, as_of_seq: int | None) -> reports.Fiche:
    """The figures of every quartier and of all together, as of one sequence."""
    as_of = _params(rt, None, start, end, as_of_seq)
    rows: dict[str | None, dict[str, Any]] = {}
    with Session(rt.engine) as session:
        for quartier in [*rt.settings.quartiers, None]:
            rows[quartier] = store.indicators(
                session, quartier=quartier, start=start, end=end, as_of=as_of
            )
        digest = store.digest_at(session, as_of)
    return reports.Fiche(start, end, as_of, digest, rows)


def _disposition(kind: str, name: str) -> dict[str, str]:
    return {"Content-Disposition": f'{kind}; filename="{name}"'}


@router.get(
    "/fiche.csv",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "One line per quartier, then total"}
    },
)
def fiche_csv(request: Request, start: From, end: To, as_of_seq: AsOf = None) -> Response:
    """The fiche as CSV: ``quartier,from,to,as_of_seq,as_of_digest`` then every indicator
    (``mecanismes_mobilisation.<mechanism>`` for the nine mechanisms); null is empty."""
    report = fiche(request.app.state.runtime, start, end, as_of_seq)
    return Response(
        reports.fiche_csv(report),
        media_type=CSV,
        headers=_disposition("attachment", reports.filename(report, "csv")),
    )


@router.get(
    "/fiche.json",
    response_class=Response,
    responses={200: {"content": {JSON: {}}, "description": "The rows, then total"}},
)
def fiche_json(request: Request, start: From, end: To, as_of_seq: AsOf = None) -> Response:
    """The fiche as JSON: ``{"from", "to", "as_of": {"seq", "digest"}, "rows": [{"quartier",
    "indicators"}]}``, the last row's ``quartier`` being ``"total"``."""
    report = fiche(request.app.state.runtime, start, end, as_of_seq)
    return Response(
        reports.fiche_json(report),
        media_type=JSON,
        headers=_disposition("inline", reports.filename(report, "json")),
    )


@router.get(
    "/fiche.html",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}, "description": "A printable page"}},
)
def fiche_html(request: Request, start: From, end: To, as_of_seq: AsOf = None) -> Response:
    """The fiche as a printable page: the table (each figure linking to its lineage) and a
    chart per indicator across the quartiers. No script, no external resource."""
    report = fiche(request.app.state.runtime, start, end, as_of_seq)
    return Response(
        reports.fiche_html(report),
        media_type=HTML,
        headers=_disposition("inline", reports.filename(report, "html")),
    )
