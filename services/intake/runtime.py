"""Intake's running parts: NATS connection, database, log follower, inbox processor."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import nats
from nats.aio.client import Client as NATS
from sqlalchemy.engine import Engine

from services.intake import store
from services.intake.settings import IntakeSettings
from shared.client import SubmitClient
from shared.events import types_owned_by
from shared.follower import Follower
from shared.inbox import InboxProcessor
from shared.log import require_streams
from shared.metrics import ServiceMetrics
from shared.store import make_engine, metadata

log = logging.getLogger("fph.intake")

OWNER = "intake"
FOLLOWER_NAME = "intake-v1"


@dataclass
class IntakeRuntime:
    settings: IntakeSettings
    nc: NATS
    engine: Engine
    follower: Follower
    inbox: InboxProcessor
    client: SubmitClient
    metrics: ServiceMetrics
    inbox_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: IntakeSettings) -> IntakeRuntime:
        """Connect, create tables, catch up with the log, then decide submissions."""
        nc = await nats.connect(settings.nats_url, name="fph-intake", max_reconnect_attempts=-1)
        js = nc.jetstream()
        await require_streams(js)
        engine = make_engine(settings.intake_database_url)
        metadata.create_all(engine)
        model = store.IntakeModel()
        follower = Follower(js, engine, FOLLOWER_NAME, model)
        await follower.start()
        metrics = ServiceMetrics(OWNER)
        inbox = InboxProcessor(
            js=js,
            engine=engine,
            settings=settings,
            owner=OWNER,
            owned_types=frozenset(types_owned_by(OWNER)),
            model=model,
            follower=follower,
            gatekeeper=True,
            outcomes=metrics.outcomes(),
        )
        client = SubmitClient(nc, settings.intake_desk_source)
        await client.start()
        rt = cls(settings, nc, engine, follower, inbox, client, metrics)
        reached = await follower.caught_up()
        log.info("intake caught up with the log at seq %d", reached)
        rt.inbox_task = asyncio.create_task(inbox.run(), name="intake-inbox")
        return rt

    def inbox_running(self) -> bool:
        return self.inbox_task is not None and not self.inbox_task.done()

    async def stop(self) -> None:
        self.inbox.stop()
        if self.inbox_task is not None:
            try:
                await asyncio.wait_for(self.inbox_task, 10)
            except Exception:
                log.exception("inbox processor stopped with an error")
        await self.follower.stop()
        await self.client.close()
        try:
            await self.nc.drain()
        except Exception:  # reconnecting or closed: nothing left to flush
            await self.nc.close()
        self.engine.dispose()
