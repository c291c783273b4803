"""The project workflow end to end: intake and review in-process (FastAPI apps with their
lifespans) on a real nats-server and SQLite/PostgreSQL, through HTTP and a partner's inbox."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from services.intake.app import create_app as intake_app
from services.review.app import create_app as review_app
from services.review.settings import ReviewSettings
from shared.client import SubmitClient
from shared.codec import FieldError, event_from_dict
from shared.events import EventBase, with_recording
from shared.log import EventLog
from shared.store import make_engine, metadata
from shared.subjects import EVENTS_STREAM, REJECTED_STREAM
from tests import factories
from tests.conftest import NatsServer
from tests.factories import Q1, Q2
from tests.integration.intake_fixtures import SOURCES, intake_settings

pytestmark = pytest.mark.anyio

PARTNER = "centre-social-nord"  # a configured partner, submitting as itself
ENVELOPE = f"FPH-2026-{Q1}"
DECIDED_AT = "2026-03-20T10:00:00+01:00"


# --- the platform -------------------------------------------------------------------


@pytest.fixture
def intake_database_url(new_database: Callable[[str], str]) -> str:
    """Intake's own database beside review's: both keep ``fph_event_index`` (the events they
    applied), so they never share one. Another file, or another PostgreSQL schema."""
    return new_database("intake")


@asynccontextmanager
async def serving(app: Any, base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client


class Platform:
    """Intake and review running in-process, a partner's client, and the log."""

    def __init__(
        self, js: JetStreamContext, nats_url: str, review_db: str, partner: SubmitClient
    ) -> None:
        self.js = js
        self.log = EventLog(js)
        self.nats_url = nats_url
        self.review_db = review_db
        self.partner = partner
        self.stack = AsyncExitStack()
        self.review_stack = AsyncExitStack()
        self.apps: dict[str, Any] = {}
        self.intake: httpx.AsyncClient
        self.review: httpx.AsyncClient

    async def start(self, intake_db: str) -> None:
        ia = self.apps["intake"] = intake_app(intake_settings(self.nats_url, intake_db))
        self.intake = await self.stack.enter_async_context(serving(ia, "http://intake"))
        await self.start_review()

    async def start_review(self) -> None:
        settings = ReviewSettings(
            nats_url=self.nats_url,
            review_database_url=self.review_db,
            quartiers=[Q1, Q2],
            sources=SOURCES.split(","),
        )
        self.review_stack = AsyncExitStack()
        app = self.apps["review"] = review_app(settings)
        self.review = await self.review_stack.enter_async_context(serving(app, "http://review"))

    async def stop_review(self) -> None:
        await self.review_stack.aclose()

    async def stop(self) -> None:
        for app in self.apps.values():  # both inboxes finish their last fetch together
            runtime = getattr(app.state, "runtime", None)
            if runtime is not None:
                runtime.inbox.stop()
        await self.review_stack.aclose()
        await self.stack.aclose()

    async def caught_up(self, seq: int | None = None) -> int:
        """Wait until review has applied the log up to ``seq`` (default: its end now)."""
        seq = seq if seq is not None else await self.log.last_seq()
        health: dict[str, Any] = {}
        for _ in range(500):
            health = (await self.review.get("/health")).json()
            if health["log_position"] >= seq:
                return seq
            await asyncio.sleep(0.02)
        raise AssertionError(f"review never applied the log up to seq {seq}: {health}")

    # --- intake's side, through its HTTP API

    async def envie(self, quartier: str = Q1) -> str:
        r = await self.intake.post(
            "/envies",
            json={
                "quartier": quartier,
                "channel": "centre_social",
                "theme": "cadre_de_vie",
                "summary": "des bancs au square",
                "occurred_at": "2026-03-01T10:00:00+01:00",
            },
        )
        assert r.status_code == 201, r.text
        return str(r.json()["aggregate_id"])

    async def close_envie(self, envie_id: str, reason: str) -> None:
        r = await self.intake.post(f"/envies/{envie_id}/close", json={"reason": reason})
        assert r.status_code == 201, r.text

    async def porteur(self, quartier: str = Q1) -> str:
        r = await self.intake.post(
            "/porteurs",
            json={
                "quartier": quartier,
                "age_band": "26_59",
                "gender": "femme",
                "name": "Awa Diallo",
                "contact": "awa@example.org",
            },
        )
        assert r.status_code == 201, r.text
        return str(r.json()["aggregate_id"])

    # --- review's side

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A write through review's HTTP API that must be accepted."""
        r = await self.review.post(path, json=body)
        assert r.status_code == 201, (path, r.text)
        doc: dict[str, Any] = r.json()
        assert doc["status"] == "accepted" and doc["seq"] > 0
        return doc

    async def accompany(self, envie_id: str, porteur_id: str, quartier: str = Q1) -> str:
        doc = await self.post(
            "/projects",
            {
                "quartier": quartier,
                "title": "Des bancs au square",
                "envie_ids": [envie_id],
                "porteur_ids": [porteur_id],
                "partner": PARTNER,
                "occurred_at": "2026-03-05T10:00:00+01:00",
            },
        )
        return str(doc["aggregate_id"])

    async def as_partner(
        self, event_type: str, project_id: str, data: dict[str, Any], quartier: str = Q1
    ) -> Any:
        """Submit through the inbox as the partner; the receipt."""
        doc = factories.submission(
            event_type, aggregate_id=project_id, quartier=quartier, occurred_at=DECIDED_AT
        )
        doc["data"] = data
        return await self.partner.submit(doc, timeout=10)

    async def funding_answers(
        self, event_type: str, decided: dict[str, Any], project_id: str, **data: Any
    ) -> int:
        """Append funding's answer to an approved decision, as funding does (the decision's
        ``occurred_at``, caused by the decision); its seq."""
        logged = json.loads((await self.js.get_msg(EVENTS_STREAM, decided["seq"])).data)
        assert logged["event_id"] == decided["event_id"]
        answer = event_from_dict(
            factories.submission(
                event_type,
                aggregate_id=ENVELOPE,
                causation_id=decided["event_id"],
                occurred_at=logged["occurred_at"],
                data={"project_id": project_id, **data},
            )
        )
        return await self.append_as_funding(answer)

    async def append_as_funding(self, event: EventBase) -> int:
        """Append ``event`` as funding does (source and recording time set); its seq, once
        review has applied it."""
        recorded = with_recording(event, source="funding", recorded_at=datetime.now(UTC))
        seq = (await self.log.append(recorded, None)).seq
        await self.caught_up(seq)
        return seq

    async def project(self, project_id: str) -> dict[str, Any]:
        r = await self.review.get(f"/projects/{project_id}")
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    async def state(self, project_id: str) -> str:
        return str((await self.project(project_id))["state"])


