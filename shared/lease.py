"""Which instance of a service decides its inbox: a lease in a NATS key-value bucket.

Submissions must be decided in order, so one instance of a service decides them
at a time; the others serve HTTP, follow the log and stand by. The holder
renews its key every second; the bucket's TTL removes the key of a holder that
died, and a standby instance then takes over within ``LEASE_SECONDS``.
Appends stay guarded by optimistic concurrency, so even two instances that both
believe they hold the lease (a paused process) cannot write on stale state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

LEASES_BUCKET = "FPH_LEASES"
LEASE_SECONDS = 5.0
RENEW_EVERY = 1.0


async def provision_leases(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The leases bucket (created if missing)."""
    try:
        return await js.key_value(LEASES_BUCKET)
    except (NotFoundError, BadRequestError):
        return await js.create_key_value(
            js_api.KeyValueConfig(
                bucket=LEASES_BUCKET,
                description="Which instance of each service decides its inbox",
                ttl=LEASE_SECONDS,
                history=1,
                storage=js_api.StorageType.FILE,
                replicas=replicas,
            )
        )


class LeaseLost(RuntimeError):
    """The lease was not renewed in time: another instance may hold it now."""


class Lease:
    """Hold ``key`` while deciding; ``lost`` is set if another instance took it over."""

    def __init__(self, js: JetStreamContext, key: str) -> None:
        self.js = js
        self.key = key
        self.holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.lost = asyncio.Event()
        self._revision = 0
        self._kv: KeyValue | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._renewed_at = 0.0

    def valid(self) -> bool:
        """Held, and renewed recently enough that no other instance can have taken it."""
        margin = LEASE_SECONDS - 2 * RENEW_EVERY
        return not self.lost.is_set() and time.monotonic() - self._renewed_at < margin

    def check(self) -> None:
        """Raise ``LeaseLost`` unless ``valid()``: call before an irreversible step."""
        if not self.valid():
            raise LeaseLost(f"{self.holder} no longer holds {self.key}")

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Wait until this instance holds the lease (False if ``stopping`` came first)."""
        self._kv = await provision_leases(self.js)
        announced = False
        while not stopping.is_set():
            try:
                self._revision = await self._kv.create(self.key, self.holder.encode())
                self._renewed_at = time.monotonic()
            except Exception as exc:  # held by another instance, or a passing NATS error
                if not isinstance(exc, KeyWrongLastSequenceError):
                    log.warning("could not take the lease %s: %s", self.key, exc)
                if not announced:
                    entry = None
                    with contextlib.suppress(Exception):
                        entry = await self._current()
                    log.info("standing by: %s decides %s", entry or "another instance", self.key)
                    announced = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), RENEW_EVERY)
                continue
            self.lost.clear()
            self._renewer = asyncio.create_task(self._renew(), name=f"lease-{self.key}")
            log.info("%s holds the lease %s", self.holder, self.key)
            return True
        return False

    async def _current(self) -> str | None:
        assert self._kv is not None
        try:
            entry = await self._kv.get(self.key)
        except NotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def _renew(self) -> None:
        assert self._kv is not None
        while True:
            await asyncio.sleep(RENEW_EVERY)
            try:
                self._revision = await self._kv.update(
                    self.key, self.holder.encode(), last=self._revision
                )
                self._renewed_at = time.monotonic()
            except KeyWrongLastSequenceError:
                log.error("%s lost the lease %s: stops deciding", self.holder, self.key)
                self.lost.set()
                return
            except Exception:  # a passing NATS error: try again, the TTL is the limit
                log.warning("could not renew the lease %s", self.key, exc_info=True)

    async def release(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._kv is not None and not self.lost.is_set() and self._revision:
            with contextlib.suppress(Exception):
                await self._kv.delete(self.key, last=self._revision)
        self._revision = 0
