"""Crashes and restarts of the intake *process*: nothing lost, nothing counted twice.

Each test runs intake as its own process (``python -m services.intake``) against a
real nats-server, kills it (SIGKILL, or an injected ``os._exit`` at an exact
instant) and restarts it, then checks the log and the receipts.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext

from shared.client import SubmitClient
from shared.receipts import Receipt
from shared.subjects import EVENTS_STREAM, RECEIPTS_STREAM
from tests import factories
from tests.conftest import NatsServer
from tests.integration.processes import ServiceProcess

pytestmark = pytest.mark.anyio


def intake_process(nats_srv: NatsServer, database_url: str, tmp_path: Path) -> ServiceProcess:
    return ServiceProcess(
        "intake",
        {
            "FPH_NATS_URL": nats_srv.url,
            "FPH_INTAKE_DATABASE_URL": database_url,
            "FPH_QUARTIERS": "QN09301M,QN09302M",
            "FPH_SOURCES": "city,centre-social-nord",
        },
        tmp_path / "intake.log",
    )


async def all_messages(js: JetStreamContext, stream: str) -> list:
    info = await js.stream_info(stream)
    if info.state.messages == 0:
        return []
    return [
        await js.get_msg(stream, s) for s in range(info.state.first_seq, info.state.last_seq + 1)
    ]


async def wait_for_receipts(js: JetStreamContext, n: int, timeout: float = 120.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (await js.stream_info(RECEIPTS_STREAM)).state.messages < n:
        if loop.time() > deadline:
            have = (await js.stream_info(RECEIPTS_STREAM)).state.messages
            raise TimeoutError(f"{have} receipts after {timeout}s, expected {n}")
        await asyncio.sleep(0.2)


async def wait_inbox_drained(js: JetStreamContext, timeout: float = 60.0) -> None:
    """Until intake's consumer has every submission delivered *and acked* (redeliveries done)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        info = await js.consumer_info("FPH_INBOX", "intake-inbox-v1")
        if info.num_pending == 0 and info.num_ack_pending == 0:
            return
        if loop.time() > deadline:
            raise TimeoutError(
                f"inbox not drained: {info.num_pending} pending, {info.num_ack_pending} unacked"
            )
        await asyncio.sleep(0.2)


def burst(n: int) -> list[dict]:
    """n valid submissions: envies, and every tenth a close of an envie recorded before."""
    docs: list[dict] = []
    for i in range(n):
        if i % 10 == 9:
            docs.append(
                factories.submission(
                    "EnvieClosed",
                    aggregate_id=docs[i - 5]["aggregate_id"],
                    quartier=docs[i - 5]["quartier"],
                    occurred_at="2026-04-01T10:00:00+02:00",
                )
            )
        else:
            docs.append(factories.submission(quartier=("QN09301M", "QN09302M")[i % 2]))
    return docs


async def publish_all(client: SubmitClient, docs: list[dict]) -> list[int]:
    seqs = []
    for doc in docs:
        seqs.append(await client.publish(doc["type"], json.dumps(doc).encode()))
    return seqs


async def check_exactly_once(js: JetStreamContext, docs: list[dict], inbox_seqs: list[int]) -> None:
    """One receipt per submission, all accepted; each event once in the log, at its seq."""
    receipts = await all_messages(js, RECEIPTS_STREAM)
    per_subject = Counter(m.subject for m in receipts)
    assert max(per_subject.values()) == 1, per_subject.most_common(3)
    by_inbox = {Receipt.from_json(m.data).inbox_seq: Receipt.from_json(m.data) for m in receipts}
    assert sorted(by_inbox) == sorted(inbox_seqs)
    bad = [r for r in by_inbox.values() if not r.ok]
    assert not bad, bad[:3]
    logged = await all_messages(js, EVENTS_STREAM)
    ids = Counter(m.headers["Nats-Msg-Id"] for m in logged)
    assert len(logged) == len(docs)
    assert max(ids.values()) == 1
    assert set(ids) == {d["event_id"] for d in docs}
    seq_of = {m.headers["Nats-Msg-Id"]: m.seq for m in logged}
    for doc, inbox_seq in zip(docs, inbox_seqs, strict=True):
        assert by_inbox[inbox_seq].seq == seq_of[doc["event_id"]]
    # Log order follows inbox order (a close always after its envie, since all accepted).
    assert [m.headers["Nats-Msg-Id"] for m in logged] == [d["event_id"] for d in docs]


async def test_submissions_wait_in_the_inbox_while_intake_is_stopped(
    nats_srv: NatsServer, js: JetStreamContext, nc, tmp_path: Path
):
    docs = burst(60)
    client = SubmitClient(nc, "centre-social-nord")
    seqs = await publish_all(client, docs)
    await asyncio.sleep(0.5)
    assert (await js.stream_info(RECEIPTS_STREAM)).state.messages == 0
    intake = intake_process(nats_srv, f"sqlite:///{tmp_path / 'i.db'}", tmp_path).start()
    try:
        await wait_for_receipts(js, len(docs))
        await wait_inbox_drained(js)
        await check_exactly_once(js, docs, seqs)
    finally:
        intake.stop()
        await client.close()


