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
from collections.abc import Mapping, Sequence

from nats.js import JetStreamContext
from nats.js import api as js_api
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from shared.codec import parse_logged
from shared.events import EventBase
from shared.log import EVENT_TYPE_HEADER, EventLog, subject_of
from shared.model import Projection
from shared.reader import LoggedMessage, OrderedReader
from shared.store import IndexedEvent, find_events, get_checkpoint, index_events, set_checkpoint

log = logging.getLogger(__name__)

MSG_ID = js_api.Header.MSG_ID.value

WRITTEN_HERE_LIMIT = 100_000


def apply_new(
    session: Session,
    projection: Projection,
    events: Sequence[tuple[EventBase, int]],
    known: Mapping[str, IndexedEvent] | None = None,
) -> set[str]:
    """Index ``events`` and apply those never applied before (each id once, its first
    occurrence in log order); the ids applied. ``known``: the index entries among them,
    if the caller has just looked them up."""
    new = index_events(
        session,
        [IndexedEvent(str(e.event_id), seq, e.type, subject_of(e)) for e, seq in events],
        known,
        track_subjects=getattr(projection, "tracks_subjects", True),
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
        threaded: bool = False,
    ) -> None:
        self.js = js
        self.engine = engine
        self.name = name
        self.projection = projection
        self.threaded = threaded
        """Apply in a worker thread, reading on meanwhile: only for a database no other
        code of the process writes (the indicators'), never beside an inbox."""
        self.log = EventLog(js)
        with Session(engine) as session:
            self.position = get_checkpoint(session, name)
        self._moved = asyncio.Condition()
        self.written_here: set[str] = set()
        """Ids this process appended and already applied: skipped without a look-up."""
        self._task: asyncio.Task[None] | None = None
        self._applying: asyncio.Future[None] | None = None

    def note_written(self, event_id: str) -> None:
        """The inbox appended and applied ``event_id``: skip it cheaply when it comes by."""
        if len(self.written_here) > WRITTEN_HERE_LIMIT:
            self.written_here.clear()  # only an optimisation: the index check still holds
        self.written_here.add(event_id)

    async def start(self) -> None:
        """Follow the log in the background from the checkpoint."""
        self._task = asyncio.create_task(self._run(), name=f"follower-{self.name}")

    async def stop(self) -> None:
        """Stop following; a batch being applied in a worker thread is let finish first."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._applying is not None:
            with contextlib.suppress(Exception):
                await self._applying

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
        async with OrderedReader(self.js, self.position + 1) as reader:
            while True:
                batch = await reader.next_batch()
                if self.threaded:
                    # shielded: on stop() the thread finishes its batch and stop() waits for it
                    self._applying = asyncio.ensure_future(
                        asyncio.to_thread(self._apply_batch, batch)
                    )
                    await asyncio.shield(self._applying)
                else:
                    self._apply_batch(batch)
                async with self._moved:
                    self._moved.notify_all()

    def _apply_batch(self, messages: list[LoggedMessage]) -> None:
        last = apply_messages(
            self.engine, self.name, self.projection, self.position, messages, self.written_here
        )
        if last != self.position:
            log.debug("%s applied up to seq %d", self.name, last)
        self.position = last


def apply_messages(
    engine: Engine,
    name: str,
    projection: Projection,
    position: int,
    messages: Sequence[LoggedMessage],
    written_here: set[str] | None = None,
) -> int:
    """Apply the log messages after ``position`` (in order, no gap) in one transaction
    with the checkpoint ``name``; the new position. Shared by the live follower and the
    audit replay, so both compute the same state the same way.

    Messages at or below ``position`` are skipped (redelivery); ids in ``written_here``
    (appended and applied by this process's inbox) are skipped without a look-up.
    """
    last = position
    relevant: list[LoggedMessage] = []
    every: list[tuple[int, bytes]] = []
    for msg in messages:
        if msg.seq <= last:
            continue  # at or below the checkpoint: already applied
        if msg.seq != last + 1:
            raise RuntimeError(f"gap in the log: seq {msg.seq} after {last}")
        every.append((msg.seq, msg.data))
        if msg.headers.get(EVENT_TYPE_HEADER) in projection.followed_types:
            msg_id = msg.headers.get(MSG_ID, "")
            if written_here and msg_id in written_here:
                written_here.discard(msg_id)
            else:
                relevant.append(msg)
        last = msg.seq
    if last == position:
        return position
    with Session(engine) as session, session.begin():
        # Skip, without parsing, what was applied before (e.g. by the service's own inbox).
        known = find_events(session, (m.headers.get(MSG_ID, "") for m in relevant))
        events = [
            (parse_logged(m.data), m.seq)
            for m in relevant
            if m.headers.get(MSG_ID, "") not in known
        ]
        apply_new(session, projection, events, known)
        observe = getattr(projection, "observe", None)
        if observe is not None:  # a projection that sees every message (the digest)
            observe(session, every)
        set_checkpoint(session, name, last)
    return last
