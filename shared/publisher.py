"""Pipelined JetStream publishes whose every answer (ack *or* API error) resolves its future.

nats-py 2.16's ``publish_async`` never resolves a future whose answer is an API
error (its reply handler raises instead), so a conflict would hang; and awaiting
``js.publish`` one by one costs a round trip each. This publisher sends with a
reply subject under its own inbox and matches answers to futures itself.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.errors import APIError, NoStreamResponseError

NO_RESPONDERS = "503"


class JetStreamPublisher:
    """Publish many messages at once and await their JetStream acknowledgements."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._prefix = nc.new_inbox()
        self._futures: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._tokens = itertools.count()
        self._sub: Any = None

    async def start(self) -> None:
        if self._sub is None:
            self._sub = await self.nc.subscribe(f"{self._prefix}.*", cb=self._on_reply)

    async def _on_reply(self, msg: Msg) -> None:
        future = self._futures.pop(msg.subject[len(self._prefix) + 1 :], None)
        if future is None or future.done():
            return
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            future.set_exception(NoStreamResponseError())
            return
        answer = json.loads(msg.data)
        error = answer.get("error")
        if error:
            future.set_exception(
                APIError(
                    code=error.get("code"),
                    err_code=error.get("err_code"),
                    description=error.get("description"),
                )
            )
        else:
            future.set_result(answer)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[dict[str, Any]]:
        """Send one message; the future gets the PubAck (``{"stream", "seq", "duplicate"?}``)."""
        await self.start()
        token = str(next(self._tokens))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._futures[token] = future
        await self.nc.publish(subject, payload, reply=f"{self._prefix}.{token}", headers=headers)
        return future

    def _forget(self, futures: list[asyncio.Future[dict[str, Any]]]) -> None:
        dropped = set(map(id, futures))
        for token, future in list(self._futures.items()):
            if id(future) in dropped:
                del self._futures[token]

    async def publish_all(
        self,
        messages: Sequence[tuple[str, bytes, dict[str, str] | None]],
        timeout: float = 10.0,
    ) -> list[dict[str, Any] | APIError]:
        """Publish all, then wait for every answer: each PubAck dict, or its APIError."""
        futures: list[asyncio.Future[dict[str, Any]]] = []
        try:
            for s, p, h in messages:
                futures.append(await self.publish(s, p, h))
            done = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), timeout)
        except BaseException:
            for f in futures:
                f.cancel()
            self._forget(futures)
            raise
        out: list[dict[str, Any] | APIError] = []
        for result in done:
            if isinstance(result, APIError):
                out.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                out.append(result)
        return out
