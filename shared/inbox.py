"""The inbox mechanism of CONTRACT 2, used by every service that owns event types.

A service consumes its types from ``FPH_INBOX`` (durable pull consumer, explicit
acks, one batch in flight so the order holds across instances and crashes),
and for each submission, in order:

1. parses and validates it (schema, contract rules, the service's state rules);
2. appends the accepted event to ``FPH_EVENTS`` (``Nats-Msg-Id`` = event id,
   expected last sequence on the aggregate's subject);
3. publishes exactly one receipt on ``fph.receipts.<source>.<inbox_seq>``, and for
   a refusal keeps the original bytes with the errors on ``fph.rejected.<source>.<type>``;
4. acks the submission.

Appends of one batch are pipelined; a submission touching an aggregate that
already has an append in flight waits for it (the batch is flushed first), so a
decision always sees the effect of the ones before it.

Crash safety: state and the decided inbox sequence are committed before the
receipts go out; receipts and rejected copies carry ``Nats-Msg-Id`` (deduplicated
by JetStream for a day), and a submission that may have been answered before (a
redelivery, or a sequence at or below the committed progress) is first looked up
in ``FPH_RECEIPTS`` so that its receipt is never published twice.

The intake service is also the *gatekeeper*: it answers submissions that no
service owns (unknown types, malformed subjects, ``GrantAwarded``/``GrantRefused``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError, ServiceUnavailableError
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from shared.codec import FieldError, InvalidEvent, parse_submission, peek
from shared.events import EVENT_TYPES, EventBase, owner_of, with_recording
from shared.faults import crash_point, raise_point
from shared.follower import Follower, apply_new
from shared.lease import Lease, LeaseLost
from shared.log import ConcurrencyConflict, EventLog, subject_of
from shared.model import ServiceModel
from shared.publisher import JetStreamPublisher
from shared.receipts import Receipt
from shared.settings import CommonSettings
from shared.store import (
    IndexedEvent,
    find_events,
    get_inbox_progress,
    get_subject_seqs,
    set_inbox_progress,
)
from shared.subjects import (
    INBOX_ALL,
    INBOX_STREAM,
    INVALID_TYPE_TOKEN,
    RECEIPTS_STREAM,
    inbox_filter,
    parse_inbox_subject,
    receipt_subject,
    rejected_subject,
)

log = logging.getLogger(__name__)

FUNDING_ONLY = frozenset({"GrantAwarded", "GrantRefused"})
"""Types only funding writes, as answers to decisions: every submission of them is refused."""

BATCH = 1000
ACK_WAIT = 15.0
MAX_CONFLICT_RETRIES = 50
ISOLATE_AFTER = 3  # failures of the same batch before its submissions are decided alone


def _timestamp(value: str | None) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


@dataclass
class Submission:
    """One message of ``FPH_INBOX`` being decided."""

    msg: Msg
    inbox_seq: int
    source: str
    subject_type: str | None
    received_at: datetime
    redelivered: bool
    event: EventBase | None = None
    receipt: Receipt | None = None
    skip_receipt: bool = False  # answered before a crash: ack only
    answered: bool = False  # its receipt is out

    @classmethod
    def from_msg(cls, msg: Msg) -> Submission:
        address = parse_inbox_subject(msg.subject)
        meta = msg.metadata
        return cls(
            msg=msg,
            inbox_seq=meta.sequence.stream,
            source=address.source,
            subject_type=address.type,
            received_at=meta.timestamp,
            redelivered=meta.num_delivered > 1,
        )

    def accept(self, event_id: str, seq: int) -> None:
        self.receipt = Receipt.accepted(self.inbox_seq, event_id, seq)

    def reject(self, errors: list[FieldError], event_id: str | None = None) -> None:
        self.receipt = Receipt.rejected(
            self.inbox_seq, event_id or peek(self.msg.data, "event_id"), errors
        )


@dataclass
class Outcomes:
    """Counters the service exports (submissions accepted/refused by type and reason)."""

    on_accepted: Callable[[str], None] = lambda event_type: None
    on_rejected: Callable[[str, str], None] = lambda event_type, reason: None


@dataclass
class InboxProcessor:
    """Decides one service's submissions (see the module docstring)."""

    js: JetStreamContext
    engine: Engine
    settings: CommonSettings
    owner: str
    owned_types: frozenset[str]
    model: ServiceModel
    follower: Follower
    gatekeeper: bool = False
    outcomes: Outcomes = field(default_factory=Outcomes)
    consumer_name: str = ""
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    def __post_init__(self) -> None:
        # Answers to decisions are never submitted: the gatekeeper refuses them, and the
        # owner's inbox must not see them (its consumer does not filter them).
        self.owned_types = self.owned_types - FUNDING_ONLY
        self.consumer_name = self.consumer_name or f"{self.owner}-inbox-v1"
        self.log = EventLog(self.js)
        self._stopping = asyncio.Event()
        self._publisher = JetStreamPublisher(self.js._nc)
        self._answered_maybe_until = 0  # inbox seqs up to this may have a receipt already
        self._resume_at: int | None = None  # where a consumer deleted to resume must start
        self.active = False  # holds the lease and decides (others stand by)
        self._failures: dict[int, int] = {}  # first inbox seq of a failing batch -> failures
        self.write_lock = asyncio.Lock()  # shared with the service's other writers

    # --- the consumer -----------------------------------------------------

    def filter_subjects(self) -> list[str]:
        if self.gatekeeper:
            return [INBOX_ALL]
        return [inbox_filter(t) for t in sorted(self.owned_types)]

    async def ensure_consumer(self) -> None:
        """Create the durable consumer, or resume it so that order survives a crash.

        A predecessor that died mid-batch leaves submissions delivered but unacked;
        JetStream would redeliver them only after ``ack_wait``, *after* newer ones.
        So the consumer is recreated at its ack floor: the unfinished submissions
        come first, in order, and those already answered are recognised by their
        receipt (every sequence up to the old delivered one is looked up).
        One instance per service decides its inbox at a time (``shared.lease``).
        """
        config = js_api.ConsumerConfig(
            durable_name=self.consumer_name,
            deliver_policy=js_api.DeliverPolicy.ALL,
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT,
            max_ack_pending=BATCH,
            max_deliver=-1,
            filter_subjects=self.filter_subjects(),
        )
        try:
            info = await self.js.consumer_info(INBOX_STREAM, self.consumer_name)
        except NotFoundError:
            if self._resume_at is not None:
                # Deleted below by an earlier attempt whose re-creation failed (on a
                # cluster, the meta leader lost in between): resume where it meant to,
                # not at the inbox's first submission.
                config.deliver_policy = js_api.DeliverPolicy.BY_START_SEQUENCE
                config.opt_start_seq = self._resume_at
            await self.js.add_consumer(INBOX_STREAM, config)
            self._resume_at = None
            log.info("created inbox consumer %s on %s", self.consumer_name, config.filter_subjects)
            return
        self._resume_at = None
        if not info.num_ack_pending:
            return
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        delivered = info.delivered.stream_seq if info.delivered else 0
        log.warning(
            "%s: %d submission(s) were delivered but not finished by a previous run (inbox seq"
            " %d-%d); resuming the consumer at %d so they are decided first, in order",
            self.owner,
            info.num_ack_pending,
            (floor or 0) + 1,
            delivered,
            (floor or 0) + 1,
        )
        self._answered_maybe_until = max(self._answered_maybe_until, delivered or 0)
        self._resume_at = (floor or 0) + 1  # kept until the new consumer exists
        await self.js.delete_consumer(INBOX_STREAM, self.consumer_name)
        config.deliver_policy = js_api.DeliverPolicy.BY_START_SEQUENCE
        config.opt_start_seq = self._resume_at
        await self.js.add_consumer(INBOX_STREAM, config)
        self._resume_at = None

    async def run(self) -> None:
        """Decide submissions until ``stop()``, while holding the service's lease.

        Any error (NATS reconnecting, the database away) is logged and the loop starts
        over after a pause: the unfinished batch is decided again, first and in order.
        """
        lease = Lease(self.js, self.consumer_name)
        while not self._stopping.is_set():
            try:
                if not await lease.acquire(self._stopping):
                    return
                try:
                    self.active = True
                    await self._decide_while_holding(lease)
                finally:
                    self.active = False
                    await lease.release()
            except Exception:
                log.exception("%s: the inbox loop failed; starting over in 2 s", self.owner)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), 2.0)

    async def _decide_while_holding(self, lease: Lease) -> None:
        await self.ensure_consumer()
        await self.follower.caught_up()
        sub = await self.js.pull_subscribe_bind(self.consumer_name, stream=INBOX_STREAM)
        log.info("%s: deciding submissions from %s", self.owner, self.consumer_name)
        try:
            while not self._stopping.is_set() and lease.valid():
                try:
                    msgs = await sub.fetch(BATCH, timeout=1.0)
                except (NatsTimeout, TimeoutError):
                    continue
                except ServiceUnavailableError:
                    await asyncio.sleep(0.5)
                    continue
                if not msgs:
                    continue
                first = msgs[0].metadata.sequence.stream
                try:
                    if self._failures.get(first, 0) >= ISOLATE_AFTER:
                        await self._process_one_by_one(msgs, lease)
                    else:
                        await self.process(msgs, lease)
                    self._failures.clear()
                except Exception:
                    # Unacked, the batch is decided again, first and in order, when the
                    # consumer is resumed (ensure_consumer); appended events are recognised.
                    # A batch that keeps failing is then decided one submission at a time.
                    self._failures = {first: self._failures.get(first, 0) + 1}
                    log.exception(
                        "%s: batch of %d from inbox seq %d failed (%d time(s)); resuming",
                        self.owner,
                        len(msgs),
                        first,
                        self._failures[first],
                    )
                    await asyncio.sleep(1.0)
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _process_one_by_one(self, msgs: Sequence[Msg], lease: Lease) -> None:
        """Isolate a submission that fails every time: refuse it (kept with the error in
        FPH_REJECTED for the operators) so that the ones after it are decided."""
        for msg in msgs:
            try:
                await self.process([msg], lease)
            except LeaseLost:
                raise
            except Exception as exc:
                sub = Submission.from_msg(msg)
                log.exception(
                    "%s: inbox seq %d cannot be decided; refusing it", self.owner, sub.inbox_seq
                )
                sub.reject(
                    [
                        FieldError(
                            "(body)",
                            f"could not be decided ({type(exc).__name__}); it is kept in"
                            " FPH_REJECTED for the operators, contact them or submit again",
                            "internal_error",
                        )
                    ]
                )
                lease.check()
                await self._answer([sub])
                await msg.ack()

    def stop(self) -> None:
        self._stopping.set()

    # --- one batch --------------------------------------------------------

    async def process(self, msgs: Sequence[Msg], lease: Lease | None = None) -> list[Submission]:
        """Decide, append, answer and ack one batch, in order.

        State is read once for the whole batch (``model.load``) and kept current in
        memory (``model.note``) as submissions are accepted; appends are pipelined
        and flushed before a submission touching an aggregate with one in flight.
        """
        subs = [Submission.from_msg(m) for m in msgs]
        if self.model.followed_types - self.owned_types:
            # Decide on the log as it is now: what other writers logged just before these
            # submissions (a fresh envie, a grant) must be in the state. Intake follows only
            # the types its inbox alone writes (one instance at a time, caught up when it
            # took the lease), so it has them already.
            await self.follower.caught_up()
        with Session(self.engine) as session:
            progress = get_inbox_progress(session, self.consumer_name)
        await self._mark_already_answered(subs, progress)

        candidates: list[tuple[Submission, EventBase]] = []
        for sub in subs:
            if sub.skip_receipt or not self._is_ours(sub):
                continue
            event = self._decide_stateless(sub)
            if event is not None:
                candidates.append((sub, event))
        batch = _Batch(self, subs, [e for _, e in candidates])
        for sub, event in candidates:
            if subject_of(event) in batch.pending_subjects:
                await batch.flush()
            batch.decide(sub, event)
        await batch.flush()
        crash_point("after_append")
        if lease is not None:
            lease.check()  # taken over meanwhile: the new holder decides this batch again

        with Session(self.engine) as session, session.begin():
            set_inbox_progress(session, self.consumer_name, subs[-1].inbox_seq)
        if lease is not None:
            lease.check()
        await self._answer(subs)
        crash_point("after_receipts")
        for sub in subs:
            await sub.msg.ack()
        decided = [s for s in subs if s.receipt is not None and not s.skip_receipt]
        if decided:
            accepted = sum(1 for s in decided if s.receipt and s.receipt.ok)
            log.info(
                "%s decided %d submission(s) (inbox seq %d-%d): %d accepted, %d refused",
                self.owner,
                len(decided),
                subs[0].inbox_seq,
                subs[-1].inbox_seq,
                accepted,
                len(decided) - accepted,
            )
        return subs

    async def _mark_already_answered(self, subs: list[Submission], progress: int) -> None:
        """A submission that may have been answered before a crash: look its receipt up."""
        until = max(progress, self._answered_maybe_until)
        maybe = [s for s in subs if s.redelivered or s.inbox_seq <= until]
        found = await asyncio.gather(*(self._receipt_exists(s) for s in maybe))
        for sub, exists in zip(maybe, found, strict=True):
            if exists:
                sub.skip_receipt = True
                log.info(
                    "inbox seq %d was answered before a restart: not answered again", sub.inbox_seq
                )

    async def _receipt_exists(self, sub: Submission) -> bool:
        try:
            # Not a direct get: on a replicated stream a lagging replica could answer.
            await self.js.get_last_msg(
                RECEIPTS_STREAM, receipt_subject(sub.source, sub.inbox_seq), direct=False
            )
        except NotFoundError:
            return False
        return True

    def _is_ours(self, sub: Submission) -> bool:
        if sub.subject_type in self.owned_types:
            return True
        if not self.gatekeeper:
            return False
        # The gatekeeper answers what no service owns.
        owner = owner_of(sub.subject_type) if sub.subject_type else None
        if owner is None:
            sub.reject(
                [
                    FieldError(
                        "type",
                        f"unknown event type {sub.subject_type!r} in subject {sub.msg.subject!r};"
                        " submit to fph.inbox.<source>.<type> with a type of the catalogue: "
                        + ", ".join(EVENT_TYPES),
                        "unknown_type",
                    )
                ]
            )
            return False
        if sub.subject_type in FUNDING_ONLY:
            sub.reject(
                [
                    FieldError(
                        "type",
                        f"{sub.subject_type} is written only by the funding service, in answer"
                        " to a committee decision; it cannot be submitted",
                        "reserved_type",
                    )
                ]
            )
        return False

    def _decide_stateless(self, sub: Submission) -> EventBase | None:
        """Schema and contract rules that need no state; None when refused.

        The contract checks run even when the schema fails, so a receipt lists every
        reason (an unknown quartier *and* a bad enum), not only the first kind found.
        """
        try:
            event = parse_submission(sub.msg.data)
        except InvalidEvent as exc:
            contract = self._contract_errors(
                sub,
                peek(sub.msg.data, "type"),
                peek(sub.msg.data, "quartier"),
                _timestamp(peek(sub.msg.data, "occurred_at")),
            )
            schema_fields = {e.field for e in exc.errors}
            sub.reject([e for e in contract if e.field not in schema_fields] + exc.errors)
            return None
        errors = self._contract_errors(sub, event.type, event.quartier, event.occurred_at)
        if errors:
            sub.reject(errors, str(event.event_id))
            return None
        return with_recording(event, source=sub.source, recorded_at=self.now())

    def _contract_errors(
        self,
        sub: Submission,
        body_type: str | None,
        quartier: str | None,
        occurred_at: datetime | None,
    ) -> list[FieldError]:
        """CONTRACT 1.1/2 rules on source, type, quartier and time (None: not known)."""
        errors: list[FieldError] = []
        s = self.settings
        if sub.source not in s.sources:
            errors.append(
                FieldError(
                    "source",
                    f"source {sub.source!r} (from the subject) is not a configured source",
                    "unknown_source",
                )
            )
        allowed = s.source_types.get(sub.source)
        if allowed is not None and sub.subject_type not in allowed:
            errors.append(
                FieldError(
                    "type",
                    f"source {sub.source!r} may not submit {sub.subject_type}",
                    "not_allowed",
                )
            )
        if body_type is not None and body_type != sub.subject_type:
            errors.append(
                FieldError(
                    "type",
                    f"body says {body_type} but it was submitted on {sub.msg.subject}",
                    "type_mismatch",
                )
            )
        if quartier is not None and quartier not in s.quartiers:
            errors.append(
                FieldError(
                    "quartier",
                    f"unknown quartier {quartier!r}; configured: " + ", ".join(s.quartiers),
                    "unknown_quartier",
                )
            )
        limit = sub.received_at + timedelta(seconds=s.max_future_seconds)
        if occurred_at is not None and occurred_at > limit:
            errors.append(
                FieldError(
                    "occurred_at",
                    f"{occurred_at.isoformat()} is more than {s.max_future_seconds // 60}"
                    f" minutes after the submission was received ({sub.received_at.isoformat()})",
                    "in_future",
                )
            )
        return errors

    async def _answer(self, subs: list[Submission]) -> None:
        """Keep refused bytes, then publish one receipt per decided submission."""
        answered = [
            s for s in subs if s.receipt is not None and not s.skip_receipt and not s.answered
        ]
        if not answered:
            return
        self._count(answered)  # before the receipts: whoever reads one sees it counted
        refused = [self._rejected_copy(s) for s in answered if s.receipt and not s.receipt.ok]
        for answer in await self._publisher.publish_all(refused):
            if not isinstance(answer, dict):
                raise answer
        for answer in await self._publisher.publish_all([self._receipt(s) for s in answered]):
            if not isinstance(answer, dict):
                raise answer
        for sub in answered:
            sub.answered = True

    def _count(self, answered: list[Submission]) -> None:
        for sub in answered:
            assert sub.receipt is not None
            # Label by catalogue type only: a partner's typo must not create a metric series.
            event_type = sub.subject_type if sub.subject_type in EVENT_TYPES else "_unknown"
            if sub.receipt.ok:
                self.outcomes.on_accepted(event_type)
            else:
                for error in sub.receipt.errors or []:
                    self.outcomes.on_rejected(event_type, error.code)
                log.info(
                    "refused %s from %s (inbox seq %d): %s",
                    event_type,
                    sub.source,
                    sub.inbox_seq,
                    "; ".join(f"{e.field}: {e.message}" for e in sub.receipt.errors or []),
                )

    def _rejected_copy(self, sub: Submission) -> tuple[str, bytes, dict[str, str]]:
        assert sub.receipt is not None
        type_token = sub.subject_type if sub.subject_type else INVALID_TYPE_TOKEN
        headers = {
            js_api.Header.MSG_ID.value: f"rejected:{sub.source}:{sub.inbox_seq}",
            "Fph-Inbox-Seq": str(sub.inbox_seq),
            "Fph-Inbox-Subject": sub.msg.subject,
            "Fph-Errors": json.dumps(sub.receipt.error_dicts(), ensure_ascii=False),
        }
        return rejected_subject(sub.source, type_token), sub.msg.data, headers

    @staticmethod
    def _receipt(sub: Submission) -> tuple[str, bytes, dict[str, str]]:
        assert sub.receipt is not None
        return (
            receipt_subject(sub.source, sub.inbox_seq),
            sub.receipt.to_json(),
            {js_api.Header.MSG_ID.value: f"receipt:{sub.source}:{sub.inbox_seq}"},
        )


