"""Subject names of CONTRACT 1 and 2, built in one place."""

from __future__ import annotations

from dataclasses import dataclass

EVENTS_STREAM = "FPH_EVENTS"
INBOX_STREAM = "FPH_INBOX"
RECEIPTS_STREAM = "FPH_RECEIPTS"
REJECTED_STREAM = "FPH_REJECTED"

EVENTS_ALL = "fph.events.>"
INBOX_ALL = "fph.inbox.>"
RECEIPTS_ALL = "fph.receipts.>"
REJECTED_ALL = "fph.rejected.>"

INVALID_TYPE_TOKEN = "_invalid"
"""Type token used on ``fph.rejected.<source>.<type>`` when the inbox subject had none."""


def event_subject(quartier: str, aggregate: str, aggregate_id: str) -> str:
    """``fph.events.<quartier>.<aggregate>.<aggregate_id>``: one subject per aggregate."""
    return f"fph.events.{quartier}.{aggregate}.{aggregate_id}"


def inbox_subject(source: str, event_type: str) -> str:
    """Where a source submits an event of a type: ``fph.inbox.<source>.<type>``."""
    return f"fph.inbox.{source}.{event_type}"


def inbox_filter(event_type: str) -> str:
    """Every source's submissions of one type."""
    return f"fph.inbox.*.{event_type}"


def receipt_subject(source: str, inbox_seq: int) -> str:
    """The verdict on one submission: ``fph.receipts.<source>.<inbox_seq>``."""
    return f"fph.receipts.{source}.{inbox_seq}"


def rejected_subject(source: str, event_type: str) -> str:
    """Where a refused submission is kept: ``fph.rejected.<source>.<type>``."""
    return f"fph.rejected.{source}.{event_type}"


@dataclass(frozen=True)
class InboxAddress:
    """Source and type read from an inbox subject; ``type`` is None when the subject has none."""

    source: str
    type: str | None


def parse_inbox_subject(subject: str) -> InboxAddress:
    """Split ``fph.inbox.<source>.<type>``; a subject of another shape keeps its source only."""
    tokens = subject.split(".")
    source = tokens[2] if len(tokens) > 2 else "_unknown"
    event_type = tokens[3] if len(tokens) == 4 else None
    return InboxAddress(source=source, type=event_type)
