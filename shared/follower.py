"""Keeps a service's read models in step with ``FPH_EVENTS`` (exactly-once effect).

The follower reads the log in order from its checkpoint with an ordered consumer,
applies the events its service cares about, and commits the state together with
the checkpoint. An event already applied (its id is in ``fph_event_index``, e.g.
written through by the service's own inbox) is skipped, so every event changes
the state once, whatever the crashes and redeliveries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from shared.codec import parse_logged
from shared.events import EventBase
from shared.log import EVENT_TYPE_HEADER, EventLog, subject_of
from shared.store import get_checkpoint, index_event, set_checkpoint
from shared.subjects import EVENTS_ALL, EVENTS_STREAM

log = logging.getLogger(__name__)

Apply = Callable[[Session, EventBase, int], None]
"""A service's projection: update its read models for one event at a sequence."""

BATCH = 1000


def apply_once(session: Session, apply: Apply, event: EventBase, seq: int) -> bool:
    """Apply ``event`` unless its id was applied before; True if it was applied now."""
    if not index_event(session, str(event.event_id), seq, event.type, subject_of(event)):
        return False
    apply(session, event, seq)
    return True


class Follower:
    """One service's projection of the log, with a checkpoint named ``name``."""

    def __init__(
        self,
        js: JetStreamContext,
        engine: Engine,
        name: str,
        types: Collection[str],
        apply: Apply,
    ) -> None:
        self.js = js
        self.engine = engine
        self.name = name
        self.types = frozenset(types)
        self.apply = apply
        self.log = EventLog(js)
        with Session(engine) as session:
            self.position = get_checkpoint(session, name)
        self._moved = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Follow the log in the background from the checkpoint."""
        self._task = asyncio.create_task(self._run(), name=f"follower-{self.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, seq: int, timeout: float = 60.0) -> None:
        """Return once every event up to ``seq`` is applied (raise TimeoutError after timeout)."""

        async def reached() -> None:
            async with self._moved:
                await self._moved.wait_for(lambda: self.position >= seq)

        if self.position >= seq:
            return
        if self._task is not None and self._task.done():
            self._task.result()  # surface the follower's failure
        await asyncio.wait_for(reached(), timeout)

    async def caught_up(self, timeout: float = 300.0) -> int:
        """Wait until the log as it is now is applied; the sequence reached."""
        end = await self.log.last_seq()
        await self.wait_for(end, timeout)
        return end

    async def _run(self) -> None:
        sub = await self.js.subscribe(
            EVENTS_ALL,
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            config=js_api.ConsumerConfig(
                deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.position + 1,
            ),
            pending_msgs_limit=-1,
        )
        try:
            while True:
                batch = [await sub.next_msg(timeout=None)]
                while len(batch) < BATCH and sub.pending_msgs:
                    batch.append(await sub.next_msg())
                self._apply_batch(batch)
                async with self._moved:
                    self._moved.notify_all()
        finally:
            await sub.unsubscribe()

    def _apply_batch(self, batch: list[Msg]) -> None:
        last = self.position
        with Session(self.engine) as session, session.begin():
            for msg in batch:
                seq = msg.metadata.sequence.stream
                if seq <= last:
                    continue  # at or below the checkpoint: already applied
                if (msg.headers or {}).get(EVENT_TYPE_HEADER) in self.types:
                    apply_once(session, self.apply, parse_logged(msg.data), seq)
                last = seq
            set_checkpoint(session, self.name, last)
        if last != self.position:
            log.debug("%s applied up to seq %d", self.name, last)
        self.position = last
