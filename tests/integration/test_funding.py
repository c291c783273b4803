"""Funding in-process (FastAPI app + lifespan) on a real nats-server and SQLite/PostgreSQL.

Committee decisions are appended straight to the log (as review would have), so only
funding runs: its answers (CONTRACT 1.3), the finance desk's HTTP API and inbox
(CONTRACT 1.2, 2), the ledger and the envelopes' metric.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.funding import domain
from services.funding.app import create_app
from shared.client import SubmitClient
from shared.log import EventLog
from shared.store import make_engine, metadata
from shared.subjects import EVENTS_STREAM, REJECTED_STREAM
from tests import factories
from tests.conftest import NatsServer
from tests.integration.funding_fixtures import (
    Q1,
    Q2,
    Logged,
    answers_by_decision,
    append,
    check_answers,
    decision,
    envelope_opened,
    funding_settings,
    outcome,
    poll,
    read_log,
    wait_answers,
)

pytestmark = pytest.mark.anyio

ENVELOPE = f"FPH-2026-{Q1}"
PARTNER = "centre-social-nord"


@asynccontextmanager
async def running(nats_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(funding_settings(nats_url, database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://funding") as client:
            yield client


@pytest.fixture
async def http(
    nats_srv: NatsServer, js: JetStreamContext, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with running(nats_srv.url, database_url) as client:
        yield client


async def open_envelope(
    http: httpx.AsyncClient, amount: int, cap: int, quartier: str = Q1, year: int = 2026
) -> dict[str, Any]:
    r = await http.post(
        "/envelopes",
        json={
            "quartier": quartier,
            "year": year,
            "amount_cents": amount,
            "cap_per_project_cents": cap,
            "funders": [{"funder": "Ville", "amount_cents": amount}],
            "occurred_at": f"{year}-01-10T10:00:00+01:00",
        },
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def ledger(http: httpx.AsyncClient, envelope: str = ENVELOPE) -> dict[str, Any]:
    r = await http.get(f"/envelopes/{envelope}")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def decide(
    http: httpx.AsyncClient, js: JetStreamContext, *docs: dict[str, Any]
) -> list[Logged]:
    """Append decisions to the log; their answers, once funding's ledger shows them."""
    await append(js, docs)
    log = await wait_answers(js, [d["event_id"] for d in docs])
    answers = [answers_by_decision(log)[d["event_id"]][0] for d in docs]
    # the desk decides on funding's database: wait until the answers are applied there
    for a in answers:
        env = a.doc["aggregate_id"]

        async def shown(a: Logged = a, env: str = env) -> bool:
            r = await http.get(f"/envelopes/{env}")
            return r.status_code == 200 and a.seq in [m["seq"] for m in r.json()["movements"]]

        if a.doc["data"].get("reason") != "no_envelope":
            await poll(shown, f"answer seq {a.seq} in funding's ledger")
    return answers


def errors_of(r: httpx.Response) -> list[tuple[str, str]]:
    return [(e["field"], e["code"]) for e in r.json()["errors"]]


# --- the finance desk's refusals ----------------------------------------------------


