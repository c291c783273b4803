"""Review as real processes: concurrent instances, kill -9 mid-burst, lease failover.

Every review instance is its own process (``python -m services.review``) with its
own database: instances share nothing but NATS. The tests check the issue's
process-level requirements on the log itself:

- two instances, 100 pairs of conflicting committee decisions sent at once, one of
  each pair to each instance: exactly one decision per project in ``FPH_EVENTS``,
  one 201 and one 422 (``wrong_state``) per pair, and both read models agree;
- two writers racing on one aggregate with the same expected sequence: one conflict;
- kill -9 during a burst of submissions, restart: every submission answered once,
  every accepted event logged once, in order; a third instance rebuilt from an empty
  database serves exactly what the live one serves;
- kill -9 of the instance holding the inbox lease: the other takes over and decides.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared.client import SubmitClient
from shared.events import EventBase, types_owned_by, with_recording
from shared.log import Appended, ConcurrencyConflict, EventLog
from shared.publisher import JetStreamPublisher
from shared.receipts import Receipt
from shared.subjects import EVENTS_STREAM, INBOX_STREAM, RECEIPTS_STREAM
from tests import factories
from tests.conftest import NatsServer
from tests.integration.processes import ServiceProcess

pytestmark = pytest.mark.anyio

Q1, Q2 = factories.Q1, factories.Q2
QUARTIERS = (Q1, Q2)
PARTNER = "centre-social-nord"
REVIEW_TYPES = frozenset(types_owned_by("review"))
REVIEW_CONSUMER = "review-inbox-v1"
TIMEOUT = 90.0


# --- databases and processes ----------------------------------------------------------


@pytest.fixture
def spawn(
    nats_srv: NatsServer, tmp_path: Path, new_database: Callable[[str], str]
) -> Iterator[Callable[[str, str, str], ServiceProcess]]:
    """``spawn(service, database_url, label)``: a service process (not started), stopped
    at the end of the test (before its database is dropped)."""
    procs: list[ServiceProcess] = []

    def make(name: str, database_url: str, label: str) -> ServiceProcess:
        proc = ServiceProcess(
            name,
            {
                "FPH_NATS_URL": nats_srv.url,
                f"FPH_{name.upper()}_DATABASE_URL": database_url,
                # FPH_QUARTIERS and FPH_SOURCES keep their defaults (which hold QUARTIERS,
                # "city" and PARTNER): ReviewSettings' own ``_comma_list`` validator shadows
                # CommonSettings' one, so review cannot read them from the environment yet.
                "FPH_PARTNERS": f"{PARTNER},conseil-citoyen",
            },
            tmp_path / f"{label}.log",
        )
        procs.append(proc)
        return proc

    yield make
    for proc in procs:  # all asked to stop at once, then waited for
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.terminate()
    for proc in procs:
        proc.stop()


def start_all(*procs: ServiceProcess) -> None:
    """Start the processes side by side, then wait until each is healthy."""
    for proc in procs:
        proc.start(wait=False)
    for proc in procs:
        proc.wait_healthy()


def logs(*procs: ServiceProcess) -> str:
    return "\n".join(f"----- {p.log_path.name} -----\n{p.log()}" for p in procs)


async def poll(
    check: Callable[[], Awaitable[bool]],
    what: str,
    procs: tuple[ServiceProcess, ...],
    timeout: float = TIMEOUT,
    every: float = 0.2,
) -> None:
    """Until ``check()`` holds; after ``timeout`` fail saying ``what`` with the services' logs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"{what}: not after {timeout:.0f} s\n{logs(*procs)}")
        await asyncio.sleep(every)


def http_client() -> httpx.AsyncClient:
    """No connection limit (200 requests at once) and no keep-alive: a connection reused just
    as uvicorn closes it for idleness (5 s) would fail the request with a ReadError."""
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    return httpx.AsyncClient(timeout=60, limits=limits)


async def health(http: httpx.AsyncClient, proc: ServiceProcess) -> dict[str, Any]:
    try:
        answer: dict[str, Any] = (await http.get(f"{proc.url}/health")).json()
    except httpx.HTTPError:
        return {}
    return answer


async def last_seq(js: JetStreamContext) -> int:
    return int((await js.stream_info(EVENTS_STREAM)).state.last_seq)


