"""Refused submissions, counted from ``FPH_REJECTED`` into the indicators store.

Every refused submission is kept on ``fph.rejected.<source>.<type>`` with its errors in
the ``Fph-Errors`` header (``shared.inbox``). This follower counts them by type and
reason code, with its checkpoint in the same transaction as the counts, so ``/metrics``
reads totals that survive restarts and never count a message twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from nats.js import JetStreamContext
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from shared.events import EVENT_TYPES
from shared.reader import LoggedMessage, OrderedReader
from shared.store import get_checkpoint, metadata, set_checkpoint
from shared.subjects import REJECTED_ALL, REJECTED_STREAM

log = logging.getLogger(__name__)

CHECKPOINT = "indicators-rejected-v1"

rejections = sa.Table(
    "ind_rejections",
    metadata,
    sa.Column("type", sa.String(64), primary_key=True),
    sa.Column("reason", sa.String(64), primary_key=True),
    sa.Column("submissions", sa.BigInteger, nullable=False),
)


def reasons_of(msg: LoggedMessage) -> tuple[str, set[str]]:
    """The submission's type (from the subject; ``_unknown`` for a type the catalogue does
    not have, which a partner may invent at will) and its distinct reason codes."""
    token = msg.subject.rsplit(".", 1)[-1] if msg.subject else ""
    event_type = token if token in EVENT_TYPES else "_unknown"
    try:
        errors = json.loads(msg.headers.get("Fph-Errors", "[]"))
        codes = {str(e.get("code") or "invalid") for e in errors if isinstance(e, dict)}
    except ValueError:
        codes = set()
    return event_type, codes or {"unknown"}


def count(engine: Engine, position: int, messages: Sequence[LoggedMessage]) -> int:
    """Add the messages after ``position`` to the counts; the new position."""
    fresh = [m for m in messages if m.seq > position]
    if not fresh:
        return position
    added: Counter[tuple[str, str]] = Counter()
    for msg in fresh:
        event_type, codes = reasons_of(msg)
        for code in codes:
            added[(event_type, code)] += 1
    with Session(engine) as session, session.begin():
        known = {
            (t, r) for t, r in session.execute(sa.select(rejections.c.type, rejections.c.reason))
        }
        for (event_type, code), n in sorted(added.items()):
            if (event_type, code) in known:
                session.execute(
                    rejections.update()
                    .where(rejections.c.type == event_type, rejections.c.reason == code)
                    .values(submissions=rejections.c.submissions + n)
                )
            else:
                session.execute(
                    rejections.insert().values(type=event_type, reason=code, submissions=n)
                )
        set_checkpoint(session, CHECKPOINT, fresh[-1].seq)
    return fresh[-1].seq


def totals(session: Session) -> list[tuple[str, str, int]]:
    """(type, reason, refused submissions naming it) for ``/metrics``."""
    query = sa.select(rejections.c.type, rejections.c.reason, rejections.c.submissions)
    return [(t, r, int(n)) for t, r, n in session.execute(query.order_by(rejections.c.type))]


async def follow(js: JetStreamContext, engine: Engine) -> None:
    """Count ``FPH_REJECTED`` for ever from the checkpoint (errors logged, then resumed)."""
    while True:
        with Session(engine) as session:
            position = get_checkpoint(session, CHECKPOINT)
        try:
            reader = OrderedReader(  # old refusals may have aged out: holes are normal
                js, position + 1, stream=REJECTED_STREAM, subject=REJECTED_ALL, contiguous=False
            )
            async with reader:
                while True:
                    batch = await reader.next_batch()
                    # in a thread: the log's follower may hold SQLite's write lock a while
                    position = await asyncio.to_thread(count, engine, position, batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("counting FPH_REJECTED failed at seq %d; resuming in 1 s", position)
            await asyncio.sleep(1.0)
