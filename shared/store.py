"""Tracking tables every service keeps beside its read models (SQLAlchemy 2, sync).

A service's database is a cache of the log. Beside its own tables it keeps:

- ``fph_checkpoint``: the last ``FPH_EVENTS`` sequence its projection applied,
  written in the same transaction as the state it produced;
- ``fph_event_index``: event id -> sequence, type and subject of every event it
  applied (idempotency: a resubmitted event id answers its original sequence);
- ``fph_subject_seq``: last sequence seen per aggregate subject (the expected
  sequence of the next append on that aggregate);
- ``fph_inbox_progress``: the highest inbox sequence it has decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

metadata = sa.MetaData()

checkpoint = sa.Table(
    "fph_checkpoint",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

event_index = sa.Table(
    "fph_event_index",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("subject", sa.String(300), nullable=False),
)

subject_seq = sa.Table(
    "fph_subject_seq",
    metadata,
    sa.Column("subject", sa.String(300), primary_key=True),
    sa.Column("last_seq", sa.BigInteger, nullable=False),
)

inbox_progress = sa.Table(
    "fph_inbox_progress",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("inbox_seq", sa.BigInteger, nullable=False),
)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL (readers never block the writer)."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})

        @sa_event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=10000")
            cur.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def get_checkpoint(session: Session, name: str) -> int:
    value = session.scalar(sa.select(checkpoint.c.seq).where(checkpoint.c.name == name))
    return int(value or 0)


def set_checkpoint(session: Session, name: str, seq: int) -> None:
    _upsert_max(session, checkpoint, checkpoint.c.name, name, checkpoint.c.seq, seq)


def get_inbox_progress(session: Session, name: str) -> int:
    value = session.scalar(
        sa.select(inbox_progress.c.inbox_seq).where(inbox_progress.c.name == name)
    )
    return int(value or 0)


def set_inbox_progress(session: Session, name: str, inbox_seq: int) -> None:
    _upsert_max(
        session, inbox_progress, inbox_progress.c.name, name, inbox_progress.c.inbox_seq, inbox_seq
    )


@dataclass(frozen=True)
class IndexedEvent:
    event_id: str
    seq: int
    type: str
    subject: str


def find_events(session: Session, event_ids: Iterable[str]) -> dict[str, IndexedEvent]:
    """The indexed events among ``event_ids`` (one query)."""
    ids = list(set(event_ids))
    if not ids:
        return {}
    rows = session.execute(sa.select(event_index).where(event_index.c.event_id.in_(ids)))
    return {r.event_id: IndexedEvent(r.event_id, r.seq, r.type, r.subject) for r in rows}


def get_subject_seqs(session: Session, subjects: Iterable[str]) -> dict[str, int]:
    """Last known sequence of each subject (absent: none yet), in one query."""
    wanted = list(set(subjects))
    if not wanted:
        return {}
    rows = session.execute(
        sa.select(subject_seq.c.subject, subject_seq.c.last_seq).where(
            subject_seq.c.subject.in_(wanted)
        )
    )
    return {r.subject: int(r.last_seq) for r in rows}


def index_events(
    session: Session,
    events: Sequence[IndexedEvent],
    known: Mapping[str, IndexedEvent] | None = None,
    track_subjects: bool = True,
) -> set[str]:
    """Record applied events in bulk; the ids that were new (apply only those).
    ``known``: the index entries among ``events`` if the caller has just looked them up;
    ``track_subjects``: keep ``fph_subject_seq`` too (only services that append need it)."""
    if not events:
        return set()
    if known is None:
        known = find_events(session, (e.event_id for e in events))
    new: dict[str, IndexedEvent] = {}
    for e in events:
        if e.event_id not in known and e.event_id not in new:
            new[e.event_id] = e
    if not new:
        return set()
    insert_rows(
        session,
        event_index,
        [
            {"event_id": e.event_id, "seq": e.seq, "type": e.type, "subject": e.subject}
            for e in new.values()
        ],
    )
    if not track_subjects:
        return set(new)
    highest: dict[str, int] = {}
    for e in new.values():
        highest[e.subject] = max(highest.get(e.subject, 0), e.seq)
    current = get_subject_seqs(session, highest)
    inserts = [{"subject": k, "last_seq": v} for k, v in highest.items() if k not in current]
    updates = [{"k": k, "v": v} for k, v in highest.items() if k in current and v > current[k]]
    if inserts:
        session.execute(subject_seq.insert(), inserts)
    if updates:
        session.execute(
            subject_seq.update()
            .where(subject_seq.c.subject == sa.bindparam("k"))
            .values(last_seq=sa.bindparam("v")),
            updates,
        )
    return set(new)


def insert_rows(session: Session, table: sa.Table, rows: Sequence[dict[str, object]]) -> None:
    """Insert many rows of plain values (str, int, date, bytes, None) with the driver's
    ``executemany``: the same as ``session.execute(table.insert(), rows)`` without
    SQLAlchemy's per-row parameter processing, the hot spot of a projection's replay."""
    if not rows:
        return
    columns = list(rows[0])
    connection = session.connection()
    style = connection.dialect.paramstyle
    marks = ", ".join("?" if style == "qmark" else "%s" for _ in columns)
    preparer = connection.dialect.identifier_preparer
    sql = (
        f"INSERT INTO {preparer.format_table(table)}"
        f" ({', '.join(preparer.quote(c) for c in columns)}) VALUES ({marks})"
    )
    cursor = connection.connection.cursor()
    try:
        cursor.executemany(sql, [tuple(row[c] for c in columns) for row in rows])
    finally:
        cursor.close()


def _upsert_max(
    session: Session,
    table: sa.Table,
    key_col: sa.Column[str],
    key: str,
    value_col: sa.Column[int],
    value: int,
) -> None:
    """Set ``value_col`` to ``value`` for ``key`` unless it is already higher."""
    current = session.scalar(sa.select(value_col).where(key_col == key))
    if current is None:
        session.execute(table.insert().values({key_col.name: key, value_col.name: value}))
    elif value > current:
        session.execute(table.update().where(key_col == key).values({value_col.name: value}))