async def wait_followed(
    js: JetStreamContext, http: httpx.AsyncClient, *procs: ServiceProcess
) -> None:
    """Until every instance's read model has followed the whole log."""
    end = await last_seq(js)

    async def done() -> bool:
        positions = [(await health(http, p)).get("log_position", -1) for p in procs]
        return all(pos >= end for pos in positions)

    await poll(done, f"instances following the log up to seq {end}", procs)


async def stream_count(js: JetStreamContext, stream: str) -> int:
    return int((await js.stream_info(stream)).state.messages)


async def logged(js: JetStreamContext) -> list[Msg]:
    return [m async for m in EventLog(js).read()]


async def all_receipts(js: JetStreamContext) -> list[Msg]:
    info = await js.stream_info(RECEIPTS_STREAM)
    if info.state.messages == 0:
        return []
    first, last = info.state.first_seq, info.state.last_seq
    return [await js.get_msg(RECEIPTS_STREAM, s) for s in range(first, last + 1)]


async def wait_inbox_drained(js: JetStreamContext, procs: tuple[ServiceProcess, ...]) -> None:
    """Until review's consumer has every submission delivered *and acked*."""

    async def drained() -> bool:
        info = await js.consumer_info(INBOX_STREAM, REVIEW_CONSUMER)
        return info.num_pending == 0 and info.num_ack_pending == 0

    await poll(drained, f"{REVIEW_CONSUMER} drained", procs)


async def project_views(http: httpx.AsyncClient, proc: ServiceProcess) -> dict[str, Any]:
    """Everything an instance serves about projects: the list and each project."""
    listing = (await http.get(f"{proc.url}/projects", params={"limit": 1000})).json()
    ids = [p["project_id"] for p in listing["projects"]]
    answers = await asyncio.gather(*(http.get(f"{proc.url}/projects/{i}") for i in ids))
    return {"list": listing, "projects": {i: a.json() for i, a in zip(ids, answers, strict=True)}}


# --- events ------------------------------------------------------------------------------


def recorded(event_type: str, **fields: Any) -> EventBase:
    """An event as a service appends it (source and recorded_at set)."""
    return with_recording(
        factories.event(event_type, **fields), source="intake", recorded_at=datetime.now(UTC)
    )


async def seed_envies_and_porteurs(js: JetStreamContext, n: int) -> list[tuple[str, str, str]]:
    """``n`` (quartier, envie_id, porteur_id) appended straight to the log (intake's part)."""
    triples = [
        (QUARTIERS[i % 2], f"e-{uuid.uuid4().hex}", f"po-{uuid.uuid4().hex}") for i in range(n)
    ]
    events = [
        e
        for quartier, envie_id, porteur_id in triples
        for e in (
            recorded("EnvieRecorded", quartier=quartier, aggregate_id=envie_id),
            recorded("PorteurRegistered", quartier=quartier, aggregate_id=porteur_id),
        )
    ]
    results = await EventLog(js).append_many([(e, 0) for e in events])
    assert all(isinstance(r, Appended) and not r.duplicate for r in results), results[:3]
    return triples


def accompany_doc(project_id: str, quartier: str, envie_id: str, porteur_id: str) -> dict:
    return factories.submission(
        "ProjectAccompanied",
        quartier=quartier,
        aggregate_id=project_id,
        occurred_at="2026-03-02T10:00:00+01:00",
        data={"envie_ids": [envie_id], "porteur_ids": [porteur_id], "partner": PARTNER},
    )


def decision_data(decision: str) -> dict[str, Any]:
    """A valid committee decision on a project submitted with 80000 cents requested."""
    return {
        "decision": decision,
        "amount_approved_cents": 50000 if decision == "approved" else 0,
        "votes": {"for": 4, "against": 2, "abstain": 1},
        "members_present": 7,
        "residents_present": 4,
    }


def decision_body(decision: str) -> dict[str, Any]:
    """The desk's request for that decision."""
    return {**decision_data(decision), "occurred_at": "2026-03-20T18:00:00+01:00"}


# --- 1. concurrency ----------------------------------------------------------------------

PAIRS = 100


async def post_all(
    http: httpx.AsyncClient, requests: list[tuple[str, dict[str, Any]]]
) -> list[httpx.Response]:
    return list(await asyncio.gather(*(http.post(url, json=body) for url, body in requests)))


