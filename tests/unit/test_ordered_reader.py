"""``OrderedReader``'s own logic, with a stand-in for JetStream's ordered consumer: a
skipped sequence makes it read again from the first missing one, and messages delivered
twice are dropped, so the batches it returns follow each other exactly."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from shared.follower import OrderedReader

pytestmark = pytest.mark.anyio


class FakeMsg:
    def __init__(self, seq: int) -> None:
        self.metadata = type("M", (), {"sequence": type("S", (), {"stream": seq})()})()
        self.data = f"m{seq}".encode()
        self.headers: dict[str, str] = {}
        self.subject = "fph.events.q.envie.e"


class FakeSub:
    async def unsubscribe(self) -> None:
        pass


class FakeJetStream:
    """Records each subscription's start and callback; the test feeds messages."""

    def __init__(self) -> None:
        self.subscriptions: list[tuple[int, Callable[[Any], Awaitable[None]]]] = []

    async def subscribe(self, subject: str, **kw: Any) -> FakeSub:
        self.subscriptions.append((kw["config"].opt_start_seq, kw["cb"]))
        return FakeSub()


async def test_a_skipped_sequence_is_read_again() -> None:
    js = FakeJetStream()
    reader = OrderedReader(js, 1, limit=100)  # type: ignore[arg-type]
    async with reader:
        start, deliver = js.subscriptions[-1]
        assert start == 1
        for seq in (1, 2, 3, 5, 6):  # 4 never comes: the consumer skipped it
            await deliver(FakeMsg(seq))
        assert [m.seq for m in await reader.next_batch()] == [1, 2, 3]
        waiting = asyncio.ensure_future(reader.next_batch(timeout=5))
        await asyncio.sleep(0.01)
        assert len(js.subscriptions) == 2 and js.subscriptions[-1][0] == 4
        stale = js.subscriptions[0][1]
        await stale(FakeMsg(7))  # the replaced subscription is ignored
        _, deliver = js.subscriptions[-1]
        for seq in (4, 5, 5, 6):  # 5 twice: dropped the second time
            await deliver(FakeMsg(seq))
        assert [m.seq for m in await waiting] == [4, 5, 6]
        assert reader.resubscribed == 1


async def test_holes_are_accepted_when_the_stream_may_have_them() -> None:
    js = FakeJetStream()
    reader = OrderedReader(js, 10, contiguous=False)  # type: ignore[arg-type]
    async with reader:
        _, deliver = js.subscriptions[-1]
        for seq in (12, 13, 20, 13):
            await deliver(FakeMsg(seq))
        assert [m.seq for m in await reader.next_batch()] == [12, 13, 20]
        assert len(js.subscriptions) == 1


async def test_a_full_buffer_holds_the_callback_back() -> None:
    js = FakeJetStream()
    reader = OrderedReader(js, 1, limit=3)  # type: ignore[arg-type]
    async with reader:
        _, deliver = js.subscriptions[-1]
        for seq in (1, 2, 3):
            await deliver(FakeMsg(seq))
        blocked = asyncio.ensure_future(deliver(FakeMsg(4)))
        await asyncio.sleep(0.01)
        assert not blocked.done()  # the consumer's flow control now holds the server
        assert [m.seq for m in await reader.next_batch()] == [1, 2, 3]
        await asyncio.wait_for(blocked, 1)
        assert [m.seq for m in await reader.next_batch()] == [4]
