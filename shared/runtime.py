"""A service's running parts: NATS connection, database, log follower, inbox processor.

Every service that owns event types runs the same way: connect, create its
tables, follow the log until caught up, then decide its submissions. The
service brings its settings, its model (projection + decisions) and its name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NATS
from sqlalchemy.engine import Engine

from shared.client import SubmitClient
from shared.events import types_owned_by
from shared.follower import Follower
from shared.inbox import InboxProcessor
from shared.log import require_streams
from shared.metrics import ServiceMetrics
from shared.model import ServiceModel
from shared.settings import CommonSettings, nats_servers
from shared.store import make_engine, metadata

log = logging.getLogger(__name__)


@dataclass
class ServiceRuntime:
    name: str
    settings: CommonSettings
    nc: NATS
    engine: Engine
    model: ServiceModel
    follower: Follower
    inbox: InboxProcessor
    client: SubmitClient
    metrics: ServiceMetrics
    inbox_task: asyncio.Task[None] | None = None
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    write_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Held while this process appends, so its own writers never race each other."""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        name: str,
        settings: CommonSettings,
        *,
        database_url: str,
        desk_source: str,
        model: ServiceModel,
        gatekeeper: bool = False,
        background: Sequence[Callable[[ServiceRuntime], Coroutine[Any, Any, None]]] = (),
    ) -> ServiceRuntime:
        """Connect, create tables, catch up with the log, then decide submissions."""
        nc = await nats.connect(
            nats_servers(settings.nats_url), name=f"fph-{name}", max_reconnect_attempts=-1
        )
        js = nc.jetstream()
        await require_streams(js)
        engine = make_engine(database_url)
        metadata.create_all(engine)
        follower = Follower(js, engine, f"{name}-v1", model)
        await follower.start()
        metrics = ServiceMetrics(name)
        inbox = InboxProcessor(
            js=js,
            engine=engine,
            settings=settings,
            owner=name,
            owned_types=frozenset(types_owned_by(name)),
            model=model,
            follower=follower,
            gatekeeper=gatekeeper,
            outcomes=metrics.outcomes(),
        )
        client = SubmitClient(nc, desk_source)
        await client.start()
        rt = cls(name, settings, nc, engine, model, follower, inbox, client, metrics)
        inbox.write_lock = rt.write_lock
        reached = await follower.caught_up()
        log.info("%s caught up with the log at seq %d", name, reached)
        rt.inbox_task = asyncio.create_task(inbox.run(), name=f"{name}-inbox")
        rt.tasks = [
            asyncio.create_task(job(rt), name=f"{name}-{job.__name__}") for job in background
        ]
        return rt

    def inbox_running(self) -> bool:
        return self.inbox_task is not None and not self.inbox_task.done()

    async def stop(self) -> None:
        self.stopping.set()
        self.inbox.stop()
        for task in self.tasks:
            try:
                await asyncio.wait_for(task, 10)
            except Exception:
                log.exception("%s: %s stopped with an error", self.name, task.get_name())
        if self.inbox_task is not None:
            try:
                await asyncio.wait_for(self.inbox_task, 10)
            except Exception:
                log.exception("%s: inbox processor stopped with an error", self.name)
        await self.follower.stop()
        await self.client.close()
        try:
            await self.nc.drain()
        except Exception:  # reconnecting or closed: nothing left to flush
            await self.nc.close()
        self.engine.dispose()