async def test_every_desk_refusal_over_http(http: httpx.AsyncClient, js: JetStreamContext):
    await open_envelope(http, 100_000, 60_000)
    r = await http.post(
        "/envelopes",
        json={
            "quartier": Q1,
            "year": 2026,
            "amount_cents": 5_000,
            "cap_per_project_cents": 1_000,
            "funders": [{"funder": "Etat", "amount_cents": 5_000}],
        },
    )
    assert r.status_code == 422 and errors_of(r) == [("aggregate_id", "already_exists")], r.text

    # schema and contract rules, found by the inbox
    r = await http.post(
        "/envelopes",
        json={
            "quartier": "QN99999X",
            "year": 2026,
            "amount_cents": 5_000,
            "cap_per_project_cents": 1_000,
            "funders": [{"funder": "Etat", "amount_cents": 4_999}],
            "occurred_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    )
    assert r.status_code == 422
    assert {c for _, c in errors_of(r)} >= {"unknown_quartier", "in_future"}, r.text
    assert "data.funders" in {f for f, _ in errors_of(r)}, r.text
    # request validation (HTTP): kept in FPH_REJECTED too
    r = await http.post(f"/envelopes/{ENVELOPE}/top-ups", json={"amount_cents": 0, "funder": "x"})
    assert r.status_code == 422 and errors_of(r) == [("amount_cents", "greater_than")], r.text
    kept = await js.get_last_msg(REJECTED_STREAM, "fph.rejected.city.EnvelopeToppedUp")
    assert json.loads(kept.data or b"") == {"amount_cents": 0, "funder": "x"}
    # an envelope that does not exist
    r = await http.post(
        "/envelopes/FPH-2025-QN09301M/top-ups", json={"amount_cents": 1, "funder": "x"}
    )
    assert r.status_code == 404, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["envelope_id"], r.text

    [award] = await decide(http, js, decision(50_000))
    grant = award.doc["data"]["grant_id"]
    pay = f"/envelopes/{ENVELOPE}/payments"
    settle = f"/envelopes/{ENVELOPE}/settlements"

    r = await http.post(pay, json={"grant_id": "g-nope", "amount_cents": 1})
    assert r.status_code == 422 and errors_of(r) == [("data.grant_id", "unknown_grant")]
    assert (
        await http.post(pay, json={"grant_id": grant, "amount_cents": 20_000})
    ).status_code == 201
    r = await http.post(pay, json={"grant_id": grant, "amount_cents": 30_001})
    assert r.status_code == 422 and errors_of(r) == [("data.amount_cents", "above_award")]
    assert (
        await http.post(pay, json={"grant_id": grant, "amount_cents": 30_000})
    ).status_code == 201
    r = await http.post(pay, json={"grant_id": grant, "amount_cents": 1})
    assert r.status_code == 422 and errors_of(r) == [("data.amount_cents", "above_award")]

    r = await http.post(settle, json={"grant_id": "g-nope", "spent_cents": 0, "returned_cents": 0})
    assert r.status_code == 422 and errors_of(r) == [("data.grant_id", "unknown_grant")]
    r = await http.post(
        settle, json={"grant_id": grant, "spent_cents": 45_000, "returned_cents": 5_001}
    )
    assert r.status_code == 422 and errors_of(r) == [("data", "settlement_mismatch")]
    r = await http.post(
        settle, json={"grant_id": grant, "spent_cents": 45_000, "returned_cents": 5_000}
    )
    assert r.status_code == 201, r.text
    r = await http.post(
        settle, json={"grant_id": grant, "spent_cents": 50_000, "returned_cents": 0}
    )
    assert r.status_code == 422 and errors_of(r) == [("data.grant_id", "settled")]
    r = await http.post(pay, json={"grant_id": grant, "amount_cents": 1})
    assert r.status_code == 422 and ("data.grant_id", "settled") in errors_of(r)

    # nothing refused reached the log: opened, decision, answer, 2 payments, settlement
    types = [m.type for m in await read_log(js)]
    assert types == [
        "EnvelopeOpened",
        "CommitteeDecided",
        "GrantAwarded",
        "GrantPaid",
        "GrantPaid",
        "GrantSettled",
    ]


async def test_a_partner_is_refused_through_the_inbox(
    http: httpx.AsyncClient, js: JetStreamContext, nc: NATS
):
    await open_envelope(http, 100_000, 60_000)
    partner = SubmitClient(nc, PARTNER)
    try:
        again = envelope_opened(1_000, 1_000)
        r = await partner.submit(again)
        assert r.status == "rejected" and [(e.field, e.code) for e in r.errors or ()] == [
            ("aggregate_id", "already_exists")
        ]
        # a top-up on Q1's envelope that says it is Q2's
        wrong = factories.submission("EnvelopeToppedUp", aggregate_id=ENVELOPE, quartier=Q2)
        r = await partner.submit(wrong)
        assert [(e.field, e.code) for e in r.errors or ()] == [("quartier", "wrong_quartier")]
        unknown = factories.submission(
            "GrantPaid", aggregate_id=ENVELOPE, data={"grant_id": "g-x", "amount_cents": 1}
        )
        r = await partner.submit(unknown)
        assert r.status == "rejected" and r.event_id == unknown["event_id"]
        assert [(e.field, e.code) for e in r.errors or ()] == [("data.grant_id", "unknown_grant")]
        kept = await js.get_last_msg(REJECTED_STREAM, f"fph.rejected.{PARTNER}.GrantPaid")
        assert json.loads(kept.data or b"") == unknown
        # accepted from a partner too (every source may submit every type by default)
        top_up = factories.submission("EnvelopeToppedUp", aggregate_id=ENVELOPE)
        r = await partner.submit(top_up)
        assert r.ok, r
        assert r.seq is not None
        logged = json.loads((await js.get_msg(EVENTS_STREAM, r.seq)).data or b"")
        assert logged["source"] == PARTNER and logged["event_id"] == top_up["event_id"]
    finally:
        await partner.close()
    assert [m.type for m in await read_log(js)] == ["EnvelopeOpened", "EnvelopeToppedUp"]


# --- the ledger ----------------------------------------------------------------------


async def test_the_ledger_figures_and_movements(http: httpx.AsyncClient, js: JetStreamContext):
    opened = await open_envelope(http, 100_000, 60_000)
    answers = await decide(
        http,
        js,
        decision(50_000),
        decision(45_000),
        decision(60_001),  # above the cap
        decision(20_000),  # 5,000 left
        decision(5_000),  # exactly what is left
    )
    assert [outcome(a.doc) for a in answers] == [
        50_000,
        45_000,
        "cap_exceeded",
        "envelope_exhausted",
        5_000,
    ]
    g1 = answers[0].doc["data"]["grant_id"]
    r = await http.post(
        f"/envelopes/{ENVELOPE}/top-ups", json={"amount_cents": 7_000, "funder": "Bailleur"}
    )
    assert r.status_code == 201, r.text
    top_up = r.json()
    paid = await http.post(
        f"/envelopes/{ENVELOPE}/payments", json={"grant_id": g1, "amount_cents": 50_000}
    )
    settled = await http.post(
        f"/envelopes/{ENVELOPE}/settlements",
        json={"grant_id": g1, "spent_cents": 41_000, "returned_cents": 9_000},
    )
    assert paid.status_code == settled.status_code == 201, (paid.text, settled.text)

    book = await ledger(http)
    figures = {k: v for k, v in book.items() if k != "movements"}
    assert figures == {
        "envelope_id": ENVELOPE,
        "quartier": Q1,
        "year": 2026,
        "cap_per_project_cents": 60_000,
        "opened_cents": 100_000,
        "topped_up_cents": 7_000,
        "awarded_cents": 100_000,
        "paid_cents": 50_000,
        "returned_cents": 9_000,
        "remaining_cents": 16_000,
    }
    moves = book["movements"]
    # every movement is an event of the log, at its seq, with its id
    log = {m.seq: m for m in await read_log(js)}
    for move in moves:
        assert log[move["seq"]].doc["event_id"] == move["event_id"], move
        assert log[move["seq"]].type == move["type"], move
    assert [(m["type"], m["amount_cents"], m["returned_cents"]) for m in moves] == [
        ("EnvelopeOpened", 100_000, 0),
        ("GrantAwarded", 50_000, 0),
        ("GrantAwarded", 45_000, 0),
        ("GrantRefused", 0, 0),
        ("GrantRefused", 0, 0),
        ("GrantAwarded", 5_000, 0),
        ("EnvelopeToppedUp", 7_000, 0),
        ("GrantPaid", 50_000, 0),
        ("GrantSettled", 41_000, 9_000),
    ]
    assert moves[0]["event_id"] == opened["event_id"] and moves[0]["seq"] == opened["seq"]
    assert moves[6]["event_id"] == top_up["event_id"] and moves[6]["seq"] == top_up["seq"]
    assert [m["detail"] for m in moves if m["type"] == "GrantRefused"] == [
        "cap_exceeded",
        "envelope_exhausted",
    ]
    decision_seqs = {m.doc["event_id"]: m.seq for m in log.values()}
    for move, answer in zip(
        [m for m in moves if m["type"] in ("GrantAwarded", "GrantRefused")], answers, strict=True
    ):
        assert move["seq"] == answer.seq
        assert move["decision_seq"] == decision_seqs[answer.doc["causation_id"]]
        assert move["project_id"] == answer.doc["data"]["project_id"]
    assert moves[7]["grant_id"] == moves[8]["grant_id"] == g1

    listed = (await http.get("/envelopes", params={"year": 2026})).json()["envelopes"]
    assert listed == [figures]
    assert (await http.get("/envelopes", params={"year": 2027})).json()["envelopes"] == []
    assert (await http.get("/envelopes/FPH-2026-QN09302M")).status_code == 404


async def test_returned_money_funds_only_decisions_logged_after_it(
    http: httpx.AsyncClient, js: JetStreamContext
):
    await open_envelope(http, 30_000, 30_000)
    [first] = await decide(http, js, decision(30_000))
    grant = first.doc["data"]["grant_id"]
    r = await http.post(
        f"/envelopes/{ENVELOPE}/payments", json={"grant_id": grant, "amount_cents": 30_000}
    )
    assert r.status_code == 201, r.text
    before = decision(10_000)
    await append(js, [before])  # logged before the settlement, however late it is answered
    r = await http.post(
        f"/envelopes/{ENVELOPE}/settlements",
        json={"grant_id": grant, "spent_cents": 20_000, "returned_cents": 10_000},
    )
    assert r.status_code == 201, r.text
    after, more = decision(10_000), decision(1)
    answers = await decide(http, js, after, more)
    log = await wait_answers(js, [before["event_id"]])
    by_decision = answers_by_decision(log)
    assert outcome(by_decision[before["event_id"]][0].doc) == "envelope_exhausted"
    assert [outcome(a.doc) for a in answers] == [10_000, "envelope_exhausted"]
    book = await ledger(http)
    assert book["returned_cents"] == 10_000 and book["remaining_cents"] == 0
    check_answers(
        log, [first.doc["causation_id"], before["event_id"], after["event_id"], more["event_id"]]
    )


# --- the answers as the contract says ------------------------------------------------


async def test_answers_carry_the_decision_s_cause_time_and_envelope(
    http: httpx.AsyncClient, js: JetStreamContext
):
    await open_envelope(http, 100_000, 60_000)
    await open_envelope(http, 100_000, 60_000, quartier=Q2)
    docs = [
        decision(40_000, occurred_at="2026-03-20T10:00:00+01:00"),
        decision(0, verdict="rejected"),
        decision(0, verdict="deferred"),
        # 00:30 on 1 January 2026 in Paris: the 2026 envelope of Q2
        decision(20_000, occurred_at="2025-12-31T23:30:00Z", quartier=Q2),
        # 23:30 on 31 December 2025 in Paris: Q2 has no 2025 envelope
        decision(20_000, occurred_at="2025-12-31T22:30:00Z", quartier=Q2),
        decision(10_000, occurred_at="2026-07-14T18:45:12.5+02:00"),
    ]
    approved = [d for d in docs if d["data"]["decision"] == "approved"]
    await append(js, docs)
    log = await wait_answers(js, [d["event_id"] for d in approved])
    logged = {m.doc["event_id"]: m for m in log}
    answers = answers_by_decision(log)
    assert set(answers) == {d["event_id"] for d in approved}, "only approved decisions answered"
    expected = {
        approved[0]["event_id"]: (40_000, f"FPH-2026-{Q1}"),
        approved[1]["event_id"]: (20_000, f"FPH-2026-{Q2}"),
        approved[2]["event_id"]: ("no_envelope", f"FPH-2025-{Q2}"),
        approved[3]["event_id"]: (10_000, f"FPH-2026-{Q1}"),
    }
    for decision_id, (result, envelope) in expected.items():
        [answer] = answers[decision_id]
        d, a = logged[decision_id], answer.doc
        assert outcome(a) == result
        assert a["event_id"] == domain.answer_id(decision_id)
        assert a["causation_id"] == decision_id
        assert a["correlation_id"] == d.doc["correlation_id"]
        assert a["occurred_at"] == d.doc["occurred_at"], "the decision's time, as logged"
        assert a["quartier"] == d.doc["quartier"] and a["aggregate_id"] == envelope
        assert answer.subject == f"fph.events.{d.doc['quartier']}.envelope.{envelope}"
        assert a["data"]["project_id"] == d.doc["aggregate_id"]
        assert a["source"] == "funding" and a["recorded_at"]
        assert answer.headers["Nats-Msg-Id"] == a["event_id"]
        assert answer.headers["Fph-Event-Type"] == a["type"]
        assert answer.seq > d.seq
    check_answers(log, [d["event_id"] for d in approved])


async def test_an_envelope_opened_after_a_decision_does_not_fund_it(
    http: httpx.AsyncClient, js: JetStreamContext
):
    early = decision(10_000)
    await append(js, [early])  # answered before or after the opening: no envelope either way
    await open_envelope(http, 100_000, 60_000)
    later = decision(10_000)
    [answer] = await decide(http, js, later)
    log = await wait_answers(js, [early["event_id"]])
    assert outcome(answers_by_decision(log)[early["event_id"]][0].doc) == "no_envelope"
    assert outcome(answer.doc) == 10_000
    check_answers(log, [early["event_id"], later["event_id"]])
    assert (await ledger(http))["remaining_cents"] == 90_000


async def test_metrics_show_each_envelope_s_remaining_cents(
    http: httpx.AsyncClient, js: JetStreamContext
):
    await open_envelope(http, 100_000, 60_000)
    await open_envelope(http, 250_000, 60_000, quartier=Q2)
    await decide(http, js, decision(12_345), decision(60_001))
    text = (await http.get("/metrics")).text
    assert (
        f'fph_envelope_remaining_cents{{envelope="{ENVELOPE}",quartier="{Q1}",year="2026"}} 87655.0'
        in text
    ), text
    assert (
        f'fph_envelope_remaining_cents{{envelope="FPH-2026-{Q2}",quartier="{Q2}",year="2026"}}'
        " 250000.0" in text
    ), text
    assert 'fph_grant_answers_total{outcome="awarded"} 1.0' in text
    assert 'fph_grant_answers_total{outcome="cap_exceeded"} 1.0' in text


# --- the database is a cache of the log ----------------------------------------------


async def test_losing_the_database_rebuilds_the_same_ledger_and_answers_nothing_twice(
    nats_srv: NatsServer, js: JetStreamContext, database_url: str
):
    docs = [decision(a) for a in (30_000, 25_000, 70_000, 40_000, 10_000)]
    async with running(nats_srv.url, database_url) as http:
        await open_envelope(http, 100_000, 60_000)
        answers = await decide(http, js, *docs)
        grant = answers[0].doc["data"]["grant_id"]
        for path, body in [
            ("top-ups", {"amount_cents": 3_000, "funder": "Etat"}),
            ("payments", {"grant_id": grant, "amount_cents": 30_000}),
            ("settlements", {"grant_id": grant, "spent_cents": 28_500, "returned_cents": 1_500}),
        ]:
            r = await http.post(f"/envelopes/{ENVELOPE}/{path}", json=body)
            assert r.status_code == 201, r.text
        before = await ledger(http)
        listed = (await http.get("/envelopes")).json()
        last = await EventLog(js).last_seq()

    if database_url.startswith("sqlite"):
        db = Path(database_url.removeprefix("sqlite:///"))
        for file in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            file.unlink(missing_ok=True)
    else:
        engine = make_engine(database_url)
        metadata.drop_all(engine)
        engine.dispose()

    async with running(nats_srv.url, database_url) as http:
        assert await ledger(http) == before
        assert (await http.get("/envelopes")).json() == listed
        # a new decision is answered against the rebuilt envelope (9,500 left), once
        extra = [decision(9_501), decision(9_500)]
        new_answers = await decide(http, js, *extra)
        assert [outcome(a.doc) for a in new_answers] == ["envelope_exhausted", 9_500]
        log = await read_log(js)
        assert all(m.seq > last for m in new_answers)
        check_answers(log, [d["event_id"] for d in docs + extra])
        assert (await ledger(http))["remaining_cents"] == 0
