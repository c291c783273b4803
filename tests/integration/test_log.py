"""The event log on a real nats-server: provisioning, appends, conflicts, dedup, reads."""

from __future__ import annotations

import uuid

import pytest
from nats.js import JetStreamContext
from nats.js import api as js_api

from shared.events import EventBase
from shared.log import (
    ConcurrencyConflict,
    EventLog,
    digest_of,
    provision,
    subject_of,
    wanted_streams,
)
from shared.subjects import EVENTS_STREAM
from tests import factories

pytestmark = pytest.mark.anyio


def envie(aggregate_id: str = "e1", event_id: uuid.UUID | None = None) -> EventBase:
    return factories.event(
        aggregate_id=aggregate_id, event_id=str(event_id or uuid.uuid4()), quartier="QN09301M"
    )


def closed(aggregate_id: str = "e1") -> EventBase:
    return factories.event("EnvieClosed", aggregate_id=aggregate_id, quartier="QN09301M")


async def test_provision_creates_the_contract_streams_and_is_idempotent(js: JetStreamContext):
    for wanted in wanted_streams():
        info = await js.stream_info(wanted.name)
        assert info.config.subjects == wanted.subjects
        assert info.config.storage == js_api.StorageType.FILE
        assert info.config.retention == js_api.RetentionPolicy.LIMITS
    events = await js.stream_info(EVENTS_STREAM)
    assert not events.config.max_age
    assert events.config.duplicate_window >= 120
    inbox = await js.stream_info("FPH_INBOX")
    assert inbox.config.max_age >= 90 * 24 * 3600
    assert await provision(js) == []


async def test_provision_reports_a_difference_without_applying_it(js: JetStreamContext):
    info = await js.stream_info("FPH_INBOX")
    cfg = info.config
    cfg.max_age = 24 * 3600.0
    await js.update_stream(cfg)
    differences = await provision(js)
    assert [(d.stream, d.setting) for d in differences] == [("FPH_INBOX", "max_age")]
    assert "FPH_INBOX" in str(differences[0]) and "max_age" in str(differences[0])
    assert (await js.stream_info("FPH_INBOX")).config.max_age == 24 * 3600.0


async def test_append_sets_the_contract_headers(js: JetStreamContext):
    log = EventLog(js)
    event = envie()
    appended = await log.append(event, 0)
    msg = await js.get_msg(EVENTS_STREAM, appended.seq)
    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == str(event.event_id)
    assert msg.headers["Fph-Event-Type"] == "EnvieRecorded"
    assert msg.subject == "fph.events.QN09301M.envie.e1"
    assert msg.data == event.to_json()


async def test_stale_expected_sequence_is_a_conflict(js: JetStreamContext):
    log = EventLog(js)
    first = await log.append(envie(), 0)
    with pytest.raises(ConcurrencyConflict, match="re-read the aggregate"):
        await log.append(closed(), 0)
    second = await log.append(closed(), first.seq)
    assert second.seq == first.seq + 1
    assert await log.last_subject_seq(subject_of(closed())) == second.seq


async def test_same_event_id_inside_the_window_is_a_duplicate_with_the_original_seq(
    js: JetStreamContext,
):
    log = EventLog(js)
    event = envie()
    first = await log.append(event, 0)
    # Even with a now-stale expectation, the duplicate answers the original sequence.
    again = await log.append(event, 0)
    assert again == type(again)(seq=first.seq, duplicate=True)
    assert await log.last_seq() == 1


async def test_append_many_pipelines_and_reports_each_conflict(js: JetStreamContext):
    log = EventLog(js)
    results = await log.append_many([(envie("a"), 0), (envie("b"), 0), (envie("a2"), 5)])
    assert [getattr(r, "seq", None) for r in results[:2]] == [1, 2]
    assert isinstance(results[2], ConcurrencyConflict)


async def test_read_and_read_aggregate_in_log_order(js: JetStreamContext):
    log = EventLog(js)
    await log.append(envie("a"), 0)
    await log.append(envie("b"), 0)
    await log.append(closed("a"), 1)
    seqs = [m.metadata.sequence.stream async for m in log.read()]
    assert seqs == [1, 2, 3]
    assert [m.metadata.sequence.stream async for m in log.read(2)] == [2, 3]
    agg = await log.read_aggregate("QN09301M", "envie", "a")
    assert [m.headers["Fph-Event-Type"] for m in agg] == ["EnvieRecorded", "EnvieClosed"]
    assert await log.read_aggregate("QN09301M", "envie", "zzz") == []


async def test_digest_chain_matches_the_contract_definition(js: JetStreamContext):
    import hashlib

    log = EventLog(js)
    for name in ("a", "b", "c"):
        await log.append(envie(name), 0)
    bodies = [m.data async for m in log.read()]
    d = hashlib.sha256(b"").digest()
    for body in bodies:
        d = hashlib.sha256(d + body).digest()
    assert digest_of(bodies) == "sha256:" + d.hex()
    assert digest_of([]) == "sha256:" + hashlib.sha256(b"").hexdigest()
