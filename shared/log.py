"""The event log on JetStream: streams, appends with optimistic concurrency, reads, digest.

``FPH_EVENTS`` is the system of record (CONTRACT 1). Every append carries
``Nats-Msg-Id`` (the event id: JetStream drops a second copy inside the duplicate
window) and ``Nats-Expected-Last-Subject-Sequence`` (the last sequence the writer
saw on the aggregate's subject: a concurrent writer makes the append fail with
``ConcurrencyConflict`` instead of writing on stale state).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import APIError, NotFoundError

from shared.events import EventBase
from shared.lease import LEASES_BUCKET, provision_leases
from shared.publisher import JetStreamPublisher
from shared.subjects import (
    EVENTS_ALL,
    EVENTS_STREAM,
    INBOX_ALL,
    INBOX_STREAM,
    RECEIPTS_ALL,
    RECEIPTS_STREAM,
    REJECTED_ALL,
    REJECTED_STREAM,
    event_subject,
)

log = logging.getLogger(__name__)

DAY = 24 * 3600.0
EVENT_TYPE_HEADER = "Fph-Event-Type"
WRONG_LAST_SEQUENCE = 10071  # JetStream API error code for Nats-Expected-Last-Subject-Sequence


def wanted_streams(replicas: int = 1) -> list[js_api.StreamConfig]:
    """The four streams exactly as CONTRACT 1 describes them."""
    common = {
        "retention": js_api.RetentionPolicy.LIMITS,
        "storage": js_api.StorageType.FILE,
        "num_replicas": replicas,
    }
    return [
        js_api.StreamConfig(
            name=EVENTS_STREAM,
            description="The FPH event log: the system of record, never edited",
            subjects=[EVENTS_ALL],
            max_age=0,
            duplicate_window=2 * 60.0,
            deny_delete=True,
            deny_purge=True,
            allow_direct=True,
            **common,  # type: ignore[arg-type]
        ),
        js_api.StreamConfig(
            name=INBOX_STREAM,
            description="Every submission as received",
            subjects=[INBOX_ALL],
            max_age=365 * DAY,
            duplicate_window=2 * 60.0,
            **common,  # type: ignore[arg-type]
        ),
        js_api.StreamConfig(
            name=RECEIPTS_STREAM,
            description="The verdict on every submission, one per inbox sequence",
            subjects=[RECEIPTS_ALL],
            max_age=365 * DAY,
            duplicate_window=DAY,
            allow_direct=True,
            **common,  # type: ignore[arg-type]
        ),
        js_api.StreamConfig(
            name=REJECTED_STREAM,
            description="Every refused submission, byte for byte, with its reasons",
            subjects=[REJECTED_ALL],
            max_age=0,
            duplicate_window=DAY,
            allow_direct=True,
            **common,  # type: ignore[arg-type]
        ),
    ]


COMPARED_FIELDS = (
    "subjects",
    "retention",
    "storage",
    "max_age",
    "duplicate_window",
    "num_replicas",
    "deny_delete",
    "deny_purge",
    "allow_direct",
)


@dataclass(frozen=True)
class ConfigDifference:
    """An existing stream whose setting differs from the contract's; never changed silently."""

    stream: str
    setting: str
    wanted: object
    existing: object

    def __str__(self) -> str:
        return (
            f"stream {self.stream}: {self.setting} is {self.existing!r}, the contract wants "
            f"{self.wanted!r} (not changed: update the stream deliberately,"
            " e.g. `nats stream edit`)"
        )


def _norm(value: object) -> object:
    return value.value if hasattr(value, "value") else value


