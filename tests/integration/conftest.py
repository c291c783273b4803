"""Fixtures of the integration tests: intake in-process, a partner's client."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from services.intake.runtime import start_intake
from shared.client import SubmitClient
from shared.runtime import ServiceRuntime
from tests.conftest import NatsServer
from tests.integration.intake_fixtures import intake_settings


@pytest.fixture
async def intake(
    nats_srv: NatsServer, js: JetStreamContext, database_url: str
) -> AsyncIterator[ServiceRuntime]:
    rt = await start_intake(intake_settings(nats_srv.url, database_url))
    yield rt
    await rt.stop()


@pytest.fixture
async def client(nc: NATS, js: JetStreamContext) -> AsyncIterator[SubmitClient]:
    c = SubmitClient(nc, "centre-social-nord")
    await c.start()
    yield c
    await c.close()
