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
from collections.abc import Sequence

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from shared.codec import parse_logged
from shared.events import EventBase
from shared.log import EVENT_TYPE_HEADER, EventLog, subject_of
from shared.model import Projection
from shared.store import IndexedEvent, find_events, get_checkpoint, index_events, set_checkpoint
from shared.subjects import EVENTS_ALL, EVENTS_STREAM

log = logging.getLogger(__name__)

MSG_ID = js_api.Header.MSG_ID.value

BATCH = 1000
WRITTEN_HERE_LIMIT = 100_000


def apply_new(
    session: Session, projection: Projection, events: Sequence[tuple[EventBase, int]]
) -> set[str]:
    """Index ``events`` and apply those never applied before (each id once, its first
    occurrence in log order); the ids applied."""
    new = index_events(
        session,
        [IndexedEvent(str(e.event_id), seq, e.type, subject_of(e)) for e, seq in events],
    )
    fresh: list[tuple[EventBase, int]] = []
    pending = set(new)
    for e, seq in events:
        if str(e.event_id) in pending:
            pending.discard(str(e.event_id))  # one id twice in a batch is one event: the first
            fresh.append((e, seq))
    if fresh:
        projection.apply(session, fresh)
    return new


class Follower:
    """One service's projection of the log, with a checkpoint named ``name``."""

    def __init__(
        self,
        js: JetStreamContext,
        engine: Engine,
        name: str,
        projection: Projection,
    ) -> None:
        self.js = js
        self.engine = engine
        self.name = name
        self.projection = projection
        self.log = EventLog(js)
        with Session(engine) as session:
            self.position = get_checkpoint(session, name)
        self._moved = asyncio.Condition()
        self.written_here: set[str] = set()
        """Ids this process appended and already applied: skipped without a look-up."""
        self._task: asyncio.Task[None] | None = None

    def note_written(self, event_id: str) -> None:
        """The inbox appended and applied ``event_id``: skip it cheaply when it comes by."""
        if len(self.written_here) > WRITTEN_HERE_LIMIT:
            self.written_here.clear()  # only an optimisation: the index check still holds
        self.written_here.add(event_id)

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

    async def moved(self, timeout: float) -> None:
        """Wait until the follower applies something new (or ``timeout`` passes)."""
        async with self._moved:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moved.wait(), timeout)

    async def caught_up(self, timeout: float = 300.0) -> int:
        """Wait until the log as it is now is applied; the sequence reached."""
        end = await self.log.last_seq()
        await self.wait_for(end, timeout)
        return end

    async def _run(self) -> None:
        """Follow for ever: an error (NATS, the database, a gap) is logged and the reading
        starts again after the checkpoint, which only moves once a batch is committed."""
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "%s: following the log failed at seq %d; resuming in 1 s",
                    self.name,
                    self.position,
                )
                await asyncio.sleep(1.0)

    async def _follow(self) -> None:
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
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _apply_batch(self, batch: list[Msg]) -> None:
        last = self.position
        relevant: list[tuple[Msg, int]] = []
        every: list[tuple[int, bytes]] = []
        for msg in batch:
            seq = msg.metadata.sequence.stream
            if seq <= last:
                continue  # at or below the checkpoint: already applied
            if seq != last + 1:
                raise RuntimeError(f"gap in the log: seq {seq} after {last}")
            every.append((seq, msg.data))
            headers = msg.headers or {}
            if headers.get(EVENT_TYPE_HEADER) in self.projection.followed_types:
                msg_id = headers.get(MSG_ID, "")
                if msg_id in self.written_here:
                    self.written_here.discard(msg_id)
                else:
                    relevant.append((msg, seq))
            last = seq
        with Session(self.engine) as session, session.begin():
            # Skip, without parsing, what the service's own inbox already wrote through.
            known = find_events(session, (_msg_id(m) for m, _ in relevant))
            events = [(parse_logged(m.data), seq) for m, seq in relevant if _msg_id(m) not in known]
            apply_new(session, self.projection, events)
            observe = getattr(self.projection, "observe", None)
            if observe is not None:  # a projection that sees every message (the digest)
                observe(session, every)
            set_checkpoint(session, self.name, last)
        if last != self.position:
            log.debug("%s applied up to seq %d", self.name, last)
        self.position = last


def _msg_id(msg: Msg) -> str:
    return (msg.headers or {}).get(MSG_ID, "")
