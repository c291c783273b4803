"""Funding's answers to approved committee decisions: first decided, first served.

One instance at a time (lease ``funding-answers-v1``) answers the approved decisions
in the order they were logged, each with exactly one ``GrantAwarded`` or
``GrantRefused`` on the envelope's subject. The answer's event id is derived from
the decision's, and the append expects the envelope's last sequence: a decision
answered before (by a crashed run, or another instance) is recognised in the log
and never answered twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from services.funding import domain
from services.funding.store import load_envelopes, pending_decisions
from shared.codec import event_from_dict
from shared.events import with_recording
from shared.follower import apply_new
from shared.lease import Lease
from shared.log import ConcurrencyConflict, EventLog, subject_of
from shared.runtime import ServiceRuntime
from shared.store import find_events, get_subject_seqs

log = logging.getLogger(__name__)

LEASE_KEY = "funding-answers-v1"
MAX_CONFLICTS = 50


async def answer_decisions(rt: ServiceRuntime) -> None:
    """Answer pending decisions while holding the lease, until the runtime stops."""
    lease = Lease(rt.nc.jetstream(), LEASE_KEY)
    eventlog = EventLog(rt.nc.jetstream())
    while not rt.stopping.is_set():
        try:
            if not await lease.acquire(rt.stopping):
                return
            try:
                await rt.follower.caught_up()
                while not rt.stopping.is_set() and lease.valid():
                    with Session(rt.engine) as session:
                        pending = pending_decisions(session)
                    if not pending:
                        await rt.follower.moved(timeout=0.5)
                        continue
                    for decision in pending:
                        lease.check()  # a paused holder must not answer after a takeover
                        await _answer_one(rt, eventlog, decision)
            finally:
                await lease.release()
        except Exception:
            log.exception("answering decisions failed; starting over in 1 s")
            await asyncio.sleep(1.0)


async def _answer_one(
    rt: ServiceRuntime, eventlog: EventLog, decision: domain.PendingDecision
) -> None:
    for _ in range(MAX_CONFLICTS):
        async with rt.write_lock:  # this process's inbox writes on envelopes too
            if await _answered_already(rt, decision):
                return
            if await _append_answer(rt, eventlog, decision):
                return
        await rt.follower.caught_up()  # another process wrote on the envelope: decide again
    raise RuntimeError(f"decision seq {decision.decision_seq}: too many concurrent writers")


async def _answered_already(rt: ServiceRuntime, decision: domain.PendingDecision) -> bool:
    """Answered before (by a crashed run or another instance, and applied here)."""
    with Session(rt.engine) as session:
        known = find_events(session, [domain.answer_id(decision.event_id)])
    return bool(known)


async def _append_answer(
    rt: ServiceRuntime, eventlog: EventLog, decision: domain.PendingDecision
) -> bool:
    """Append the answer on the envelope as it stands; False on a concurrent write."""
    with Session(rt.engine) as session:
        envelope = load_envelopes(session, [decision.envelope_id]).get(decision.envelope_id)
        answer = domain.answer(decision, envelope)
        event = with_recording(
            event_from_dict(domain.answer_event(decision, answer)),
            source="funding",
            recorded_at=datetime.now(UTC),
        )
        subject = subject_of(event)
        expected = get_subject_seqs(session, [subject]).get(subject, 0)
    try:
        appended = await eventlog.append(event, expected)
    except ConcurrencyConflict:
        return False
    if appended.duplicate:
        await rt.follower.wait_for(appended.seq)  # the logged answer is the one applied
    else:
        with Session(rt.engine) as session, session.begin():
            apply_new(session, rt.model, [(event, appended.seq)])
        rt.follower.note_written(str(event.event_id))
    if not appended.duplicate:
        rt.metrics.answers.labels(
            answer.data.get("reason", "awarded") if answer.type == "GrantRefused" else "awarded"
        ).inc()
    log.info(
        "decision seq %d (project %s, %d cents): %s at seq %d%s",
        decision.decision_seq,
        decision.project_id,
        decision.amount_cents,
        answer.type,
        appended.seq,
        " (already answered)" if appended.duplicate else "",
    )
    return True