class _Batch:
    """The state and the appends in flight while one batch is decided."""

    def __init__(
        self, processor: InboxProcessor, subs: list[Submission], events: list[EventBase]
    ) -> None:
        self.p = processor
        self.subs = subs
        self.events = events
        self.pending: list[tuple[Submission, EventBase]] = []
        self.pending_subjects: set[str] = set()
        self._load()

    def _load(self) -> None:
        with Session(self.p.engine) as session:
            self.known = find_events(session, (str(e.event_id) for e in self.events))
            self.seqs = get_subject_seqs(session, (subject_of(e) for e in self.events))
            self.view = self.p.model.load(session, self.events)

    def decide(self, sub: Submission, event: EventBase) -> None:
        """Idempotency, then the service's rules; an accepted event joins the pending appends."""
        raise_point("decide", event.aggregate_id)
        event_id = str(event.event_id)
        known = self.known.get(event_id)
        if known is not None:
            if known.type == event.type:
                sub.accept(event_id, known.seq)  # a resubmission: its original seq
            else:
                sub.reject(
                    [
                        FieldError(
                            "event_id",
                            f"already used by a {known.type} (seq {known.seq});"
                            " an event id is unique forever",
                            "event_id_reused",
                        )
                    ],
                    event_id,
                )
            return
        errors = self.p.model.decide(self.view, event)
        if errors:
            sub.reject(errors, event_id)
            return
        self.p.model.note(self.view, event)
        self.pending.append((sub, event))
        self.pending_subjects.add(subject_of(event))

    async def flush(self) -> None:
        """Append the pending events (pipelined), commit their effect, retry conflicts."""
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            if not self.pending:
                return
            pending, self.pending = self.pending, []
            self.pending_subjects = set()
            # Verdicts given so far go out before anything later is appended: after a
            # crash, a submission refused on the state before these appends must not be
            # decided again on the state after them.
            await self.p._answer([s for s in self.subs if s.receipt and not s.receipt.ok])
            items = [(e, self.seqs.get(subject_of(e), 0)) for _, e in pending]
            async with self.p.write_lock:
                results = await self.p.log.append_many(items, self.p._publisher)
            appended: list[tuple[Submission, EventBase, int]] = []
            already: list[tuple[Submission, EventBase, int]] = []
            conflicted: list[tuple[Submission, EventBase]] = []
            for (sub, event), result in zip(pending, results, strict=True):
                if isinstance(result, ConcurrencyConflict):
                    conflicted.append((sub, event))
                elif result.duplicate:
                    already.append((sub, event, result.seq))
                else:
                    appended.append((sub, event, result.seq))
            with Session(self.p.engine) as session, session.begin():
                apply_new(session, self.p.model, [(e, seq) for _, e, seq in appended])
            for _, _, seq in already:
                # Logged before (a crashed run, another instance): the follower applies the
                # logged body, which is the one that counts.
                await self.p.follower.wait_for(seq)
            written_here = {str(e.event_id) for _, e, _ in appended}
            for sub, event, seq in appended + already:
                event_id, subject = str(event.event_id), subject_of(event)
                if event_id in written_here:
                    self.p.follower.note_written(event_id)
                sub.accept(event_id, seq)
                self.known[event_id] = IndexedEvent(event_id, seq, event.type, subject)
                self.seqs[subject] = max(self.seqs.get(subject, 0), seq)
            if not conflicted:
                return
            log.info(
                "%d append(s) met a concurrent writer (attempt %d): catching up",
                len(conflicted),
                attempt + 1,
            )
            await self.p.follower.caught_up()
            self._load()  # the database now holds the other writer's events and ours
            for sub, event in conflicted:
                self.decide(sub, event)
        for sub, _ in self.pending:
            sub.reject(
                [FieldError("aggregate_id", "too many concurrent writers; submit again", "busy")]
            )
        self.pending, self.pending_subjects = [], set()
