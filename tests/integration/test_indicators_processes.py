"""The indicators service as a real process (``python -m services.indicators``), killed
with SIGKILL in the middle of a burst of events and restarted: its figures and digests
must be those of an uninterrupted process on a fresh store (and of the reference)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from services.indicators import reference
from shared.codec import event_from_dict
from shared.events import EventBase, Mechanism, with_recording
from shared.log import Appended, EventLog
from tests.conftest import NatsServer
from tests.factories import Q1, Q2, submission
from tests.integration.processes import ServiceProcess

pytestmark = pytest.mark.anyio

CHUNK = 1000
Log = list[tuple[int, EventBase]]


@pytest.fixture
def second_database(new_database: Callable[[str], str]) -> str:
    """Another empty store like ``database_url`` (a SQLite file or a PostgreSQL schema)."""
    return new_database("uninterrupted")


def burst(n: int, seed: int = 7) -> list[EventBase]:
    """``n`` valid events of every followed type over 2026-2027, new years included."""
    rng = random.Random(seed)
    start = datetime(2025, 12, 20, tzinfo=UTC)
    now = datetime.now(UTC)
    envies: list[tuple[str, str]] = []
    projects: list[tuple[str, str]] = []
    out: list[EventBase] = []

    def when() -> str:
        if rng.random() < 0.2:
            instant = datetime(rng.choice([2025, 2026]), 12, 31, 23, tzinfo=UTC)
            instant += timedelta(minutes=rng.randint(-120, 120))
        else:
            instant = start + timedelta(minutes=rng.randint(0, 730 * 24 * 60))
        return instant.isoformat()

    def add(event_type: str, quartier: str, aggregate_id: str, **data: Any) -> None:
        doc = submission(
            event_type, occurred_at=when(), quartier=quartier, aggregate_id=aggregate_id, data=data
        )
        out.append(with_recording(event_from_dict(doc), source="demo", recorded_at=now))

    for i in range(n):
        kind = rng.random()
        if kind < 0.3 or not projects:
            if rng.random() < 0.7 or not envies:
                quartier = rng.choice([Q1, Q2])
                envies.append((f"e{i}", quartier))
                add("EnvieRecorded", quartier, f"e{i}")
                if rng.random() < 0.5:
                    projects.append((f"p{i}", quartier))
                    porteurs = [f"po{rng.randrange(500)}" for _ in range(rng.randint(1, 3))]
                    add("ProjectAccompanied", quartier, f"p{i}", envie_ids=[f"e{i}"],
                        porteur_ids=porteurs)  # fmt: skip
            else:
                envie, quartier = envies.pop(rng.randrange(len(envies)))
                reason = rng.choice(["duplicate", "entered_in_error", "withdrawn", "redirected"])
                add("EnvieClosed", quartier, envie, reason=reason)
            continue
        project, quartier = rng.choice(projects)
        if kind < 0.45:
            add("ProjectSubmitted", quartier, project)
        elif kind < 0.6:
            decision = rng.choice(["approved", "rejected", "deferred"])
            amount = rng.randint(1, 50_000) if decision == "approved" else 0
            add("CommitteeDecided", quartier, project, decision=decision,
                amount_approved_cents=amount)  # fmt: skip
        elif kind < 0.7:
            add("GrantAwarded", quartier, f"FPH-2026-{quartier}", grant_id=f"g{i}",
                project_id=project, amount_cents=rng.randint(1, 50_000))  # fmt: skip
        elif kind < 0.82:
            add("ProjectCompleted", quartier, project,
                outcome=rng.choice(["achieved", "partial", "abandoned"]),
                participants=rng.randint(0, 60))  # fmt: skip
        elif kind < 0.92:
            add("ImpactAssessed", quartier, project,
                scores={str(level): rng.randint(0, 5) for level in range(1, 6)})  # fmt: skip
        else:
            mechanisms = rng.sample([m.value for m in Mechanism], rng.randint(1, 3))
            add("MobilisationRecorded", quartier, project, mechanisms=mechanisms)
    return out


async def health(client: httpx.AsyncClient, proc: ServiceProcess) -> dict[str, Any] | None:
    try:
        r = await client.get(f"{proc.url}/health", timeout=2)
    except httpx.HTTPError:
        return None
    body: dict[str, Any] = r.json()
    return body


async def wait_position(
    client: httpx.AsyncClient, proc: ServiceProcess, seq: int, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.proc is not None and proc.proc.poll() is None, proc.log()
        h = await health(client, proc)
        if h is not None and h["log_position"] >= seq:
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{proc.name} did not reach seq {seq}:\n{proc.log()}")


QUERIES: list[dict[str, Any]] = [
    {"from": "2026-01-01", "to": "2027-01-01"},
    {"from": "2026-01-01", "to": "2027-01-01", "quartier": Q1},
    {"from": "2027-01-01", "to": "2028-01-01", "quartier": Q2},
    {"from": "2025-12-31", "to": "2026-01-02"},
    {"from": "2025-01-01", "to": "2029-01-01", "quartier": Q2},
]


async def run_burst(
    nats_srv: NatsServer,
    js: JetStreamContext,
    database_url: str,
    second_database: str,
    tmp_path: Path,
    n: int,
) -> None:
    env = {"FPH_NATS_URL": nats_srv.url, "FPH_QUARTIERS": f"{Q1},{Q2}"}
    crashed = ServiceProcess(
        "indicators", {**env, "FPH_INDICATORS_DATABASE_URL": database_url}, tmp_path / "a.log"
    )
    steady = ServiceProcess(
        "indicators", {**env, "FPH_INDICATORS_DATABASE_URL": second_database}, tmp_path / "b.log"
    )
    events = burst(n)
    n = len(events)  # a little more than asked: some steps write two events
    events_log = EventLog(js)
    log: Log = []
    killed_at: int | None = None
    async with httpx.AsyncClient() as client:
        try:
            for i in range(0, len(events), CHUNK):
                chunk = events[i : i + CHUNK]
                results = await events_log.append_many([(e, None) for e in chunk])
                for event, result in zip(chunk, results, strict=True):
                    assert isinstance(result, Appended) and not result.duplicate
                    log.append((result.seq, event))
                if i == 0:
                    crashed.start(wait=False)  # during the burst: up, then following
                    await wait_position(client, crashed, 0)
                if killed_at is None and crashed.proc is not None:
                    h = await health(client, crashed)
                    if h is not None and h["log_position"] > n // 3:
                        crashed.kill()
                        killed_at = h["log_position"]
            if killed_at is None:  # the burst outran the start: kill once past a third
                await wait_position(client, crashed, n // 3 + 1)
                crashed.kill()
                killed_at = n // 3 + 1
            assert crashed.proc is not None and crashed.proc.returncode == -9
            last = max(seq for seq, _ in log)
            assert last == n == len(log)
            assert killed_at < last, "killed after the burst was projected: not a crash mid-way"
            print(f"killed at log_position {killed_at} of {last}")

            crashed.start(wait=False)
            steady.start(wait=False)
            await wait_position(client, crashed, last)
            await wait_position(client, steady, last)
            assert (await health(client, crashed)) == {
                "status": "ok",
                "log_position": last,
                "lag": 0,
            }

            log.sort(key=lambda pair: pair[0])
            past = [None, killed_at, last // 2, 1]
            for k, query in enumerate(QUERIES):
                for as_of in past:
                    q = dict(query) if as_of is None else {**query, "as_of_seq": as_of}
                    a = (await client.get(f"{crashed.url}/indicators", params=q)).json()
                    b = (await client.get(f"{steady.url}/indicators", params=q)).json()
                    assert a["as_of"] == b["as_of"], q
                    values = {c: v["value"] for c, v in a["indicators"].items()}
                    assert values == {c: v["value"] for c, v in b["indicators"].items()}, q
                    if k < 2 and as_of in (None, killed_at):
                        assert values == reference.compute(
                            log,
                            quartier=query.get("quartier"),
                            start=date.fromisoformat(query["from"]),
                            end=date.fromisoformat(query["to"]),
                            as_of_seq=as_of,
                        ), q
        finally:
            crashed.stop()
            steady.stop()


async def test_kill_during_20000_event_burst_then_restart(
    nats_srv: NatsServer,
    js: JetStreamContext,
    database_url: str,
    second_database: str,
    tmp_path: Path,
) -> None:
    """kill -9 during a 20,000-event burst, restart: same figures and digests."""
    await run_burst(nats_srv, js, database_url, second_database, tmp_path, 20_000)