def assert_statuses(answers: list[httpx.Response], status: int, what: str) -> None:
    bad = [(a.status_code, a.text) for a in answers if a.status_code != status]
    assert not bad, f"{what}: {len(bad)} not {status}, e.g. {bad[:3]}"


async def test_two_instances_decide_exactly_one_of_each_pair_of_conflicting_decisions(
    js: JetStreamContext,
    database_url: str,
    new_database: Callable[[str], str],
    spawn: Callable[[str, str, str], ServiceProcess],
):
    intake = spawn("intake", new_database("intake"), "intake")
    a = spawn("review", database_url, "review-a")
    b = spawn("review", new_database("review_b"), "review-b")
    start_all(intake, a, b)
    async with http_client() as http:
        # 100 projects, each submitted: envie and porteur at intake, then the workflow,
        # its requests spread over both instances.
        quartiers = [QUARTIERS[i % 2] for i in range(PAIRS)]
        envies = await post_all(
            http,
            [
                (
                    f"{intake.url}/envies",
                    {"quartier": q, "channel": "permanence", "theme": "sport", "summary": "x"},
                )
                for q in quartiers
            ],
        )
        porteurs = await post_all(
            http,
            [
                (
                    f"{intake.url}/porteurs",
                    {
                        "quartier": q,
                        "age_band": "26_59",
                        "gender": "femme",
                        "name": "A",
                        "contact": "c",
                    },
                )
                for q in quartiers
            ],
        )
        assert_statuses(envies + porteurs, 201, "envies and porteurs")
        await wait_followed(js, http, a, b)
        instances = [(a, b)[i % 2] for i in range(PAIRS)]
        accompanied = await post_all(
            http,
            [
                (
                    f"{inst.url}/projects",
                    {
                        "quartier": q,
                        "title": f"projet {i}",
                        "envie_ids": [e.json()["aggregate_id"]],
                        "porteur_ids": [p.json()["aggregate_id"]],
                        "partner": PARTNER,
                        "occurred_at": "2026-03-02T10:00:00+01:00",
                    },
                )
                for i, (inst, q, e, p) in enumerate(
                    zip(instances, quartiers, envies, porteurs, strict=True)
                )
            ],
        )
        assert_statuses(accompanied, 201, "accompaniments")
        project_ids = [r.json()["aggregate_id"] for r in accompanied]
        await wait_followed(js, http, a, b)
        submitted = await post_all(
            http,
            [
                (
                    f"{inst.url}/projects/{pid}/submission",
                    {
                        "amount_requested_cents": 80000,
                        "expected_participants": 30,
                        "occurred_at": "2026-03-10T10:00:00+01:00",
                    },
                )
                for inst, pid in zip(reversed(instances), project_ids, strict=True)
            ],
        )
        assert_statuses(submitted, 201, "submissions")

        async def all_submitted() -> bool:
            for inst in (a, b):
                r = await http.get(
                    f"{inst.url}/projects", params={"state": "submitted", "limit": 1000}
                )
                if {p["project_id"] for p in r.json()["projects"]} != set(project_ids):
                    return False
            return True

        await poll(all_submitted, "both instances showing 100 submitted projects", (a, b))

        # The race: for each project, one decision to each instance, all 200 at once
        # (approved to A and rejected to B, or the other way; sent to A first, or to B).
        sent: list[tuple[str, ServiceProcess, str]] = []  # (project, instance, decision)
        for i, pid in enumerate(project_ids):
            first, second = ("approved", "rejected") if i % 2 == 0 else ("rejected", "approved")
            pair = [(pid, a, first), (pid, b, second)]
            sent += pair if i % 4 < 2 else pair[::-1]
        answers = await post_all(
            http,
            [(f"{inst.url}/projects/{pid}/decision", decision_body(d)) for pid, inst, d in sent],
        )

    by_project: dict[str, list[tuple[str, httpx.Response]]] = defaultdict(list)
    for (pid, _, decision), answer in zip(sent, answers, strict=True):
        by_project[pid].append((decision, answer))
    winners: dict[str, tuple[str, str]] = {}  # project -> (decision, event_id)
    for pid, pair in by_project.items():
        statuses = sorted(answer.status_code for _, answer in pair)
        assert statuses == [201, 422], f"{pid}: {[(d, r.status_code, r.text) for d, r in pair]}"
        (won, won_answer), (lost, lost_answer) = sorted(pair, key=lambda x: x[1].status_code)
        winners[pid] = (won, won_answer.json()["event_id"])
        errors = lost_answer.json()["errors"]
        assert [e["code"] for e in errors] == ["wrong_state"], errors
        assert f"CommitteeDecided {lost} is not possible" in errors[0]["message"], errors
        assert f"is {won} (possible when: submitted)" in errors[0]["message"], errors

    # Exactly one decision per project in the log: the one answered 201.
    messages = await logged(js)
    decisions = [m for m in messages if m.headers["Fph-Event-Type"] == "CommitteeDecided"]
    per_project = Counter(json.loads(m.data)["aggregate_id"] for m in decisions)
    assert len(decisions) == PAIRS and set(per_project) == set(project_ids), per_project
    assert max(per_project.values()) == 1, per_project.most_common(3)
    for m in decisions:
        doc = json.loads(m.data)
        assert (doc["data"]["decision"], doc["event_id"]) == winners[doc["aggregate_id"]]

    # Both instances converge on the same read model, timelines included; one of them
    # decided every submission (the other stood by and only passed its requests on).
    async with http_client() as http:
        await wait_followed(js, http, a, b)
        view_a, view_b = await project_views(http, a), await project_views(http, b)
        roles = sorted([(await health(http, a))["role"], (await health(http, b))["role"]])
    assert roles == ["deciding", "standby"]
    assert view_a == view_b
    assert {pid: p["state"] for pid, p in view_a["projects"].items()} == {
        pid: won for pid, (won, _) in winners.items()
    }


