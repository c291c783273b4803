"""``OrderedReader``'s own logic, with a stand-in for the server's pull consumer: it asks
for a batch only when its buffer has room; a skipped sequence, or a request that ends
with an error status, starts a new consumer at the first missing message; messages seen
again, or from a replaced consumer, are dropped, so batches follow each other exactly.
(The real server is used by every integration test through the followers.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shared import reader as reader_module
from shared.reader import BATCH, OrderedReader

pytestmark = pytest.mark.anyio


class FakeMsg:
    def __init__(
        self, seq: int, consumer: str, delivery: int = 0, status: str | None = None, to: str = ""
    ) -> None:
        sequence = type("S", (), {"stream": seq, "consumer": delivery})()
        self.metadata = type("M", (), {"sequence": sequence, "consumer": consumer})()
        self.data = f"m{seq}".encode()
        self.headers: dict[str, str] = {"Status": status} if status else {}
        self.subject = to if status else "fph.events.q.envie.e"


class FakeSub:
    async def unsubscribe(self) -> None:
        pass


class FakeServer:
    """The JetStream context and connection the reader uses; records what it asks."""

    def __init__(self) -> None:
        self._nc = self
        self.consumers: dict[str, int] = {}  # name -> start seq
        self.deleted: list[str] = []
        self.requests: list[tuple[str, int]] = []  # (consumer, batch)
        self.replies: list[str] = []
        self.delivered: dict[str, int] = {}  # consumer -> deliveries so far
        self.stats = {"reconnects": 0}
        self.deliver: Callable[[Any], Awaitable[None]] | None = None

    def new_inbox(self) -> str:
        return "_INBOX.test"

    async def subscribe(self, subject: str, cb: Callable[[Any], Awaitable[None]]) -> FakeSub:
        self.deliver = cb
        return FakeSub()

    async def add_consumer(self, stream: str, config: Any) -> None:
        self.consumers[config.name] = config.opt_start_seq

    async def delete_consumer(self, stream: str, name: str) -> None:
        self.deleted.append(name)

    async def publish(self, subject: str, payload: bytes, reply: str) -> None:
        self.requests.append((subject.rsplit(".", 1)[1], json.loads(payload)["batch"]))
        self.replies.append(reply)

    @property
    def current(self) -> str:
        return list(self.consumers)[-1]

    async def send(self, *seqs: int, consumer: str | None = None, skip: int = 0) -> None:
        """Deliver stream ``seqs`` from ``consumer``, numbering the deliveries (``skip``:
        lose that many deliveries on the way first)."""
        assert self.deliver is not None
        name = consumer or self.current
        for seq in seqs:
            self.delivered[name] = self.delivered.get(name, 0) + 1 + skip
            skip = 0
            await self.deliver(FakeMsg(seq, name, self.delivered[name]))

    async def status(self, code: str, reply: str | None = None) -> None:
        assert self.deliver is not None
        await self.deliver(FakeMsg(0, self.current, status=code, to=reply or self.replies[-1]))


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_skipped_sequence_starts_a_consumer_at_the_missing_one() -> None:
    server = FakeServer()
    async with OrderedReader(server, 1) as reader:  # type: ignore[arg-type]
        await settle()
        first = server.current
        assert server.consumers[first] == 1 and server.requests == [(first, BATCH)]
        await server.send(1, 2, 3)
        await server.send(5, 6)  # 4 never comes (not stored: the consumer numbers 4, 5)
        assert [m.seq for m in await reader.next_batch()] == [1, 2, 3]
        await settle()
        second = server.current
        assert second != first and server.consumers[second] == 4
        assert first in server.deleted and server.requests[-1] == (second, BATCH)
        await server.send(7, consumer=first)  # the replaced consumer's: dropped
        await server.send(4, 5, 5, 6)  # 5 twice: the second dropped
        assert [m.seq for m in await reader.next_batch()] == [4, 5, 6]
        assert reader.restarts == 1


async def test_an_error_status_or_silence_restarts_and_expiry_asks_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reader_module, "HEARTBEAT", 0.02)
    server = FakeServer()
    async with OrderedReader(server, 10) as reader:  # type: ignore[arg-type]
        await settle()
        await server.send(10, 11)
        await server.status("408")  # expired: ask again
        await settle()
        assert len(server.consumers) == 1 and len(server.requests) == 2
        await server.status("409")  # consumer deleted
        await settle()
        assert len(server.consumers) == 2 and server.consumers[server.current] == 12
        await server.status("409", reply=server.replies[0])  # about an old request: ignored
        await server.status("100")  # a heartbeat: alive
        await settle()
        assert len(server.consumers) == 2
        await asyncio.sleep(0.3)  # silence: a new consumer, same place
        assert len(server.consumers) >= 3 and server.consumers[server.current] == 12
        assert [m.seq for m in await reader.next_batch()] == [10, 11]


async def test_a_delivery_lost_on_the_way_or_a_reconnect_restarts() -> None:
    server = FakeServer()
    async with OrderedReader(server, 10, contiguous=False) as reader:  # type: ignore[arg-type]
        await settle()
        await server.send(10, 11)
        await server.send(13, skip=1)  # the consumer's delivery 3 never arrived
        assert [m.seq for m in await reader.next_batch()] == [10, 11]
        await settle()
        assert server.consumers[server.current] == 12 and reader.restarts == 1
        await server.send(12, 13)
        assert [m.seq for m in await reader.next_batch()] == [12, 13]
        server.stats["reconnects"] += 1  # whatever was in flight may be gone
        await server.status("408")
        await settle()
        assert server.consumers[server.current] == 14 and reader.restarts == 2


async def test_holes_are_accepted_when_the_stream_may_have_them() -> None:
    server = FakeServer()
    async with OrderedReader(server, 10, contiguous=False) as reader:  # type: ignore[arg-type]
        await settle()
        await server.send(12, 13, 20, 13)
        assert [m.seq for m in await reader.next_batch()] == [12, 13, 20]
        assert len(server.consumers) == 1


async def test_it_asks_only_when_its_buffer_has_room() -> None:
    server = FakeServer()
    async with OrderedReader(server, 1, limit=2 * BATCH) as reader:  # type: ignore[arg-type]
        await settle()
        await server.send(*range(1, BATCH + 1))  # the first request answered in full
        await settle()
        assert len(server.requests) == 2  # room for one more batch
        await server.send(*range(BATCH + 1, 2 * BATCH + 1))
        await settle()
        assert len(server.requests) == 2  # full: no third request until the caller reads
        assert len(await reader.next_batch()) == BATCH
        await settle()
        assert len(server.requests) == 3