async def provision(js: JetStreamContext, replicas: int = 1) -> list[ConfigDifference]:
    """Create the missing streams; report (do not apply) differences on existing ones."""
    differences: list[ConfigDifference] = []
    for wanted in wanted_streams(replicas):
        assert wanted.name is not None
        try:
            info = await js.stream_info(wanted.name)
        except NotFoundError:
            await js.add_stream(wanted)
            log.info("created stream %s (%s)", wanted.name, ", ".join(wanted.subjects or []))
            continue
        existing = info.config
        for name in COMPARED_FIELDS:
            w, e = _norm(getattr(wanted, name)), _norm(getattr(existing, name))
            if name in ("max_age", "duplicate_window"):
                w, e = float(w or 0), float(e or 0)  # type: ignore[arg-type]
            if bool(w) is False and bool(e) is False:
                continue
            if w != e:
                differences.append(ConfigDifference(wanted.name, name, w, e))
    await provision_leases(js, replicas)  # the inbox leases live beside the streams
    leases = (await js.stream_info(f"KV_{LEASES_BUCKET}")).config
    if (leases.num_replicas or 1) != replicas:  # a single-node bucket on a cluster, say
        differences.append(
            ConfigDifference(f"KV_{LEASES_BUCKET}", "num_replicas", replicas, leases.num_replicas)
        )
    for diff in differences:
        log.warning("%s", diff)
    return differences


class ConcurrencyConflict(Exception):
    """Another writer appended to the aggregate since the state this decision was made on."""

    def __init__(self, subject: str, expected: int, detail: str) -> None:
        super().__init__(
            f"{subject}: expected last sequence {expected}, but the log moved on ({detail});"
            " re-read the aggregate and decide again"
        )
        self.subject = subject
        self.expected = expected


@dataclass(frozen=True)
class Appended:
    """Where an event landed: its stream sequence; ``duplicate`` if it was already there."""

    seq: int
    duplicate: bool


def subject_of(event: EventBase) -> str:
    return event_subject(event.quartier, event.AGGREGATE.value, event.aggregate_id)


def append_headers(event: EventBase, expected_last_subject_seq: int | None) -> dict[str, str]:
    headers = {
        js_api.Header.MSG_ID.value: str(event.event_id),
        EVENT_TYPE_HEADER: event.type,
    }
    if expected_last_subject_seq is not None:
        headers[js_api.Header.EXPECTED_LAST_SUBJECT_SEQUENCE.value] = str(expected_last_subject_seq)
    return headers


def _appended(ack: js_api.PubAck) -> Appended:
    return Appended(seq=ack.seq, duplicate=bool(ack.duplicate))


