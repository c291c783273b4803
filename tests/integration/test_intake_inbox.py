"""Intake's rules through the inbox, on a real nats-server and SQLite/PostgreSQL."""

from __future__ import annotations

import json

import pytest
from nats.js import JetStreamContext

from services.intake.runtime import start_intake
from shared.client import SubmitClient
from shared.runtime import ServiceRuntime
from shared.subjects import EVENTS_STREAM, REJECTED_STREAM
from tests import factories

pytestmark = pytest.mark.anyio


async def rejected_copies(js: JetStreamContext, subject: str = "fph.rejected.>") -> list:
    info = await js.stream_info(REJECTED_STREAM)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        msg = await js.get_msg(REJECTED_STREAM, seq)
        out.append(msg)
    return out


def fields(receipt) -> set[str]:
    return {e.field for e in receipt.errors or ()}


async def test_an_envie_is_accepted_with_its_seq_and_logged(
    intake: ServiceRuntime, client: SubmitClient, js: JetStreamContext
):
    doc = factories.submission(source="forged", recorded_at="1999-01-01T00:00:00Z")
    receipt = await client.submit(doc)
    assert receipt.status == "accepted", receipt
    assert receipt.event_id == doc["event_id"]
    logged = await js.get_msg(EVENTS_STREAM, receipt.seq)
    body = json.loads(logged.data)
    assert logged.subject == f"fph.events.QN09301M.envie.{doc['aggregate_id']}"
    assert body["source"] == "centre-social-nord"  # from the subject, never the body
    assert body["recorded_at"] != "1999-01-01T00:00:00Z"
    assert body["data"]["summary"] == doc["data"]["summary"]


async def test_close_once_then_refused_and_unknown_envie_refused(
    intake: ServiceRuntime, client: SubmitClient
):
    rec = factories.submission()
    assert (await client.submit(rec)).ok
    close = factories.submission(
        "EnvieClosed", aggregate_id=rec["aggregate_id"], occurred_at="2026-03-02T10:00:00+01:00"
    )
    assert (await client.submit(close)).ok
    again = factories.submission(
        "EnvieClosed", aggregate_id=rec["aggregate_id"], occurred_at="2026-03-03T10:00:00+01:00"
    )
    r = await client.submit(again)
    assert r.status == "rejected"
    assert [e.code for e in r.errors] == ["already_closed"]
    unknown = factories.submission("EnvieClosed", aggregate_id="nope")
    r = await client.submit(unknown)
    assert [e.code for e in r.errors] == ["unknown_envie"]


async def test_close_in_another_quartier_or_before_recording_is_refused(
    intake: ServiceRuntime, client: SubmitClient
):
    rec = factories.submission()
    assert (await client.submit(rec)).ok
    bad = factories.submission(
        "EnvieClosed",
        aggregate_id=rec["aggregate_id"],
        quartier="QN09302M",
        occurred_at="2026-02-01T10:00:00+01:00",
    )
    r = await client.submit(bad)
    assert {e.code for e in r.errors} == {"wrong_quartier", "before_recorded"}


async def test_the_same_id_twice_is_refused_for_envies_and_porteurs(
    intake: ServiceRuntime, client: SubmitClient
):
    for event_type in ("EnvieRecorded", "PorteurRegistered"):
        first = factories.submission(event_type)
        assert (await client.submit(first)).ok
        second = factories.submission(event_type, aggregate_id=first["aggregate_id"])
        r = await client.submit(second)
        assert [e.code for e in r.errors] == ["already_exists"], r


@pytest.mark.parametrize(
    ("payload", "field", "code"),
    [
        (b"{not json", "(body)", "not_json"),
        (b"[1, 2]", "(body)", "not_object"),
        (
            json.dumps(factories.submission(quartier="QN99999X")).encode(),
            "quartier",
            "unknown_quartier",
        ),
        (
            json.dumps(factories.submission(occurred_at="2099-01-01T00:00:00Z")).encode(),
            "occurred_at",
            "in_future",
        ),
        (
            json.dumps(factories.submission(data={"wants_to_carry": "yes"})).encode(),
            "data.wants_to_carry",
            "bool_type",
        ),
        (
            json.dumps(factories.submission(data={"summary": ""})).encode(),
            "data.summary",
            "string_too_short",
        ),
        (
            json.dumps(factories.submission(type="ProjectSubmitted")).encode(),
            "type",
            "type_mismatch",
        ),
        (b"x" * 1_000_000, "(body)", "too_large"),
    ],
    ids=[
        "malformed",
        "array",
        "quartier",
        "future",
        "wrong-type",
        "empty-summary",
        "type-mismatch",
        "1MB",
    ],
)
async def test_bad_submissions_get_a_rejected_receipt_and_are_kept(
    intake: ServiceRuntime,
    client: SubmitClient,
    js: JetStreamContext,
    payload: bytes,
    field: str,
    code: str,
):
    receipt = await client.submit_raw("EnvieRecorded", payload)
    assert receipt.status == "rejected"
    assert (field, code) in {(e.field, e.code) for e in receipt.errors}, receipt
    assert all(e.message for e in receipt.errors)
    kept = await js.get_last_msg(REJECTED_STREAM, "fph.rejected.centre-social-nord.EnvieRecorded")
    assert kept.data == payload  # byte for byte
    assert kept.headers["Fph-Inbox-Seq"] == str(receipt.inbox_seq)
    assert json.loads(kept.headers["Fph-Errors"]) == [e.as_dict() for e in receipt.errors]
    assert (await js.stream_info(EVENTS_STREAM)).state.messages == 0


