"""Reading a stream in order, in batches, with memory bounded whatever its length.

``OrderedReader`` pulls from an ephemeral JetStream consumer (no acks, in memory) with
explicit requests: it asks for a batch only when its buffer has room for it, so a reader
slower than the server (a replay, a service catching up on a long log) holds at most
``limit`` messages. nats-py's push "ordered consumer" cannot do that: its flow-control
replies count messages as delivered when they are received, so a slow callback lets the
whole stream pile up in memory, and past its pending-bytes limit it drops messages
(seen: 850 MB of RSS and one lost message while replaying 800,000 events).

Each batch follows the previous one exactly: a sequence seen again is dropped, and on a
stream with no holes (``contiguous``, as ``FPH_EVENTS``) a skipped sequence makes the
reader start a new consumer at the first missing one. A request on which the server
falls silent (no message, no idle heartbeat: a node lost, a consumer removed) does the
same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from shared.subjects import EVENTS_ALL, EVENTS_STREAM

log = logging.getLogger(__name__)

BATCH = 1000
"""Messages per pull request, and the most a batch handed to the caller holds."""
REQUEST_EXPIRES = 5.0
"""Seconds a pull request waits for messages at the end of the stream."""
HEARTBEAT = 1.0
"""Seconds between the server's idle heartbeats on an open request; three missed (a node
lost, a consumer gone) and the reader starts a new consumer where it stands."""
STATUS = js_api.Header.STATUS.value


class LoggedMessage(NamedTuple):
    """One message of a stream as read from the server or from an export."""

    seq: int
    data: bytes
    headers: Mapping[str, str]
    subject: str = ""


class OrderedReader:
    """A stream (``FPH_EVENTS`` by default) in order from ``start_seq``, in batches.

    Use as ``async with OrderedReader(js, seq) as reader: batch = await reader.next_batch()``.
    """

    def __init__(
        self,
        js: JetStreamContext,
        start_seq: int,
        limit: int = 4 * BATCH,
        stream: str = EVENTS_STREAM,
        subject: str = EVENTS_ALL,
        contiguous: bool = True,
    ) -> None:
        self.js = js
        self.nc = js._nc  # the connection the context publishes on
        self.limit = max(limit, BATCH)
        self.stream = stream
        self.subject = subject
        self.contiguous = contiguous
        self.restarts = 0
        """Consumers started again at a missing sequence (see the module's docstring)."""
        self._next = start_seq
        self._buffer: list[LoggedMessage] = []
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._request_done = asyncio.Event()
        self._asked = 0
        self._heard = 0.0
        self._restart_at: int | None = None
        self._consumer = ""
        self._delivered = 0
        self._reconnects = 0
        self._requests = 0
        self._reply = ""
        self._inbox = ""
        self._sub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None

    async def __aenter__(self) -> OrderedReader:
        self._inbox = self.nc.new_inbox()
        self._sub = await self.nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
        try:
            await self._start_consumer(self._next)
        except BaseException:
            await self._sub.unsubscribe()
            raise
        self._task = asyncio.create_task(self._pull(), name=f"reader-{self.stream}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        with contextlib.suppress(Exception):
            await self._sub.unsubscribe()
        await self._delete_consumer(self._consumer)

    async def next_batch(self, timeout: float | None = None) -> list[LoggedMessage]:
        """The next messages (at most ``BATCH``), waiting for one if there are none yet;
        raises what stopped the reader (e.g. the server is gone for good)."""
        while not self._buffer:
            if self._failed is not None:
                raise self._failed
            self._ready.clear()
            await asyncio.wait_for(self._ready.wait(), timeout)
        batch, self._buffer = self._buffer[:BATCH], self._buffer[BATCH:]
        self._room.set()
        return batch

    # --- the consumer and its requests ---------------------------------------------------

    async def _start_consumer(self, start_seq: int) -> None:
        name = f"fph-reader-{uuid.uuid4().hex[:16]}"
        await self.js.add_consumer(
            self.stream,
            js_api.ConsumerConfig(
                name=name,
                deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=start_seq,
                ack_policy=js_api.AckPolicy.NONE,
                filter_subject=self.subject,
                inactive_threshold=60.0,
                mem_storage=True,
                num_replicas=1,
            ),
        )
        previous, self._consumer = self._consumer, name
        self._delivered = 0
        self._reconnects = self.nc.stats["reconnects"]
        if previous:
            await self._delete_consumer(previous)

    async def _delete_consumer(self, name: str) -> None:
        if name:
            with contextlib.suppress(Exception):
                await self.js.delete_consumer(self.stream, name)

    async def _pull(self) -> None:
        """Ask for a batch whenever the buffer has room for one (one request at a time)."""
        try:
            while True:
                while len(self._buffer) + BATCH > self.limit:
                    self._room.clear()
                    await self._room.wait()
                if self.nc.stats["reconnects"] != self._reconnects and self._restart_at is None:
                    # messages in flight during the reconnect may be lost: start afresh
                    self._restart_at = self._next
                if self._restart_at is not None:
                    restart_at, self._restart_at = self._restart_at, None
                    await self._start_consumer(restart_at)
                    self.restarts += 1
                self._asked = BATCH
                self._requests += 1
                self._reply = f"{self._inbox}.{self._requests}"
                self._request_done.clear()
                request = {
                    "batch": BATCH,
                    "expires": int(REQUEST_EXPIRES * 1e9),
                    "idle_heartbeat": int(HEARTBEAT * 1e9),
                }
                await self.nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self._consumer}",
                    json.dumps(request).encode(),
                    reply=self._reply,
                )
                await self._await_request()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the caller by next_batch
            self._failed = exc
            self._ready.set()

    async def _await_request(self) -> None:
        """Until the request is over; if the server falls silent (no message and no
        heartbeat for three heartbeats), start again from the next message."""
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._request_done.wait(), HEARTBEAT)
                return
            if loop.time() - self._heard > 3 * HEARTBEAT:
                log.warning(
                    "%s: no answer to a pull request; reading again from seq %d",
                    self.stream,
                    self._next,
                )
                self._restart_at = self._next
                return

    async def _on_message(self, msg: Msg) -> None:
        status = (msg.headers or {}).get(STATUS)
        if status is not None:
            if msg.subject != self._reply:
                return  # about an earlier request (e.g. 409 for a consumer replaced)
            self._heard = asyncio.get_running_loop().time()
            if status == "100":
                return  # an idle heartbeat
            if status not in ("404", "408"):  # 409 consumer deleted, 503 no responders...
                log.info("%s: pull request ended with status %s", self.stream, status)
                self._restart_at = self._next
            self._request_done.set()  # 404 no messages, 408 expired: ask again
            return
        meta = msg.metadata
        if meta.consumer != self._consumer or self._restart_at is not None:
            return  # from a consumer replaced, or about to be
        self._heard = asyncio.get_running_loop().time()
        seq = meta.sequence.stream
        self._asked -= 1
        if self._asked <= 0:
            self._request_done.set()
        # The consumer numbers its deliveries 1, 2, 3...: a hole is a message lost on the way.
        lost = meta.sequence.consumer != self._delivered + 1
        self._delivered = meta.sequence.consumer
        if seq < self._next and not lost:
            return  # delivered again: already buffered
        if lost or (seq > self._next and self.contiguous):
            log.warning(
                "%s: a message was lost on the way (stream seq %d, expected %d); reading"
                " again from %d",
                self.stream,
                seq,
                self._next,
                self._next,
            )
            self._restart_at = self._next
            self._request_done.set()
            return
        self._buffer.append(LoggedMessage(seq, msg.data, msg.headers or {}, msg.subject))
        self._next = seq + 1
        self._ready.set()