async def test_kill_9_in_the_middle_of_2000_submissions(
    nats_srv: NatsServer, js: JetStreamContext, nc, tmp_path: Path, database_url: str
):
    intake = intake_process(nats_srv, database_url, tmp_path).start()
    client = SubmitClient(nc, "centre-social-nord")
    docs = burst(2000)
    try:
        publishing = asyncio.create_task(publish_all(client, docs))
        while (await js.stream_info(RECEIPTS_STREAM)).state.messages < 400:
            await asyncio.sleep(0.01)
        intake.kill()
        before = (await js.stream_info(RECEIPTS_STREAM)).state.messages
        assert before < len(docs), "killed too late to prove anything"
        seqs = await publishing
        intake.start()
        await wait_for_receipts(js, len(docs))
        await wait_inbox_drained(js)
        await check_exactly_once(js, docs, seqs)
    finally:
        intake.stop()
        await client.close()


@pytest.mark.parametrize("point", ["after_append", "after_receipts"])
async def test_crash_between_append_and_ack_never_answers_twice(
    nats_srv: NatsServer, js: JetStreamContext, nc, tmp_path: Path, point: str
):
    # Shrink the receipts' dedup window so only the service's own check can prevent a
    # second receipt (JetStream's Nats-Msg-Id dedup would otherwise hide one).
    cfg = (await js.stream_info(RECEIPTS_STREAM)).config
    cfg.duplicate_window = 1.0
    await js.update_stream(cfg)
    client = SubmitClient(nc, "centre-social-nord")
    docs = burst(2500)  # several batches: the crash hits the second
    seqs = await publish_all(client, docs)
    intake = intake_process(nats_srv, f"sqlite:///{tmp_path / 'i.db'}", tmp_path)
    intake.start(wait=False, FPH_FAULT=f"{point}:2")
    try:
        assert intake.wait_exit() == 137, intake.log()
        assert f"crashing at {point}" in intake.log()
        await asyncio.sleep(1.5)  # past the shrunk dedup window
        intake.start()
        await wait_for_receipts(js, len(docs))
        await wait_inbox_drained(js)  # the crashed batch was redelivered and decided again
        await check_exactly_once(js, docs, seqs)
    finally:
        intake.stop()
        await client.close()


async def test_resubmission_long_after_the_dedup_window_answers_the_original_seq(
    nats_srv: NatsServer, js: JetStreamContext, nc, tmp_path: Path
):
    cfg = (await js.stream_info(EVENTS_STREAM)).config
    cfg.duplicate_window = 1.0  # test only: the contract wants >= 2 min
    await js.update_stream(cfg)
    intake = intake_process(nats_srv, f"sqlite:///{tmp_path / 'i.db'}", tmp_path).start()
    client = SubmitClient(nc, "centre-social-nord")
    try:
        doc = factories.submission()
        first = await client.submit(doc)
        await asyncio.sleep(1.5)
        again = await client.submit(doc)
        assert again.ok and again.seq == first.seq and again.inbox_seq != first.inbox_seq
        # and after intake lost its database: the index is rebuilt from the log
        intake.stop()
        (tmp_path / "i.db").unlink()
        intake.start()
        third = await client.submit(doc)
        assert third.ok and third.seq == first.seq
        assert (await js.stream_info(EVENTS_STREAM)).state.messages == 1
    finally:
        intake.stop()
        await client.close()


async def test_deleting_the_database_rebuilds_state_but_erased_identities_stay_erased(
    nats_srv: NatsServer, js: JetStreamContext, tmp_path: Path
):
    db = tmp_path / "i.db"
    intake = intake_process(nats_srv, f"sqlite:///{db}", tmp_path).start()
    try:
        async with httpx.AsyncClient(base_url=intake.url, timeout=30) as http:
            r = await http.post(
                "/envies",
                json={
                    "quartier": "QN09301M",
                    "channel": "permanence",
                    "theme": "sport",
                    "summary": "un city stade",
                    "occurred_at": "2026-05-01T10:00:00+02:00",
                },
            )
            assert r.status_code == 201, r.text
            envie_id = r.json()["aggregate_id"]
            r = await http.post(f"/envies/{envie_id}/close", json={"reason": "withdrawn"})
            assert r.status_code == 201, r.text
            r = await http.post(
                "/porteurs",
                json={
                    "quartier": "QN09301M",
                    "age_band": "26_59",
                    "gender": "femme",
                    "name": "Awa Diallo",
                    "contact": "06 00 00 00 00",
                },
            )
            porteur_id = r.json()["aggregate_id"]
            assert (await http.get(f"/porteurs/{porteur_id}")).json()["identity"]["name"] == (
                "Awa Diallo"
            )
            assert (await http.delete(f"/porteurs/{porteur_id}/identity")).status_code == 200
            before = (await http.get("/envies")).json()["envies"]

        intake.stop()
        db.unlink()
        intake.start()

        async with httpx.AsyncClient(base_url=intake.url, timeout=30) as http:
            assert (await http.get("/envies")).json()["envies"] == before
            porteur = (await http.get(f"/porteurs/{porteur_id}")).json()
            assert porteur["identity"] is None and porteur["age_band"] == "26_59"
            r = await http.post(f"/envies/{envie_id}/close", json={"reason": "duplicate"})
            assert r.status_code == 422
            assert [e["code"] for e in r.json()["errors"]] == ["already_closed"]
        # no personal data ever entered the log
        for msg in await all_messages(js, EVENTS_STREAM):
            assert b"Awa" not in msg.data and b"06 00" not in msg.data
    finally:
        intake.stop()
