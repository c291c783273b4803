"""The fiche's reports served by the indicators service in-process (real stream and store).

The hand-built log of ``test_indicators`` is appended to ``FPH_EVENTS``; every row of
``/reports/fiche.csv`` and ``/reports/fiche.json`` must be the ``/indicators`` answer for
its quartier (and for all quartiers in the total row), as of the same sequence and
digest; ``/reports/fiche.html`` is a page carrying the digest whose lineage links work;
bad parameters are refused (422) naming the field, as ``/indicators`` does.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from nats.js import JetStreamContext

from services.indicators import reference
from shared.events import Mechanism
from tests.conftest import NatsServer
from tests.factories import Q1, Q2
from tests.integration.test_indicators import (
    Y2026,
    Y2027,
    append_log,
    expected,
    figures,
    hand_built,
    params,
    running,
    settings_for,
    stream_digest,
    values,
)

pytestmark = pytest.mark.anyio

ROWS: list[tuple[str, str | None]] = [(Q1, Q1), (Q2, Q2), ("total", None)]
"""Row label -> the ``quartier`` of the matching ``/indicators`` query."""


def cell(value: Any) -> str:
    """What the CSV must hold for a value of ``/indicators``: as Python prints it."""
    return "" if value is None else str(value)


def flattened(indicators: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for code, value in indicators.items():
        if code == "mecanismes_mobilisation":
            out.update({f"{code}.{m.value}": cell(value[m.value]) for m in Mechanism})
        else:
            out[code] = cell(value)
    return out


def named(body: dict[str, Any]) -> set[str]:
    """The fields a 422 names: ours (``errors[].field``) or FastAPI's (``detail[].loc``)."""
    if "errors" in body:
        return {e["field"] for e in body["errors"]}
    return {e["loc"][-1] for e in body["detail"]}


async def check_reports(
    c: httpx.AsyncClient, log: Any, period: tuple[str, str], as_of_seq: int | None
) -> dict[str, Any]:
    """The CSV and JSON reports equal ``/indicators`` row by row; the JSON document."""
    query = params(None, period, as_of_seq)
    answers = {label: await figures(c, quartier=q, period=period, as_of_seq=as_of_seq)
               for label, q in ROWS}  # fmt: skip
    as_of = answers["total"]["as_of"]
    for label, q in ROWS:
        assert answers[label]["as_of"] == as_of
        assert values(answers[label]) == expected(log, q, period, as_of_seq), label

    r = await c.get("/reports/fiche.json", params=query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    doc: dict[str, Any] = r.json()
    assert (doc["from"], doc["to"]) == period
    assert doc["as_of"] == as_of
    assert [row["quartier"] for row in doc["rows"]] == [label for label, _ in ROWS]
    for row in doc["rows"]:
        assert row["indicators"] == values(answers[row["quartier"]]), row["quartier"]
        assert list(row["indicators"]) == list(reference.INDICATOR_CODES)

    r = await c.get("/reports/fiche.csv", params=query)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    name = f"fiche-1.1.6_{period[0]}_{period[1]}_seq{as_of['seq']}.csv"
    assert r.headers["content-disposition"] == f'attachment; filename="{name}"'
    lines = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert [line["quartier"] for line in lines] == [label for label, _ in ROWS]
    for line in lines:
        label = line.pop("quartier")
        context = {k: line.pop(k) for k in ("from", "to", "as_of_seq", "as_of_digest")}
        assert context == {
            "from": period[0],
            "to": period[1],
            "as_of_seq": str(as_of["seq"]),
            "as_of_digest": as_of["digest"],
        }
        assert line == flattened(values(answers[label])), label
    return doc


async def test_reports_equal_the_indicators(
    nats_srv: NatsServer, js: JetStreamContext, database_url: str
) -> None:
    log = await append_log(js, hand_built())
    last = log[-1][0]
    settings = settings_for(nats_srv, database_url)

    async with running(settings, last) as c:
        digest = await stream_digest(js, last)
        doc = await check_reports(c, log, Y2026, None)
        assert doc["as_of"] == {"seq": last, "digest": digest}
        # the hand-built log gives nulls, decimals and a total that is not a sum
        rows = {row["quartier"]: row["indicators"] for row in doc["rows"]}
        assert rows[Q2]["participants_moyen"] == 3.0 and rows[Q1]["participants_moyen"] is None
        assert rows["total"]["delai_decision_jours"] == 14.5
        assert rows[Q1]["delai_decision_jours"] == 26.0 and rows[Q2]["delai_decision_jours"] == 3.0

        await check_reports(c, log, Y2027, None)
        for as_of in (0, 5, 12):
            doc = await check_reports(c, log, Y2026, as_of)
            assert doc["as_of"] == {"seq": as_of, "digest": await stream_digest(js, as_of)}

        # The page: the context, a chart per indicator, links that give the same figures.
        r = await c.get("/reports/fiche.html", params=params(None, Y2026, 12))
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/html; charset=utf-8"
        page = r.text
        assert await stream_digest(js, 12) in page
        assert "Fiche 1.1.6 — indicateurs" in page
        assert page.count("<svg") == 12
        page_url = str(r.url)
        hrefs = re.findall(r'<td data-code="([a-z_.]+)"><a href="([^"]+)"', page)
        assert len(hrefs) == 3 * 20  # 3 rows, 11 indicators + 9 mechanisms
        seen: set[str] = set()
        for column, href in hrefs:
            href = href.replace("&amp;", "&")
            if href in seen:
                continue  # the nine mechanism cells share their lineage
            seen.add(href)
            lineage = await c.get(urljoin(page_url, href))
            assert lineage.status_code == 200, (column, lineage.text)
            body = lineage.json()
            assert body["code"] == column.split(".")[0]
            assert body["as_of"]["seq"] == 12
            assert body["value"] == expected(log, body["quartier"], Y2026, 12)[body["code"]]
        assert len(seen) == 3 * 12

        # Bad parameters: 422 naming the field, on every format.
        for path in ("/reports/fiche.csv", "/reports/fiche.json", "/reports/fiche.html"):
            for query, field in (
                ({"to": "2027-01-01"}, "from"),
                ({"from": "2026-13-01", "to": "2027-01-01"}, "from"),
                ({"from": "2026-01-01"}, "to"),
                ({"from": "2026-01-01", "to": "2026-01-32"}, "to"),
                (params(None, ("2026-01-01", "2026-01-01")), "to"),
                (params(None, ("2026-02-01", "2026-01-01")), "to"),
                (params(None, Y2026, last + 1), "as_of_seq"),
                (params(None, Y2026, -1), "as_of_seq"),
            ):
                r = await c.get(path, params=query)
                assert r.status_code == 422, (path, query, r.text)
                assert named(r.json()) == {field}, (path, query, r.text)
                assert r.headers["content-type"] == "application/json"
