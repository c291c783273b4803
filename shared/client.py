"""The partners' Python client of CONTRACT 2: ``submit(event) -> receipt``.

It subscribes to its source's receipts before publishing, publishes the event to
``fph.inbox.<source>.<type>`` as a JetStream publish (the ack's sequence is the
``inbox_seq``), then waits for ``fph.receipts.<source>.<inbox_seq>``; a receipt
missed live is fetched from ``FPH_RECEIPTS`` by direct get.

    async with await SubmitClient.connect("nats://127.0.0.1:4222", source="demo") as client:
        receipt = await client.submit({...event...})
        print(receipt.status, receipt.seq or receipt.errors)
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from shared.events import EventBase
from shared.receipts import Receipt
from shared.settings import nats_servers
from shared.subjects import INBOX_STREAM, RECEIPTS_STREAM, inbox_subject, receipt_subject

EARLY_RECEIPTS_KEPT = 10_000


class ReceiptTimeout(TimeoutError):
    """The submission is kept in the inbox but no verdict came in time."""


class SubmitClient:
    """Submit events as one source and wait for their receipts."""

    def __init__(self, nc: NATS, source: str) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.source = source
        self._waiting: dict[int, asyncio.Future[Receipt]] = {}
        self._early: OrderedDict[int, Receipt] = OrderedDict()
        self._sub: Any = None
        self._owns_connection = False

    @classmethod
    async def connect(cls, url: str, source: str, **options: Any) -> SubmitClient:
        """Connect to ``url`` (one server, or several of a cluster comma-separated)."""
        client = cls(await nats.connect(nats_servers(url), **options), source)
        client._owns_connection = True
        await client.start()
        return client

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self.nc.subscribe(
                receipt_subject(self.source, "*"),  # type: ignore[arg-type]
                cb=self._on_receipt,
            )
            await self.nc.flush()

    async def close(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        if self._owns_connection:
            await self.nc.drain()

    async def __aenter__(self) -> SubmitClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _on_receipt(self, msg: Msg) -> None:
        receipt = Receipt.from_json(msg.data)
        future = self._waiting.pop(receipt.inbox_seq, None)
        if future is not None:
            if not future.done():
                future.set_result(receipt)
            return
        self._early[receipt.inbox_seq] = receipt
        while len(self._early) > EARLY_RECEIPTS_KEPT:
            self._early.popitem(last=False)

    async def publish(self, event_type: str, payload: bytes) -> int:
        """Publish raw bytes as a submission of ``event_type``; the inbox sequence."""
        await self.start()
        ack = await self.js.publish(
            inbox_subject(self.source, event_type), payload, stream=INBOX_STREAM
        )
        return int(ack.seq)

    async def submit(self, event: Mapping[str, Any] | EventBase, timeout: float = 30.0) -> Receipt:
        """Submit one event (dict or model) and wait for its receipt.

        If the publish raises (no acknowledgement: e.g. a NATS node lost, the stream
        electing a new leader), submit the same event again, same ``event_id``: if the
        first copy was kept after all, both get an ``accepted`` receipt with the same
        ``seq`` and the event is logged once (CONTRACT 2).
        """
        if isinstance(event, EventBase):
            event_type, payload = event.type, event.to_json()
        else:
            event_type, payload = str(event["type"]), json.dumps(event, default=str).encode()
        return await self.submit_raw(event_type, payload, timeout)

    async def submit_raw(self, event_type: str, payload: bytes, timeout: float = 30.0) -> Receipt:
        """Submit bytes as they are (for partners' own serialisation, or tests of bad input)."""
        inbox_seq = await self.publish(event_type, payload)
        return await self.receipt(inbox_seq, timeout)

    async def receipt(self, inbox_seq: int, timeout: float = 30.0) -> Receipt:
        """Wait for the receipt of ``inbox_seq`` (live, or already stored)."""
        if inbox_seq in self._early:
            return self._early.pop(inbox_seq)
        future = self._waiting.setdefault(inbox_seq, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            stored = await self.fetch_receipt(inbox_seq)
            if stored is not None:
                return stored
            raise ReceiptTimeout(
                f"no receipt for inbox seq {inbox_seq} after {timeout}s: the submission is kept"
                " and will be decided when its service runs; fetch it later with"
                f" fetch_receipt({inbox_seq})"
            ) from None
        finally:
            self._waiting.pop(inbox_seq, None)

    async def fetch_receipt(self, inbox_seq: int) -> Receipt | None:
        """The stored receipt of ``inbox_seq``, or None if there is none yet."""
        try:
            msg = await self.js.get_last_msg(
                RECEIPTS_STREAM, receipt_subject(self.source, inbox_seq), direct=True
            )
        except NotFoundError:
            return None
        return Receipt.from_json(msg.data or b"")