class EventLog:
    """Appends to and reads from ``FPH_EVENTS``."""

    def __init__(self, js: JetStreamContext) -> None:
        self.js = js

    async def append(self, event: EventBase, expected_last_subject_seq: int | None) -> Appended:
        """Append one event; ``expected_last_subject_seq`` 0 means a new aggregate."""
        subject = subject_of(event)
        try:
            ack = await self.js.publish(
                subject,
                event.to_json(),
                headers=append_headers(event, expected_last_subject_seq),
                stream=EVENTS_STREAM,
            )
        except APIError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            conflict = ConcurrencyConflict(
                subject, expected_last_subject_seq or 0, exc.description or ""
            )
            return await self._already_there(event, conflict)
        return _appended(ack)

    async def _already_there(self, event: EventBase, conflict: ConcurrencyConflict) -> Appended:
        """JetStream checks the expected sequence before dedup: a conflicting append may be
        this very event appended earlier. Then it is a duplicate; otherwise a real conflict."""
        for msg in await self.read_aggregate(
            event.quartier, event.AGGREGATE.value, event.aggregate_id
        ):
            if (msg.headers or {}).get(js_api.Header.MSG_ID.value) == str(event.event_id):
                return Appended(seq=msg.metadata.sequence.stream, duplicate=True)
        raise conflict

    async def append_many(
        self,
        items: Sequence[tuple[EventBase, int | None]],
        publisher: JetStreamPublisher | None = None,
    ) -> list[Appended | ConcurrencyConflict]:
        """Pipelined appends (all in flight at once): each result, or its conflict.

        With a ``JetStreamPublisher`` the appends share one reply subscription; without,
        they are concurrent ``publish`` requests (nats-py's own ``publish_async`` cannot
        be used: it never resolves a future whose answer is an API error).
        """
        if publisher is None:

            async def one(event: EventBase, expected: int | None) -> Appended | ConcurrencyConflict:
                try:
                    return await self.append(event, expected)
                except ConcurrencyConflict as conflict:
                    return conflict

            return list(await asyncio.gather(*(one(e, x) for e, x in items)))

        answers = await publisher.publish_all(
            [
                (subject_of(event), event.to_json(), append_headers(event, expected))
                for event, expected in items
            ]
        )
        results: list[Appended | ConcurrencyConflict] = []
        for (event, expected), answer in zip(items, answers, strict=True):
            if isinstance(answer, dict):
                results.append(Appended(int(answer["seq"]), bool(answer.get("duplicate"))))
                continue
            if answer.err_code != WRONG_LAST_SEQUENCE:
                raise answer
            conflict = ConcurrencyConflict(
                subject_of(event), expected or 0, answer.description or ""
            )
            try:
                results.append(await self._already_there(event, conflict))
            except ConcurrencyConflict as real:
                results.append(real)
        return results

    async def last_subject_seq(self, subject: str) -> int:
        """Sequence of the last event on a subject, 0 if none."""
        try:
            msg = await self.js.get_last_msg(EVENTS_STREAM, subject, direct=True)
        except NotFoundError:
            return 0
        return int(msg.seq or 0)

    async def last_seq(self) -> int:
        """The log's last stream sequence (0 when empty)."""
        info = await self.js.stream_info(EVENTS_STREAM)
        return int(info.state.last_seq)

    async def read(
        self, from_seq: int = 1, subject: str = EVENTS_ALL, until_seq: int | None = None
    ) -> AsyncIterator[Msg]:
        """Every logged message from ``from_seq`` (on ``subject``) up to the log's end.

        The end is the last sequence when the read starts (or ``until_seq``), so the
        iteration finishes even while other writers keep appending.
        """
        end = until_seq if until_seq is not None else await self.last_seq()
        if end < from_seq:
            return
        sub = await self.js.subscribe(
            subject,
            stream=EVENTS_STREAM,
            ordered_consumer=True,
            config=js_api.ConsumerConfig(
                deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=from_seq,
            ),
            pending_msgs_limit=-1,
        )
        try:
            while True:
                if subject != EVENTS_ALL:
                    # A filtered read may never reach ``end``: stop when nothing is left.
                    try:
                        msg = await sub.next_msg(timeout=2.0)
                    except TimeoutError:
                        return
                else:
                    msg = await sub.next_msg(timeout=30.0)
                seq = msg.metadata.sequence.stream
                if seq > end:
                    return
                yield msg
                if seq >= end:
                    return
                if subject != EVENTS_ALL and msg.metadata.num_pending == 0:
                    return
        finally:
            await sub.unsubscribe()

    async def read_aggregate(self, quartier: str, aggregate: str, aggregate_id: str) -> list[Msg]:
        """One aggregate's events, in log order."""
        subject = event_subject(quartier, aggregate, aggregate_id)
        last = await self.last_subject_seq(subject)
        if last == 0:
            return []
        return [m async for m in self.read(1, subject=subject, until_seq=last)]


# --- the audit digest (CONTRACT 4) ---------------------------------------------

EMPTY_DIGEST = hashlib.sha256(b"").digest()


@dataclass
class DigestChain:
    """``d0 = sha256(b"")``, ``dn = sha256(d(n-1) + body(n))`` over the log's payloads."""

    digest: bytes = EMPTY_DIGEST
    seq: int = 0

    def add(self, seq: int, body: bytes) -> None:
        if seq != self.seq + 1:
            raise ValueError(f"digest chain needs every sequence: got {seq} after {self.seq}")
        self.digest = hashlib.sha256(self.digest + body).digest()
        self.seq = seq

    @property
    def text(self) -> str:
        return "sha256:" + self.digest.hex()


def digest_of(bodies: Iterable[bytes]) -> str:
    """The digest text over payloads given in stream order from sequence 1."""
    chain = DigestChain()
    for seq, body in enumerate(bodies, start=1):
        chain.add(seq, body)
    return chain.text


class StreamsMissing(RuntimeError):
    """The contract's streams are not on the server: provision them first."""


async def require_streams(js: JetStreamContext) -> None:
    """Fail clearly at start-up when the streams were not provisioned."""
    missing = []
    for wanted in wanted_streams():
        try:
            await js.stream_info(str(wanted.name))
        except NotFoundError:
            missing.append(str(wanted.name))
    if missing:
        raise StreamsMissing(
            f"streams {', '.join(missing)} do not exist on this NATS server:"
            " run `fph-provision` (make run does it) before starting the services"
        )
