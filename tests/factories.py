"""Valid events and submissions for tests, with overridable fields."""

from __future__ import annotations

import uuid
from typing import Any

from shared.codec import event_from_dict
from shared.events import EventBase

Q1, Q2 = "QN09301M", "QN09302M"

DATA: dict[str, dict[str, Any]] = {
    "EnvieRecorded": {
        "channel": "permanence",
        "theme": "sport",
        "summary": "un terrain de basket rénové",
        "porteur_id": None,
        "wants_to_carry": True,
    },
    "EnvieClosed": {"reason": "withdrawn"},
    "PorteurRegistered": {"age_band": "16_25", "gender": "femme"},
    "GrantAwarded": {"grant_id": "g1", "project_id": "p1", "amount_cents": 50000},
    "ProjectSubmitted": {
        "amount_requested_cents": 80000,
        "expected_participants": 30,
        "co_funding": [],
    },
}


def submission(event_type: str = "EnvieRecorded", **fields: Any) -> dict[str, Any]:
    """A JSON-ready submission of ``event_type`` (schema 1 unless said), fields overridable."""
    doc: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": event_type,
        "schema_version": 1,
        "occurred_at": "2026-03-01T10:00:00+01:00",
        "quartier": Q1,
        "aggregate_id": uuid.uuid4().hex[:12],
        "correlation_id": None,
        "causation_id": None,
        "data": dict(DATA.get(event_type, {})),
    }
    data = fields.pop("data", None)
    if data:
        doc["data"].update(data)
    doc.update(fields)
    return doc


def event(event_type: str = "EnvieRecorded", **fields: Any) -> EventBase:
    return event_from_dict(submission(event_type, **fields))