async def test_unknown_type_and_forged_grant_are_refused_by_the_gatekeeper(
    intake: ServiceRuntime, client: SubmitClient, js: JetStreamContext
):
    body = json.dumps(factories.submission()).encode()
    r = await client.submit_raw("EnvieRecordedd", body)
    assert r.status == "rejected" and [e.code for e in r.errors] == ["unknown_type"]
    kept = await js.get_last_msg(REJECTED_STREAM, "fph.rejected.centre-social-nord.EnvieRecordedd")
    assert kept.data == body
    grant = factories.submission("GrantAwarded", aggregate_id="FPH-2026-QN09301M")
    r = await client.submit(grant)
    assert r.status == "rejected" and [e.code for e in r.errors] == ["reserved_type"]
    assert r.event_id == grant["event_id"]
    kept = await js.get_last_msg(REJECTED_STREAM, "fph.rejected.centre-social-nord.GrantAwarded")
    assert json.loads(kept.data) == grant
    assert (await js.stream_info(EVENTS_STREAM)).state.messages == 0


async def test_unconfigured_source_is_refused(intake: ServiceRuntime, nc):
    stranger = SubmitClient(nc, "stranger")
    r = await stranger.submit(factories.submission())
    await stranger.close()
    assert "source" in fields(r)


async def test_resubmission_three_times_one_entry_same_seq(
    intake: ServiceRuntime, client: SubmitClient, js: JetStreamContext
):
    doc = factories.submission()
    receipts = [await client.submit(doc) for _ in range(3)]
    assert [r.status for r in receipts] == ["accepted"] * 3
    assert len({r.seq for r in receipts}) == 1
    assert len({r.inbox_seq for r in receipts}) == 3
    assert (await js.stream_info(EVENTS_STREAM)).state.messages == 1


async def test_an_old_envie_version_is_upcast(intake: ServiceRuntime, client: SubmitClient, js):
    doc = factories.submission(schema_version=1)
    r = await client.submit(doc)
    assert r.ok
    logged = json.loads((await js.get_msg(EVENTS_STREAM, r.seq)).data)
    assert logged["schema_version"] == 2 and logged["data"]["place"] is None


async def test_a_receipt_lists_every_reason_schema_and_contract(
    intake: ServiceRuntime, client: SubmitClient
):
    doc = factories.submission(
        quartier="QN00000X", occurred_at="2099-01-01T00:00:00+01:00", data={"theme": "meteo"}
    )
    r = await client.submit(doc)
    assert {(e.field, e.code) for e in r.errors} == {
        ("quartier", "unknown_quartier"),
        ("occurred_at", "in_future"),
        ("data.theme", "enum"),
    }


async def test_a_source_may_be_limited_to_some_types(nats_srv, js, nc, database_url):
    from tests.integration.intake_fixtures import intake_settings

    settings = intake_settings(
        nats_srv.url, database_url, source_types='{"partner-b": ["EnvieRecorded"]}'
    )
    rt = await start_intake(settings)
    try:
        partner = SubmitClient(nc, "partner-b")
        assert (await partner.submit(factories.submission())).ok
        r = await partner.submit(factories.submission("PorteurRegistered"))
        assert [e.code for e in r.errors] == ["not_allowed"]
        await partner.close()
    finally:
        await rt.stop()


async def test_times_keep_their_offset_in_the_database(
    intake: ServiceRuntime, client: SubmitClient
):
    # Recorded at 10:00+01:00 (09:00Z); closed at 09:30Z, after it: accepted, also when the
    # close is decided in a later batch, on the state read back from the database.
    rec = factories.submission(occurred_at="2026-03-01T10:00:00+01:00")
    assert (await client.submit(rec)).ok
    close = factories.submission(
        "EnvieClosed", aggregate_id=rec["aggregate_id"], occurred_at="2026-03-01T09:30:00Z"
    )
    r = await client.submit(close)
    assert r.ok, r.errors


async def test_a_submission_that_always_fails_is_isolated_and_the_others_decided(
    intake: ServiceRuntime, client: SubmitClient, js: JetStreamContext, monkeypatch
):
    poison = factories.submission(aggregate_id="poison")
    monkeypatch.setenv("FPH_FAULT_RAISE", "decide:poison")
    before, after = factories.submission(), factories.submission()
    seqs = [
        await client.publish(d["type"], json.dumps(d).encode()) for d in (before, poison, after)
    ]
    receipts = [await client.receipt(s, timeout=60) for s in seqs]
    assert [r.status for r in receipts] == ["accepted", "rejected", "accepted"]
    assert [e.code for e in receipts[1].errors] == ["internal_error"]
    kept = await js.get_last_msg(REJECTED_STREAM, "fph.rejected.centre-social-nord.EnvieRecorded")
    assert json.loads(kept.data)["aggregate_id"] == "poison"
    logged = [json.loads((await js.get_msg(EVENTS_STREAM, s)).data)["aggregate_id"] for s in (1, 2)]
    assert logged == [before["aggregate_id"], after["aggregate_id"]]
