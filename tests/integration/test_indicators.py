"""The indicators service in-process (its app, its lifespan, a real stream and store).

A hand-built log is appended to ``FPH_EVENTS``; ``GET /indicators`` must give the
reference's figures (``services.indicators.reference``, the oracle), each with a lineage
URL that works, ``as_of`` with the CONTRACT 4 digest of the stream's payloads, past
``as_of_seq`` as the figures stood then, 4xx naming the field on bad parameters, a
parsable ``/metrics``, and the same answers after the store is deleted and rebuilt.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from services.indicators import reference
from services.indicators.app import create_app
from services.indicators.settings import IndicatorsSettings
from shared.codec import event_from_dict
from shared.events import EventBase, with_recording
from shared.log import EventLog, digest_of
from shared.store import metadata
from shared.subjects import EVENTS_STREAM
from tests.conftest import NatsServer
from tests.factories import Q1, Q2, submission

pytestmark = pytest.mark.anyio

Log = list[tuple[int, EventBase]]
Y2026 = ("2026-01-01", "2027-01-01")
Y2027 = ("2027-01-01", "2028-01-01")


def decided(decision: str, amount: int = 0) -> dict[str, Any]:
    return {"decision": decision, "amount_approved_cents": amount}


def hand_built() -> list[dict[str, Any]]:
    """Two quartiers, the Paris new year, a retraction, a superseded completion, ..."""
    s = submission
    return [
        s("EnvieRecorded", aggregate_id="e1", occurred_at="2026-03-01T10:00:00+01:00"),
        s("EnvieRecorded", aggregate_id="e2", occurred_at="2026-12-31T22:30:00Z"),  # 2026
        s("EnvieRecorded", aggregate_id="e3", occurred_at="2026-12-31T23:30:00Z"),  # 2027
        s("EnvieRecorded", aggregate_id="e4", quartier=Q2, occurred_at="2026-05-01T10:00:00Z"),
        s("EnvieClosed", aggregate_id="e2", occurred_at="2027-01-02T10:00:00+01:00",
          data={"reason": "duplicate"}),
        s("EnvieClosed", aggregate_id="e1", occurred_at="2026-04-02T10:00:00+02:00",
          data={"reason": "withdrawn"}),
        s("ProjectAccompanied", aggregate_id="p1", occurred_at="2026-03-05T10:00:00+01:00",
          data={"envie_ids": ["e1"], "porteur_ids": ["a", "b", "a"]}),
        s("ProjectAccompanied", aggregate_id="p2", quartier=Q2,
          occurred_at="2026-05-05T10:00:00+02:00",
          data={"envie_ids": ["e4"], "porteur_ids": ["b", "c"]}),
        s("ProjectSubmitted", aggregate_id="p1", occurred_at="2026-03-10T10:00:00+01:00"),
        s("CommitteeDecided", aggregate_id="p1", occurred_at="2026-03-20T10:00:00+01:00",
          data=decided("deferred")),
        s("ProjectSubmitted", aggregate_id="p1", occurred_at="2026-03-25T10:00:00+01:00"),
        s("CommitteeDecided", aggregate_id="p1", occurred_at="2026-04-20T10:00:00+02:00",
          data=decided("approved", 60_000)),
        s("ProjectSubmitted", aggregate_id="p2", quartier=Q2,
          occurred_at="2026-06-01T10:00:00+02:00"),
        s("CommitteeDecided", aggregate_id="p2", quartier=Q2,
          occurred_at="2026-06-04T10:00:00+02:00", data=decided("rejected")),
        s("GrantAwarded", aggregate_id=f"FPH-2026-{Q1}", occurred_at="2026-04-21T10:00:00+02:00",
          data={"grant_id": "g1", "project_id": "p1", "amount_cents": 60_000}),
        s("ProjectCompleted", aggregate_id="p1", occurred_at="2026-11-01T10:00:00+01:00",
          data={"outcome": "partial", "participants": 12}),
        s("ImpactAssessed", aggregate_id="p1", occurred_at="2026-11-02T10:00:00+01:00",
          data={"scores": {"4": 3, "5": 1}}),
        s("MobilisationRecorded", aggregate_id="p1", occurred_at="2026-03-02T10:00:00+01:00",
          data={"mechanisms": ["ecole", "affichage"]}),
        s("MobilisationRecorded", aggregate_id="p2", quartier=Q2,
          occurred_at="2026-05-02T10:00:00+02:00", data={"mechanisms": ["ecole"]}),
        # p1's completion superseded, into 2027 (Paris new year's night)
        s("ProjectCompleted", aggregate_id="p1", occurred_at="2026-12-31T23:10:00Z",
          data={"outcome": "achieved", "participants": 30}),
        s("ProjectCompleted", aggregate_id="p2", quartier=Q2,
          occurred_at="2026-09-01T10:00:00+02:00",
          data={"outcome": "abandoned", "participants": 3}),
    ]  # fmt: skip


async def append_log(js: JetStreamContext, docs: list[dict[str, Any]]) -> Log:
    events = EventLog(js)
    now = datetime.now(UTC)
    log: Log = []
    for doc in docs:
        event = with_recording(event_from_dict(doc), source="demo", recorded_at=now)
        appended = await events.append(event, None)
        log.append((appended.seq, event))
    return log


async def stream_digest(js: JetStreamContext, upto: int) -> str:
    bodies = [(await js.get_msg(EVENTS_STREAM, seq)).data or b"" for seq in range(1, upto + 1)]
    return digest_of(bodies)


def settings_for(nats_srv: NatsServer, database_url: str) -> IndicatorsSettings:
    return IndicatorsSettings(
        nats_url=nats_srv.url,
        indicators_database_url=database_url,
        quartiers=f"{Q1},{Q2}",  # comma-separated, as from the environment
    )


@asynccontextmanager
async def running(settings: IndicatorsSettings, until_seq: int) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, once it has projected the log up to ``until_seq``."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            for _ in range(300):
                if (await c.get("/health")).json()["log_position"] >= until_seq:
                    break
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError(f"indicators did not reach seq {until_seq}")
            yield c


def params(
    quartier: str | None, period: tuple[str, str], as_of_seq: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"from": period[0], "to": period[1]}
    if quartier is not None:
        out["quartier"] = quartier
    if as_of_seq is not None:
        out["as_of_seq"] = as_of_seq
    return out


def expected(
    log: Log, quartier: str | None, period: tuple[str, str], as_of_seq: int | None = None
) -> dict[str, Any]:
    return reference.compute(
        log,
        quartier=quartier,
        start=date.fromisoformat(period[0]),
        end=date.fromisoformat(period[1]),
        as_of_seq=as_of_seq,
    )


async def figures(c: httpx.AsyncClient, **kw: Any) -> dict[str, Any]:
    r = await c.get("/indicators", params=params(**kw))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def values(body: dict[str, Any]) -> dict[str, Any]:
    return {code: entry["value"] for code, entry in body["indicators"].items()}


def drop_store(database_url: str) -> None:
    """Delete the store: the SQLite file (and its WAL), or every table on PostgreSQL."""
    if database_url.startswith("sqlite"):
        path = Path(database_url.removeprefix("sqlite:///"))
        for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            p.unlink(missing_ok=True)
        return
    engine = sa.create_engine(database_url)
    metadata.drop_all(engine)
    engine.dispose()


QUERIES: list[dict[str, Any]] = [
    {"quartier": Q1, "period": Y2026},
    {"quartier": Q2, "period": Y2026},
    {"quartier": None, "period": Y2026},
    {"quartier": None, "period": Y2027},
    {"quartier": Q1, "period": ("2026-12-31", "2027-01-02")},
    {"quartier": None, "period": ("2025-01-01", "2029-01-01")},
]


async def test_indicators_match_the_reference(
    nats_srv: NatsServer, js: JetStreamContext, database_url: str
) -> None:
    log = await append_log(js, hand_built())
    last = log[-1][0]
    assert last == len(log)
    settings = settings_for(nats_srv, database_url)
    before: dict[str, Any] = {}

    async with running(settings, last) as c:
        full_digest = await stream_digest(js, last)
        for query in QUERIES:
            body = await figures(c, **query)
            assert values(body) == expected(log, **query), query
            assert body["quartier"] == query["quartier"]
            assert (body["from"], body["to"]) == query["period"]
            assert body["as_of"] == {"seq": last, "digest": full_digest}
            assert set(body["indicators"]) == set(reference.INDICATOR_CODES)
            before[str(query)] = body

        # Sanity: the hand-built log exercises what it means to.
        y2026_all = values(before[str(QUERIES[2])])
        assert y2026_all["envies_recueillies"] == 2  # e1, e4 (e2 retracted; e3 is 2027)
        assert y2026_all["porteurs"] == 3 and y2026_all["projets_accompagnes"] == 2
        assert y2026_all["participants"] == 3  # p1's completion moved to 2027
        assert y2026_all["delai_decision_jours"] == 14.5  # median of 26 and 3 days

        # Every lineage URL works and gives the same value.
        body = before[str(QUERIES[0])]
        for code, entry in body["indicators"].items():
            r = await c.get(entry["lineage"])
            assert r.status_code == 200, (code, r.text)
            lineage = r.json()
            assert lineage["code"] == code
            assert lineage["value"] == entry["value"], code
            assert lineage["as_of"] == body["as_of"]
        lineage = (await c.get(body["indicators"]["envies_recueillies"]["lineage"])).json()
        statuses = {c_["event_id"]: c_["status"] for c_ in lineage["contributions"]}
        assert sorted(statuses.values()) == ["counted", "retracted"]

        # The past: as_of_seq gives the figures as they stood, with that prefix's digest.
        for as_of in (0, 1, 4, 5, 12, 16, 19, last):
            for query in QUERIES[2:4] + QUERIES[:1]:
                body = await figures(c, **query, as_of_seq=as_of)
                assert values(body) == expected(log, **query, as_of_seq=as_of), (as_of, query)
                assert body["as_of"] == {"seq": as_of, "digest": await stream_digest(js, as_of)}

        # Bad parameters: 4xx naming the field.
        async def refused(path: str, query: dict[str, Any], status: int, field: str) -> None:
            r = await c.get(path, params=query)
            assert r.status_code == status, (query, r.text)
            assert field in r.text, r.text

        await refused("/indicators", params("QN99999X", Y2026), 422, "quartier")
        await refused("/indicators", params(Q1, ("2026-01-01", "2026-01-01")), 422, "to")
        await refused("/indicators", params(Q1, ("2026-02-01", "2026-01-01")), 422, "to")
        await refused("/indicators", {"to": "2027-01-01"}, 422, "from")
        await refused("/indicators", {"from": "2026-13-01", "to": "2027-01-01"}, 422, "from")
        await refused("/indicators", params(None, Y2026, last + 1), 422, "as_of_seq")
        await refused("/indicators", params(None, Y2026, -1), 422, "as_of_seq")
        await refused("/indicators/nope/lineage", params(None, Y2026), 404, "code")
        await refused("/indicators/porteurs/lineage", params("QN99999X", Y2026), 422, "quartier")

        # /metrics: Prometheus text with the indicators and the projection lag.
        r = await c.get("/metrics")
        assert r.status_code == 200
        families = {f.name: f for f in text_string_to_metric_families(r.text)}
        assert "fph_indicator" in families and "fph_projection_lag" in families
        assert {s.labels["quartier"] for s in families["fph_indicator"].samples} == {Q1, Q2}
        assert [s.value for s in families["fph_projection_lag"].samples] == [0.0]

    # Delete the store, restart: the log is replayed into the same figures and digests.
    drop_store(database_url)
    async with running(settings, last) as c:
        for query in QUERIES:
            assert await figures(c, **query) == before[str(query)], query
        body = await figures(c, **QUERIES[2], as_of_seq=5)
        assert values(body) == expected(log, **QUERIES[2], as_of_seq=5)
        assert body["as_of"]["digest"] == await stream_digest(js, 5)