async def test_two_writers_appending_on_the_same_expected_sequence_one_conflicts(
    nats_srv: NatsServer, js: JetStreamContext
):
    """Optimistic concurrency itself: two connections race to append a decision on the same
    project with the same expected last sequence; exactly one lands."""
    conns: list[NATS] = [await nats.connect(nats_srv.url) for _ in range(2)]
    try:
        writers = []
        for conn in conns:
            publisher = JetStreamPublisher(conn)
            await publisher.start()
            writers.append((EventLog(conn.jetstream()), publisher))
        for _ in range(20):
            pid = str(uuid.uuid4())
            opened = recorded("ProjectAccompanied", aggregate_id=pid)
            accompanied = await writers[0][0].append(opened, 0)
            approve, reject = (
                recorded("CommitteeDecided", aggregate_id=pid, data=decision_data(d))
                for d in ("approved", "rejected")
            )
            results = await asyncio.gather(
                *(
                    log.append_many([(event, accompanied.seq)], publisher)
                    for (log, publisher), event in zip(writers, (approve, reject), strict=True)
                )
            )
            outcomes = [r for [r] in results]
            assert sorted(type(r).__name__ for r in outcomes) == ["Appended", "ConcurrencyConflict"]
            landed, winner = next(
                (r, e)
                for r, e in zip(outcomes, (approve, reject), strict=True)
                if isinstance(r, Appended)
            )
            conflict = next(r for r in outcomes if isinstance(r, ConcurrencyConflict))
            assert conflict.expected == accompanied.seq
            # The winner sent again on the same stale expectation is recognised, not a conflict.
            again = await writers[1][0].append(winner, accompanied.seq)
            assert again == Appended(landed.seq, duplicate=True)
            on_subject = await writers[0][0].read_aggregate(Q1, "project", pid)
            assert [m.headers["Nats-Msg-Id"] for m in on_subject] == [
                str(opened.event_id),
                str(winner.event_id),
            ]
    finally:
        for conn in conns:
            await conn.drain()


# --- 2. kill -9 during a burst, then a rebuild from scratch --------------------------------

BURST_PROJECTS = 100