@pytest.fixture
async def platform(
    nats_srv: NatsServer,
    nc: NATS,
    js: JetStreamContext,
    database_url: str,
    intake_database_url: str,
) -> AsyncIterator[Platform]:
    async with SubmitClient(nc, PARTNER) as partner:
        p = Platform(js, nats_srv.url, database_url, partner)
        try:
            await p.start(intake_database_url)
            yield p
        finally:
            await p.stop()


# --- helpers ----------------------------------------------------------------------

SUBMISSION = {"amount_requested_cents": 50000, "expected_participants": 20, "co_funding": []}


def decision(
    outcome: str = "approved",
    amount: int = 40000,
    members: int = 5,
    residents: int = 3,
    votes: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """A committee decision's data (the default one holds every rule)."""
    v = votes or (members - 1, 1, 0)
    return {
        "decision": outcome,
        "amount_approved_cents": amount,
        "votes": {"for": v[0], "against": v[1], "abstain": v[2]},
        "members_present": members,
        "residents_present": residents,
    }


def pairs(errors: Any) -> list[tuple[str, str]]:
    """(field, code) of a receipt's errors or of an HTTP answer's."""
    return [
        (e.field, e.code) if isinstance(e, FieldError) else (e["field"], e["code"])
        for e in errors or ()
    ]


# --- each guard, through HTTP and through the inbox ----------------------------------------

ACCOMPANY = {"title": "Un jardin", "stage": "emergence", "partner": PARTNER}
# Where each project-level type is written over HTTP.
PATHS = {
    "ProjectSubmitted": "submission",
    "CommitteeDecided": "decision",
    "ProjectCompleted": "completion",
    "ImpactAssessed": "impact",
    "MobilisationRecorded": "mobilisation",
}


@dataclass(frozen=True)
class Guard:
    name: str
    type: str
    project: str | None  # "accompanied", "submitted" (projects set up first), None: a new one
    data: dict[str, Any]  # event data; "@name" is replaced by the id set up under that name
    expected: list[tuple[str, str]]
    quartier: str = Q1


GUARDS = [
    Guard(
        "envie unknown",
        "ProjectAccompanied",
        None,
        {**ACCOMPANY, "envie_ids": ["@envie", "nope"], "porteur_ids": ["@porteur"]},
        [("data.envie_ids.1", "unknown_envie")],
    ),
    Guard(
        "envie of another quartier",
        "ProjectAccompanied",
        None,
        {**ACCOMPANY, "envie_ids": ["@envie_q2"], "porteur_ids": ["@porteur"]},
        [("data.envie_ids.0", "wrong_quartier")],
    ),
    Guard(
        "envie closed as duplicate",
        "ProjectAccompanied",
        None,
        {**ACCOMPANY, "envie_ids": ["@envie", "@duplicate"], "porteur_ids": ["@porteur"]},
        [("data.envie_ids.1", "envie_retracted")],
    ),
    Guard(
        "envie entered in error",
        "ProjectAccompanied",
        None,
        {**ACCOMPANY, "envie_ids": ["@in_error"], "porteur_ids": ["@porteur"]},
        [("data.envie_ids.0", "envie_retracted")],
    ),
    Guard(
        "porteur not registered",
        "ProjectAccompanied",
        None,
        {**ACCOMPANY, "envie_ids": ["@envie"], "porteur_ids": ["@porteur", "ghost"]},
        [("data.porteur_ids.1", "unknown_porteur")],
    ),
    Guard(
        "partner not configured",
        "ProjectAccompanied",
        None,
        {**ACCOMPANY, "envie_ids": ["@envie"], "porteur_ids": ["@porteur"], "partner": "asso-x"},
        [("data.partner", "unknown_partner")],
    ),
    Guard(
        "every reason at once",
        "ProjectAccompanied",
        None,
        {
            **ACCOMPANY,
            "envie_ids": ["nope", "@envie_q2", "@duplicate"],
            "porteur_ids": ["ghost"],
            "partner": "asso-x",
        },
        [
            ("data.envie_ids.0", "unknown_envie"),
            ("data.envie_ids.1", "wrong_quartier"),
            ("data.envie_ids.2", "envie_retracted"),
            ("data.porteur_ids.0", "unknown_porteur"),
            ("data.partner", "unknown_partner"),
        ],
    ),
    Guard(
        "project of another quartier",
        "ProjectAccompanied",
        "accompanied",
        {**ACCOMPANY, "envie_ids": ["@envie_q2"], "porteur_ids": ["@porteur"]},
        [("quartier", "wrong_quartier")],
        quartier=Q2,
    ),
    Guard(
        "decision on a project not submitted",
        "CommitteeDecided",
        "accompanied",
        decision(),
        [("aggregate_id", "wrong_state")],
    ),
    Guard(
        "votes not adding up to the members present",
        "CommitteeDecided",
        "submitted",
        decision(votes=(3, 1, 0)),
        [("data.votes", "rule")],
    ),
    Guard(
        "committee rule",
        "CommitteeDecided",
        "submitted",
        decision(residents=2),
        [("data.residents_present", "committee_rule")],
    ),
    Guard(
        "approved with no amount",
        "CommitteeDecided",
        "submitted",
        decision(amount=0),
        [("data.amount_approved_cents", "rule")],
    ),
    Guard(
        "approved above the amount requested",
        "CommitteeDecided",
        "submitted",
        decision(amount=50001),
        [("data.amount_approved_cents", "above_requested")],
    ),
    Guard(
        "decision in another quartier, breaking the rule, above the request",
        "CommitteeDecided",
        "submitted",
        decision(amount=60000, residents=1),
        [
            ("quartier", "wrong_quartier"),
            ("data.residents_present", "committee_rule"),
            ("data.amount_approved_cents", "above_requested"),
        ],
        quartier=Q2,
    ),
    Guard(
        "submission of a submitted project",
        "ProjectSubmitted",
        "submitted",
        SUBMISSION,
        [("aggregate_id", "wrong_state")],
    ),
    Guard(
        "completion before funding",
        "ProjectCompleted",
        "submitted",
        {"outcome": "achieved", "participants": 12},
        [("aggregate_id", "wrong_state")],
    ),
    Guard(
        "impact before funding",
        "ImpactAssessed",
        "accompanied",
        {"scores": {"4": 3, "5": 2}},
        [("aggregate_id", "wrong_state")],
    ),
    Guard(
        "mobilisation before funding",
        "MobilisationRecorded",
        "submitted",
        {"mechanisms": ["ecole"]},
        [("aggregate_id", "wrong_state")],
    ),
]


def _resolve(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("@"):
        return ids[value[1:]]
    if isinstance(value, list):
        return [_resolve(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, ids) for k, v in value.items()}
    return value


async def _by_http(p: Platform, guard: Guard, data: dict[str, Any], project_id: str | None) -> Any:
    if guard.type == "ProjectAccompanied":
        body = {**data, "quartier": guard.quartier}
        if project_id is not None:
            body["project_id"] = project_id
        return await p.review.post("/projects", json=body)
    assert project_id is not None
    if guard.quartier != Q1:  # the desk writes in the project's quartier: only the inbox can
        return None
    return await p.review.post(f"/projects/{project_id}/{PATHS[guard.type]}", json=data)


async def test_each_guard_is_refused_with_its_reasons_through_http_and_the_inbox(
    platform: Platform, js: JetStreamContext
):
    p = platform
    ids = {
        "envie": await p.envie(),
        "envie_q2": await p.envie(Q2),
        "duplicate": await p.envie(),
        "in_error": await p.envie(),
        "porteur": await p.porteur(),
    }
    await p.close_envie(ids["duplicate"], "duplicate")
    await p.close_envie(ids["in_error"], "entered_in_error")
    await p.caught_up()
    ids["accompanied"] = await p.accompany(ids["envie"], ids["porteur"])
    ids["submitted"] = await p.accompany(ids["envie"], ids["porteur"])
    await p.post(f"/projects/{ids['submitted']}/submission", SUBMISSION)
    log_end = await p.log.last_seq()
    rejected_before = (await js.stream_info(REJECTED_STREAM)).state.messages

    mismatches: list[str] = []
    copies = 0
    for guard in GUARDS:
        data = _resolve(guard.data, ids)
        project_id = ids[guard.project] if guard.project else None
        r = await _by_http(p, guard, data, project_id)
        if r is not None:
            copies += 1
            got = pairs(r.json().get("errors")) if r.status_code == 422 else r.text
            if r.status_code != 422 or got != guard.expected:
                mismatches.append(f"HTTP  {guard.name}: {r.status_code} {got}")
        target = project_id or uuid.uuid4().hex
        receipt = await p.as_partner(guard.type, target, data, quartier=guard.quartier)
        copies += 1
        if receipt.status != "rejected" or pairs(receipt.errors) != guard.expected:
            mismatches.append(f"inbox {guard.name}: {receipt.status} {pairs(receipt.errors)}")
    assert mismatches == [], "\n".join(mismatches)

    # Nothing refused reached the log; every refusal was kept, with its reasons.
    assert await p.log.last_seq() == log_end
    assert (await js.stream_info(REJECTED_STREAM)).state.messages == rejected_before + copies
    assert await p.state(ids["accompanied"]) == "accompanied"
    assert await p.state(ids["submitted"]) == "submitted"
    metrics = (await p.review.get("/metrics")).text
    assert (
        'fph_submissions_refused_total{reason="committee_rule",service="review",'
        'type="CommitteeDecided"} 3.0'
    ) in metrics  # HTTP and inbox for the rule alone, once in the inbox with other reasons


async def test_a_refused_submission_is_kept_byte_for_byte_with_its_reasons(
    platform: Platform, js: JetStreamContext
):
    p = platform
    envie, porteur = await p.envie(), await p.porteur()
    await p.caught_up()
    project_id = await p.accompany(envie, porteur)
    doc = factories.submission("CommitteeDecided", aggregate_id=project_id, data=decision())
    raw = json.dumps(doc, indent=1).encode()  # the partner's own serialisation
    receipt = await p.partner.submit_raw("CommitteeDecided", raw, timeout=10)
    assert receipt.status == "rejected" and receipt.event_id == doc["event_id"]
    assert pairs(receipt.errors) == [("aggregate_id", "wrong_state")]
    assert "is accompanied" in (receipt.errors or ())[0].message

    kept = await js.get_last_msg(REJECTED_STREAM, f"fph.rejected.{PARTNER}.CommitteeDecided")
    assert kept.data == raw
    assert kept.headers is not None
    assert pairs(json.loads(kept.headers["Fph-Errors"])) == [("aggregate_id", "wrong_state")]
    assert kept.headers["Fph-Inbox-Seq"] == str(receipt.inbox_seq)

    # Through HTTP the desk's submission is kept the same way, under the desk's source.
    r = await p.review.post(f"/projects/{project_id}/completion", json={"outcome": "partial"})
    assert r.status_code == 422  # the body does not even validate: participants missing
    assert ("participants", "missing") in pairs(r.json()["errors"])
    kept = await js.get_last_msg(REJECTED_STREAM, "fph.rejected.city.ProjectCompleted")
    assert json.loads(kept.data) == {"outcome": "partial"}


async def test_unknown_projects(platform: Platform):
    p = platform
    assert (await p.review.get("/projects/nope")).status_code == 404
    r = await p.review.post("/projects/nope/submission", json=SUBMISSION)
    assert r.status_code == 404
    receipt = await p.as_partner("ProjectSubmitted", "nope", SUBMISSION)
    assert pairs(receipt.errors) == [("aggregate_id", "wrong_state")]
    assert "'nope' does not exist" in (receipt.errors or ())[0].message
    assert await p.log.last_seq() == 0


# --- the paths --------------------------------------------------------------------


async def full_path(p: Platform) -> tuple[str, list[tuple[str, str]]]:
    """envie → accompanied → submitted → deferred → approved → (funding) → completed →
    superseding completion; the project and the (type, source) its timeline must show."""
    envie, other_envie, unrelated = await p.envie(), await p.envie(), await p.envie()
    porteur = await p.porteur()
    await p.caught_up()

    project_id = uuid.uuid4().hex
    accompany = {**ACCOMPANY, "envie_ids": [envie], "porteur_ids": [porteur]}
    receipt = await p.as_partner("ProjectAccompanied", project_id, accompany)
    assert receipt.status == "accepted", receipt
    assert await p.state(project_id) == "accompanied"
    await p.post(
        f"/projects/{project_id}/accompaniments",
        {
            "envie_ids": [other_envie],
            "porteur_ids": [porteur],
            "partner": PARTNER,
            "stage": "montage",
        },
    )
    await p.close_envie(other_envie, "withdrawn")  # the project's envie: in its timeline
    await p.close_envie(unrelated, "redirected")  # not the project's: not in its timeline
    receipt = await p.as_partner("ProjectSubmitted", project_id, SUBMISSION)
    assert receipt.status == "accepted", receipt
    assert await p.state(project_id) == "submitted"

    await p.post(f"/projects/{project_id}/decision", decision("deferred", amount=0))
    assert await p.state(project_id) == "submitted"
    decided = await p.post(f"/projects/{project_id}/decision", decision("approved", 40000))
    assert await p.state(project_id) == "approved"
    await p.funding_answers("GrantAwarded", decided, project_id, grant_id="g-1", amount_cents=40000)
    funded = await p.project(project_id)
    assert (funded["state"], funded["grant_id"]) == ("funded", "g-1")
    paid = factories.submission(
        "GrantPaid", aggregate_id=ENVELOPE, data={"grant_id": "g-1", "amount_cents": 20000}
    )
    await p.append_as_funding(event_from_dict(paid))  # the grant's: in the timeline too

    await p.post(
        f"/projects/{project_id}/accompaniments",
        {
            "envie_ids": [envie],
            "porteur_ids": [porteur],
            "partner": PARTNER,
            "stage": "realisation",
        },
    )
    receipt = await p.as_partner("MobilisationRecorded", project_id, {"mechanisms": ["ecole"]})
    assert receipt.status == "accepted", receipt
    await p.post(f"/projects/{project_id}/impact", {"scores": {"3": 1, "4": 6}})
    assert await p.state(project_id) == "funded"
    await p.post(f"/projects/{project_id}/completion", {"outcome": "partial", "participants": 12})
    assert await p.state(project_id) == "completed"
    await p.post(f"/projects/{project_id}/mobilisation", {"mechanisms": ["affichage"]})
    await p.post(f"/projects/{project_id}/impact", {"scores": {"5": 4}})
    await p.post(f"/projects/{project_id}/completion", {"outcome": "achieved", "participants": 35})
    await p.caught_up()  # intake's closings too
    expected = [
        ("EnvieRecorded", "city"),
        ("EnvieRecorded", "city"),
        ("ProjectAccompanied", PARTNER),
        ("ProjectAccompanied", "city"),
        ("EnvieClosed", "city"),
        ("ProjectSubmitted", PARTNER),
        ("CommitteeDecided", "city"),
        ("CommitteeDecided", "city"),
        ("GrantAwarded", "funding"),
        ("GrantPaid", "funding"),
        ("ProjectAccompanied", "city"),
        ("MobilisationRecorded", PARTNER),
        ("ImpactAssessed", "city"),
        ("ProjectCompleted", "city"),
        ("MobilisationRecorded", "city"),
        ("ImpactAssessed", "city"),
        ("ProjectCompleted", "city"),
    ]
    return project_id, expected


async def test_the_full_path_from_envie_to_a_superseding_completion(platform: Platform):
    p = platform
    project_id, expected = await full_path(p)
    project = await p.project(project_id)
    timeline = project["timeline"]
    assert [(t["type"], t["source"]) for t in timeline] == expected
    seqs = [t["seq"] for t in timeline]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    decisions = [t for t in timeline if t["type"] == "CommitteeDecided"]
    assert [d["event"]["data"]["decision"] for d in decisions] == ["deferred", "approved"]
    award = next(t for t in timeline if t["type"] == "GrantAwarded")
    assert award["event"]["causation_id"] == decisions[1]["event_id"]
    assert award["event"]["aggregate_id"] == ENVELOPE
    completions = [t["event"]["data"] for t in timeline if t["type"] == "ProjectCompleted"]
    assert completions == [
        {"outcome": "partial", "participants": 12},
        {"outcome": "achieved", "participants": 35},
    ]
    envie_events = {t["event"]["aggregate_id"] for t in timeline if t["type"].startswith("Envie")}
    assert envie_events == set(project["envie_ids"])
    assert {
        t["event"]["aggregate_id"]
        for t in timeline
        if t["type"] not in ("EnvieRecorded", "EnvieClosed", "GrantAwarded", "GrantPaid")
    } == {project_id}

    assert project["state"] == "completed"
    assert project["stage"] == "realisation"
    assert len(project["envie_ids"]) == 2 and len(project["porteur_ids"]) == 1
    assert (project["amount_requested_cents"], project["amount_approved_cents"]) == (50000, 40000)
    assert project["grant_id"] == "g-1"
    assert (project["first_seq"], project["last_seq"]) == (seqs[2], seqs[-1])

    # A completed project cannot be accompanied again, nor decided upon.
    r = await p.review.post(
        f"/projects/{project_id}/accompaniments",
        json={
            "envie_ids": project["envie_ids"],
            "porteur_ids": project["porteur_ids"],
            "partner": PARTNER,
            "stage": "realisation",
        },
    )
    assert r.status_code == 422 and pairs(r.json()["errors"]) == [("aggregate_id", "wrong_state")]
    assert "is completed" in r.json()["errors"][0]["message"]


async def test_a_refused_grant_or_a_rejection_leads_back_to_a_new_submission(platform: Platform):
    p = platform
    envie, porteur = await p.envie(), await p.porteur()
    await p.caught_up()
    project_id = await p.accompany(envie, porteur)
    path = f"/projects/{project_id}"
    more = {"envie_ids": [envie], "porteur_ids": [porteur], "partner": PARTNER}

    await p.post(f"{path}/submission", SUBMISSION)
    await p.post(f"{path}/decision", decision("rejected", amount=0))
    assert await p.state(project_id) == "rejected"
    await p.post(f"{path}/accompaniments", {**more, "stage": "montage"})
    assert await p.state(project_id) == "rejected"
    await p.post(f"{path}/submission", SUBMISSION)
    assert await p.state(project_id) == "submitted"
    decided = await p.post(f"{path}/decision", decision("approved", 50000))
    receipt = await p.as_partner("ProjectAccompanied", project_id, {**ACCOMPANY, **more})
    assert receipt.status == "accepted", receipt  # accompanied again while approved
    assert await p.state(project_id) == "approved"

    await p.funding_answers("GrantRefused", decided, project_id, reason="envelope_exhausted")
    assert await p.state(project_id) == "refused"
    r = await p.review.post(f"{path}/completion", json={"outcome": "achieved", "participants": 3})
    assert r.status_code == 422 and pairs(r.json()["errors"]) == [("aggregate_id", "wrong_state")]
    await p.post(f"{path}/accompaniments", {**more, "stage": "realisation"})
    assert await p.state(project_id) == "refused"
    receipt = await p.as_partner(
        "ProjectSubmitted", project_id, {**SUBMISSION, "amount_requested_cents": 30000}
    )
    assert receipt.status == "accepted", receipt
    assert await p.state(project_id) == "submitted"

    # The new request is what a decision is held to now.
    r = await p.review.post(f"{path}/decision", json=decision("approved", 40000))
    assert r.status_code == 422
    assert pairs(r.json()["errors"]) == [("data.amount_approved_cents", "above_requested")]
    decided = await p.post(f"{path}/decision", decision("approved", 30000))
    await p.funding_answers("GrantAwarded", decided, project_id, grant_id="g-2", amount_cents=30000)
    project = await p.project(project_id)
    assert (project["state"], project["grant_id"]) == ("funded", "g-2")
    assert (project["amount_requested_cents"], project["amount_approved_cents"]) == (30000, 30000)
    assert [(t["type"], t["source"]) for t in project["timeline"]] == [
        ("EnvieRecorded", "city"),
        ("ProjectAccompanied", "city"),
        ("ProjectSubmitted", "city"),
        ("CommitteeDecided", "city"),
        ("ProjectAccompanied", "city"),
        ("ProjectSubmitted", "city"),
        ("CommitteeDecided", "city"),
        ("ProjectAccompanied", PARTNER),
        ("GrantRefused", "funding"),
        ("ProjectAccompanied", "city"),
        ("ProjectSubmitted", PARTNER),
        ("CommitteeDecided", "city"),
        ("GrantAwarded", "funding"),
    ]


# --- reading the projects -----------------------------------------------------------


def _gauge(metrics: str, quartier: str, state: str) -> str | None:
    prefix = f'fph_projects{{quartier="{quartier}",state="{state}"}} '
    return next(
        (line[len(prefix) :] for line in metrics.splitlines() if line.startswith(prefix)), None
    )


async def test_projects_by_quartier_and_state_and_their_metrics(platform: Platform):
    p = platform
    e1, e2, porteur = await p.envie(), await p.envie(Q2), await p.porteur()
    await p.caught_up()
    a = await p.accompany(e1, porteur)
    b = await p.accompany(e1, porteur)
    c = await p.accompany(e2, porteur, quartier=Q2)
    d = await p.accompany(e1, porteur)
    await p.post(f"/projects/{b}/submission", SUBMISSION)
    await p.post(f"/projects/{d}/submission", SUBMISSION)
    await p.post(f"/projects/{d}/decision", decision())

    async def listed(**params: Any) -> list[str]:
        r = await p.review.get("/projects", params=params)
        assert r.status_code == 200, r.text
        return [x["project_id"] for x in r.json()["projects"]]

    assert await listed() == [a, b, c, d]
    assert await listed(quartier=Q1) == [a, b, d]
    assert await listed(quartier=Q2) == [c]
    assert await listed(state="accompanied") == [a, c]
    assert await listed(quartier=Q1, state="submitted") == [b]
    assert await listed(quartier=Q1, state="approved") == [d]
    assert await listed(quartier=Q2, state="submitted") == []
    assert await listed(limit=2, offset=1) == [b, c]
    r = await p.review.get("/projects", params={"quartier": "QN00000X"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "quartier"
    assert (await p.review.get("/projects", params={"state": "lost"})).status_code == 422

    metrics = (await p.review.get("/metrics")).text
    assert _gauge(metrics, Q1, "accompanied") == "1.0"
    assert _gauge(metrics, Q1, "submitted") == "1.0"
    assert _gauge(metrics, Q1, "approved") == "1.0"
    assert _gauge(metrics, Q2, "accompanied") == "1.0"
    assert _gauge(metrics, Q2, "submitted") is None

    await p.post(f"/projects/{a}/submission", SUBMISSION)
    metrics = (await p.review.get("/metrics")).text
    assert _gauge(metrics, Q1, "submitted") == "2.0"
    assert _gauge(metrics, Q1, "accompanied") is None  # no longer any: not a stale 1

    # The longest wait for a decision, per quartier, against the configured target.
    forty_days_ago = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    await p.post(f"/projects/{c}/submission", {**SUBMISSION, "occurred_at": forty_days_ago})
    waits = {
        s.labels["quartier"]: s.value
        for f in text_string_to_metric_families((await p.review.get("/metrics")).text)
        for s in f.samples
        if s.name == "fph_oldest_undecided_seconds"
    }
    assert set(waits) == {Q1, Q2}
    assert 0 <= waits[Q1] < 600  # b and a, submitted just now
    assert abs(waits[Q2] - 40 * 86400) < 600
    assert "fph_decision_target_seconds 2.592e+06" in (await p.review.get("/metrics")).text


# --- review's database is a cache of the log -------------------------------------------


async def test_reviews_database_rebuilt_from_the_log_gives_the_same_answers(
    platform: Platform, database_url: str, tmp_path: Path
):
    p = platform
    project_id, _ = await full_path(p)
    before = await p.project(project_id)
    listed = (await p.review.get("/projects")).json()
    end = await p.log.last_seq()

    await p.stop_review()
    if database_url.startswith("sqlite"):
        for path in tmp_path.glob("service.db*"):
            path.unlink()
        assert not list(tmp_path.glob("service.db*"))
    else:
        engine = make_engine(database_url)
        metadata.drop_all(engine)
        engine.dispose()
    await p.start_review()
    await p.caught_up(end)

    assert await p.project(project_id) == before
    assert (await p.review.get("/projects")).json() == listed
    # and it decides as before: the completed project may be completed again
    await p.post(f"/projects/{project_id}/completion", {"outcome": "achieved", "participants": 36})
    assert await p.log.last_seq() == end + 1
