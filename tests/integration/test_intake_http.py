"""The city desk's HTTP API of intake, in-process (FastAPI app + lifespan) on real parts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.js import JetStreamContext

from services.intake.app import create_app
from shared.subjects import EVENTS_STREAM, REJECTED_STREAM
from tests.conftest import NatsServer
from tests.integration.intake_fixtures import intake_settings

pytestmark = pytest.mark.anyio

ENVIE = {
    "quartier": "QN09301M",
    "channel": "centre_social",
    "theme": "jeunesse",
    "summary": "Un atelier vélo",
    "occurred_at": "2026-06-01T15:00:00+02:00",
}


@pytest.fixture
async def http(
    nats_srv: NatsServer, js: JetStreamContext, database_url: str
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(intake_settings(nats_srv.url, database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            yield client


async def test_record_list_and_close_an_envie(http: httpx.AsyncClient, js: JetStreamContext):
    r = await http.post("/envies", json={**ENVIE, "place": "Centre social Nord"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "accepted" and body["seq"] == 1
    envie_id = body["aggregate_id"]
    logged = json.loads((await js.get_msg(EVENTS_STREAM, 1)).data)
    assert logged["source"] == "city" and logged["data"]["place"] == "Centre social Nord"

    listed = (await http.get("/envies", params={"quartier": "QN09301M"})).json()["envies"]
    assert [e["envie_id"] for e in listed] == [envie_id]
    assert (await http.get("/envies", params={"quartier": "QN09302M"})).json()["envies"] == []

    r = await http.post(f"/envies/{envie_id}/close", json={"reason": "redirected"})
    assert r.status_code == 201, r.text
    assert (await http.get(f"/envies/{envie_id}")).json()["closed_reason"] == "redirected"
    assert (await http.get("/envies", params={"status": "open"})).json()["envies"] == []

    r = await http.post(f"/envies/{envie_id}/close", json={"reason": "duplicate"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["code"] == "already_closed"


async def test_refusals_say_which_field_and_why(http: httpx.AsyncClient, js: JetStreamContext):
    r = await http.post(
        "/envies",
        json={**ENVIE, "quartier": "QN00000X", "occurred_at": "2099-01-01T00:00:00+01:00"},
    )
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} == {"quartier", "occurred_at"}
    # refused by the inbox: kept byte for byte with its errors
    kept = await js.get_last_msg(REJECTED_STREAM, "fph.rejected.city.EnvieRecorded")
    assert json.loads(kept.data)["quartier"] == "QN00000X"


async def test_a_body_that_does_not_validate_is_kept_too(
    http: httpx.AsyncClient, js: JetStreamContext
):
    raw = b'{"quartier": "QN09301M", "channel": "pigeon", "theme": "sport"}'
    r = await http.post("/envies", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"channel", "summary"} <= fields
    kept = await js.get_last_msg(REJECTED_STREAM, "fph.rejected.city.EnvieRecorded")
    assert kept.data == raw
    assert kept.headers["Fph-Http-Path"] == "/envies"


async def test_retrying_with_the_same_event_id_is_safe(
    http: httpx.AsyncClient, js: JetStreamContext
):
    payload = {**ENVIE, "event_id": "8d0d7f43-5d1c-4b43-9a55-2a3f4d2b0c11", "envie_id": "e-42"}
    first = (await http.post("/envies", json=payload)).json()
    again = (await http.post("/envies", json=payload)).json()
    assert first["seq"] == again["seq"]
    assert (await js.stream_info(EVENTS_STREAM)).state.messages == 1


async def test_porteur_identity_is_kept_here_only_and_can_be_erased(
    http: httpx.AsyncClient, js: JetStreamContext
):
    r = await http.post(
        "/porteurs",
        json={
            "quartier": "QN09302M",
            "age_band": "60_plus",
            "gender": "homme",
            "name": "Jean Martin",
            "contact": "jean@example.org",
        },
    )
    assert r.status_code == 201, r.text
    porteur_id = r.json()["aggregate_id"]
    logged = (await js.get_msg(EVENTS_STREAM, r.json()["seq"])).data
    assert b"Jean" not in logged and b"example.org" not in logged
    got = (await http.get(f"/porteurs/{porteur_id}")).json()
    assert got["identity"] == {"name": "Jean Martin", "contact": "jean@example.org"}
    erased = await http.delete(f"/porteurs/{porteur_id}/identity")
    assert erased.status_code == 200
    got = (await http.get(f"/porteurs/{porteur_id}")).json()
    assert got["identity"] is None and got["erased_at"] is not None
    assert got["age_band"] == "60_plus"  # the pseudonymous record stays valid
    assert (await http.delete("/porteurs/unknown/identity")).status_code == 404


async def test_health_metrics_and_openapi(http: httpx.AsyncClient):
    await http.post("/envies", json=ENVIE)
    await http.post("/envies", json={**ENVIE, "quartier": "QN00000X"})
    for _ in range(50):  # the follower applies the appended event asynchronously
        health = (await http.get("/health")).json()
        if health["log_position"] == 1:
            break
        await asyncio.sleep(0.1)
    assert health["status"] == "ok" and health["log_position"] == 1
    text = (await http.get("/metrics")).text
    assert 'fph_submissions_accepted_total{service="intake",type="EnvieRecorded"} 1.0' in text
    assert (
        'fph_submissions_refused_total{reason="unknown_quartier",service="intake",'
        'type="EnvieRecorded"} 1.0'
    ) in text
    spec = (await http.get("/openapi.json")).json()
    assert {"/envies", "/envies/{envie_id}/close", "/porteurs"} <= set(spec["paths"])
    assert (await http.get("/envies", params={"quartier": "nope"})).status_code == 422