def review_burst(
    triples: list[tuple[str, str, str]],
) -> tuple[list[dict], list[str | None]]:
    """Valid workflows (accompany -> submit -> decide, in order per project), groups of ten
    projects interleaved; plus, for half of the approved projects, a second decision that
    must be refused. The expected verdict of each: None (accepted) or the refusal's code."""
    docs: list[dict] = []
    expected: list[str | None] = []
    for start in range(0, len(triples), 10):
        group = [(str(uuid.uuid4()), *t) for t in triples[start : start + 10]]
        for pid, quartier, envie_id, porteur_id in group:
            docs.append(accompany_doc(pid, quartier, envie_id, porteur_id))
        for pid, quartier, _, _ in group:
            docs.append(
                factories.submission(
                    "ProjectSubmitted",
                    quartier=quartier,
                    aggregate_id=pid,
                    occurred_at="2026-03-10T10:00:00+01:00",
                )
            )
        for k, (pid, quartier, _, _) in enumerate(group):
            decision = ("approved", "rejected", "deferred")[k % 3]
            docs.append(
                factories.submission(
                    "CommitteeDecided",
                    quartier=quartier,
                    aggregate_id=pid,
                    occurred_at="2026-03-20T18:00:00+01:00",
                    data=decision_data(decision),
                )
            )
        expected += [None] * (3 * len(group))
        for k, (pid, quartier, _, _) in enumerate(group):
            if k % 3 == 0 and k % 2 == 0:  # approved: a second decision comes too late
                docs.append(
                    factories.submission(
                        "CommitteeDecided",
                        quartier=quartier,
                        aggregate_id=pid,
                        occurred_at="2026-03-21T18:00:00+01:00",
                        data=decision_data("rejected"),
                    )
                )
                expected.append("wrong_state")
    return docs, expected


async def publish_paced(client: SubmitClient, docs: list[dict]) -> list[int]:
    """Publish in order, a few at a time with a short pause between, so that the burst
    spans many inbox batches (review decides 320 submissions published at once in one
    batch, leaving no moment to kill it in the middle)."""
    seqs = []
    for i, doc in enumerate(docs):
        seqs.append(await client.publish(doc["type"], json.dumps(doc).encode()))
        if i % 5 == 4:
            await asyncio.sleep(0.02)
    return seqs


async def test_kill_9_during_a_burst_loses_nothing_and_a_rebuilt_read_model_is_identical(
    js: JetStreamContext,
    nc: NATS,
    database_url: str,
    new_database: Callable[[str], str],
    spawn: Callable[[str, str, str], ServiceProcess],
):
    triples = await seed_envies_and_porteurs(js, BURST_PROJECTS)
    seeded = await last_seq(js)
    docs, expected = review_burst(triples)
    live = spawn("review", database_url, "review-live")
    live.start()
    client = SubmitClient(nc, PARTNER)
    await client.start()
    try:
        publishing = asyncio.create_task(publish_paced(client, docs))

        async def a_third_answered() -> bool:
            return await stream_count(js, RECEIPTS_STREAM) >= len(docs) // 3

        await poll(a_third_answered, "a third of the burst answered", (live,), every=0.01)
        live.kill()
        before = await stream_count(js, RECEIPTS_STREAM)
        assert before < len(docs), "killed too late to prove anything"
        inbox_seqs = await publishing
        live.start()

        async def all_answered() -> bool:
            return await stream_count(js, RECEIPTS_STREAM) >= len(docs)

        await poll(all_answered, f"{len(docs)} receipts", (live,))
        await wait_inbox_drained(js, (live,))
    finally:
        await client.close()

    # One receipt per submission, with the expected verdict.
    receipts = await all_receipts(js)
    per_subject = Counter(m.subject for m in receipts)
    assert max(per_subject.values()) == 1, per_subject.most_common(3)
    by_inbox = {r.inbox_seq: r for r in (Receipt.from_json(m.data) for m in receipts)}
    assert sorted(by_inbox) == sorted(inbox_seqs)
    verdicts = [
        None if by_inbox[s].ok else [e.code for e in by_inbox[s].errors or ()] for s in inbox_seqs
    ]
    assert verdicts == [None if x is None else [x] for x in expected], [
        (d["type"], d["aggregate_id"], v)
        for d, v, x in zip(docs, verdicts, expected, strict=True)
        if v != (None if x is None else [x])
    ][:5]

    # Every accepted event logged once, at its receipt's seq, each project's in order;
    # nothing refused logged.
    messages = [m for m in await logged(js) if m.metadata.sequence.stream > seeded]
    ids = Counter(m.headers["Nats-Msg-Id"] for m in messages)
    assert max(ids.values()) == 1, ids.most_common(3)
    accepted = {d["event_id"] for d, x in zip(docs, expected, strict=True) if x is None}
    assert set(ids) == accepted
    seq_of = {m.headers["Nats-Msg-Id"]: m.metadata.sequence.stream for m in messages}
    for doc, inbox_seq in zip(docs, inbox_seqs, strict=True):
        if by_inbox[inbox_seq].ok:
            assert by_inbox[inbox_seq].seq == seq_of[doc["event_id"]]
    steps: dict[str, list[str]] = defaultdict(list)
    for m in messages:
        assert m.headers["Fph-Event-Type"] in REVIEW_TYPES
        steps[json.loads(m.data)["aggregate_id"]].append(m.headers["Fph-Event-Type"])
    assert len(steps) == BURST_PROJECTS
    assert set(map(tuple, steps.values())) == {
        ("ProjectAccompanied", "ProjectSubmitted", "CommitteeDecided")
    }

    # A third instance on an empty database rebuilds the same read model from the log.
    rebuilt = spawn("review", new_database("review_rebuilt"), "review-rebuilt")
    rebuilt.start()
    async with http_client() as http:
        await wait_followed(js, http, live, rebuilt)
        assert (await health(http, rebuilt))["log_position"] == await last_seq(js)
        view_live, view_rebuilt = (
            await project_views(http, live),
            await project_views(http, rebuilt),
        )
    assert len(view_live["projects"]) == BURST_PROJECTS
    assert view_rebuilt == view_live
    assert Counter(p["state"] for p in view_live["projects"].values()) == Counter(
        ("approved", "rejected", "submitted")[k % 3]
        for _ in range(0, BURST_PROJECTS, 10)
        for k in range(10)
    )


