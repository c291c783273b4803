"""The indicators service's ``/metrics``: refused submissions from ``FPH_REJECTED`` and the
envelopes' remaining cents from the log, read from the store (a restart resets nothing,
counts nothing twice), and the whole page accepted by ``promtool check metrics``."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families

from services.indicators import store
from shared.client import SubmitClient
from shared.codec import event_from_dict
from shared.events import with_recording
from shared.log import EventLog
from shared.runtime import ServiceRuntime
from tests import factories
from tests.conftest import NatsServer
from tests.factories import Q1, Q2
from tests.integration.test_indicators import running, settings_for

pytestmark = pytest.mark.anyio

ENVELOPE = f"FPH-2026-{Q1}"


def envelope_events() -> list[dict[str, Any]]:
    s = factories.submission
    return [
        s("EnvelopeOpened", aggregate_id=ENVELOPE, data={
            "year": 2026, "amount_cents": 1_000_000, "cap_per_project_cents": 200_000,
            "funders": [{"funder": "ville", "amount_cents": 1_000_000}]}),
        s("EnvelopeToppedUp", aggregate_id=ENVELOPE,
          data={"amount_cents": 50_000, "funder": "etat"}),
        s("GrantAwarded", aggregate_id=ENVELOPE,
          data={"grant_id": "g1", "project_id": "p1", "amount_cents": 60_000}),
        s("GrantPaid", aggregate_id=ENVELOPE, data={"grant_id": "g1", "amount_cents": 60_000}),
        s("GrantSettled", aggregate_id=ENVELOPE,
          data={"grant_id": "g1", "spent_cents": 50_000, "returned_cents": 10_000}),
    ]  # fmt: skip


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def promtool_check(text: str) -> None:
    """``promtool check metrics`` (Debian's prometheus package; `make test` installs it)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: `make test` installs Debian's prometheus package"
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_refusals_and_envelopes_in_metrics(
    nats_srv: NatsServer,
    js: JetStreamContext,
    intake: ServiceRuntime,
    client: SubmitClient,
    database_url: str,
    new_database: Callable[[str], str],
) -> None:
    bad_envie = factories.submission(quartier="QN99999X", data={"theme": "nope"})
    receipts = [
        await client.submit(bad_envie),
        await client.submit(factories.submission("GrantAwarded", aggregate_id=ENVELOPE)),
        await client.submit(factories.submission(data={"theme": "nope"})),
        await client.submit(factories.submission()),
    ]
    assert [r.status for r in receipts] == ["rejected"] * 3 + ["accepted"]
    expected: dict[tuple[str, str], int] = {}
    for receipt, event_type in zip(receipts[:3], ["EnvieRecorded", "GrantAwarded",
                                                   "EnvieRecorded"], strict=True):  # fmt: skip
        for code in {e.code for e in receipt.errors or []}:
            expected[(event_type, code)] = expected.get((event_type, code), 0) + 1
    assert expected == {
        ("EnvieRecorded", "unknown_quartier"): 1,
        ("EnvieRecorded", "enum"): 2,  # two refused themes
        ("GrantAwarded", "reserved_type"): 1,
    }

    now = datetime.now(UTC)
    log = EventLog(js)
    for doc in envelope_events():
        await log.append(with_recording(event_from_dict(doc), source="city", recorded_at=now), None)
    last = await log.last_seq()

    store_url = new_database("indicators")
    settings = settings_for(nats_srv, store_url)

    async def scrape(c: httpx.AsyncClient, refused: int) -> str:
        for _ in range(200):  # FPH_REJECTED is counted by its own follower: wait for it
            text = (await c.get("/metrics")).text
            counted = samples(text, "fph_rejected_submissions_total")
            if sum(counted.values()) >= refused:
                return text
            await asyncio.sleep(0.05)
        raise TimeoutError(text)

    refused_total = sum(expected.values())
    async with running(settings, last) as c:
        text = await scrape(c, refused_total)
        promtool_check(text)
    counted = samples(text, "fph_rejected_submissions_total")
    assert counted == {
        (("reason", code), ("type", event_type)): float(n)
        for (event_type, code), n in expected.items()
    }
    remaining = samples(text, "fph_log_envelope_remaining_cents")
    assert remaining == {
        (("envelope", ENVELOPE), ("quartier", Q1), ("year", "2026")): 1_000_000.0
    }  # 1,000,000 + 50,000 topped up + 10,000 returned - 60,000 awarded
    assert samples(text, "fph_log_envelope_credited_cents") == {
        (("envelope", ENVELOPE), ("quartier", Q1), ("year", "2026")): 1_060_000.0
    }
    assert samples(text, "fph_projection_lag") == {(("service", "indicators"),): 0.0}

    # A store written by an older projection (here: version 1, before the envelopes'
    # ledger) is emptied and rebuilt from the log at start-up.
    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(store.envelopes.delete())
        conn.execute(store.store_meta.update().values(value="1"))
    engine.dispose()

    # A restart counts nothing twice; a new refusal is added to the stored counts.
    await client.submit(factories.submission(quartier=Q2, data={"theme": "nope"}))
    async with running(settings, last) as c:
        text = await scrape(c, refused_total + 1)
        promtool_check(text)
    again = samples(text, "fph_rejected_submissions_total")
    key = (("reason", "enum"), ("type", "EnvieRecorded"))
    assert again == {**counted, key: counted[key] + 1}
    assert samples(text, "fph_log_envelope_remaining_cents") == remaining
