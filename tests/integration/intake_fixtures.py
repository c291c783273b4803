"""In-process intake runtime on a real nats-server and a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.intake.runtime import IntakeRuntime
from services.intake.settings import IntakeSettings
from shared.client import SubmitClient
from tests.conftest import NatsServer

SOURCES = "city,centre-social-nord,demo,partner-b"


def intake_settings(nats_url: str, database_url: str, **overrides: object) -> IntakeSettings:
    values: dict[str, object] = {
        "nats_url": nats_url,
        "intake_database_url": database_url,
        "quartiers": "QN09301M,QN09302M",
        "sources": SOURCES,
    }
    values.update(overrides)
    return IntakeSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def intake(
    nats_srv: NatsServer, js: JetStreamContext, database_url: str
) -> AsyncIterator[IntakeRuntime]:
    rt = await IntakeRuntime.start(intake_settings(nats_srv.url, database_url))
    yield rt
    await rt.stop()


@pytest.fixture
async def client(nc: NATS, js: JetStreamContext) -> AsyncIterator[SubmitClient]:
    c = SubmitClient(nc, "centre-social-nord")
    await c.start()
    yield c
    await c.close()