# --- 3. lease failover ---------------------------------------------------------------------


async def test_kill_9_of_the_deciding_instance_hands_the_inbox_to_the_other(
    js: JetStreamContext,
    nc: NATS,
    database_url: str,
    new_database: Callable[[str], str],
    spawn: Callable[[str, str, str], ServiceProcess],
):
    triples = await seed_envies_and_porteurs(js, 3)
    a = spawn("review", database_url, "review-a")
    b = spawn("review", new_database("review_b"), "review-b")
    start_all(a, b)
    client = SubmitClient(nc, PARTNER)
    await client.start()
    try:
        async with http_client() as http:
            roles: dict[str, ServiceProcess] = {}

            async def one_decides() -> bool:
                found = {(await health(http, p)).get("role"): p for p in (a, b)}
                roles.clear()
                roles.update({k: v for k, v in found.items() if k})
                return set(roles) == {"deciding", "standby"}

            await poll(one_decides, "one instance deciding, the other standing by", (a, b))
            holder, survivor = roles["deciding"], roles["standby"]
            first = await client.submit(accompany_doc(str(uuid.uuid4()), *triples[0]), timeout=60)
            assert first.ok, first

            holder.kill()
            # Sent while nobody holds the lease: kept, then decided by the new holder.
            pid = str(uuid.uuid4())
            kept = await client.publish(
                "ProjectAccompanied", json.dumps(accompany_doc(pid, *triples[1])).encode()
            )

            async def took_over() -> bool:
                return (await health(http, survivor)).get("role") == "deciding"

            await poll(took_over, "the standby instance deciding", (survivor, holder), timeout=30)
            receipt = await client.receipt(kept, timeout=60)
            assert receipt.ok, receipt
            # and the desk's HTTP on the new holder decides as well
            r = await http.post(
                f"{survivor.url}/projects/{pid}/submission",
                json={"amount_requested_cents": 80000, "expected_participants": 30},
            )
            assert r.status_code == 201, r.text

            # The killed instance comes back as a standby and catches up.
            holder.start()
            await wait_followed(js, http, survivor, holder)
            assert (await health(http, holder))["role"] == "standby"
            assert (await health(http, survivor))["role"] == "deciding"
            views = [(await http.get(f"{p.url}/projects/{pid}")).json() for p in (survivor, holder)]
            assert views[0] == views[1] and views[0]["state"] == "submitted"
    finally:
        await client.close()
    messages = await logged(js)
    ids = Counter(m.headers["Nats-Msg-Id"] for m in messages)
    assert max(ids.values()) == 1
    assert [
        m.headers["Fph-Event-Type"] for m in messages if m.headers["Fph-Event-Type"] in REVIEW_TYPES
    ] == [
        "ProjectAccompanied",
        "ProjectAccompanied",
        "ProjectSubmitted",
    ]
