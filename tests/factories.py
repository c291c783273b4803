"""Valid events and submissions for tests, with overridable fields."""

from __future__ import annotations

import copy
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
    "ProjectAccompanied": {
        "title": "un jardin partagé",
        "envie_ids": ["e1"],
        "porteur_ids": ["po1"],
        "partner": "cs-nord",
        "stage": "emergence",
    },
    "CommitteeDecided": {
        "decision": "approved",
        "amount_approved_cents": 50000,
        "votes": {"for": 5, "against": 1, "abstain": 1},
        "members_present": 7,
        "residents_present": 4,
    },
    "GrantRefused": {"project_id": "p1", "reason": "no_envelope"},
    "GrantPaid": {"grant_id": "g1", "amount_cents": 20000},
    "GrantSettled": {"grant_id": "g1", "spent_cents": 45000, "returned_cents": 5000},
    # aggregate_id must be envelope_id(year, quartier): pass aggregate_id="FPH-2026-QN09301M".
    "EnvelopeOpened": {
        "year": 2026,
        "amount_cents": 1000000,
        "cap_per_project_cents": 200000,
        "funders": [{"funder": "ville", "amount_cents": 1000000}],
    },
    "EnvelopeToppedUp": {"amount_cents": 100000, "funder": "bailleur"},
    "ProjectCompleted": {"outcome": "achieved", "participants": 25},
    "ImpactAssessed": {"scores": {"3": 2, "4": 5, "5": 10}},
    "MobilisationRecorded": {"mechanisms": ["ecole", "affichage"]},
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
        "data": copy.deepcopy(DATA.get(event_type, {})),
    }
    data = fields.pop("data", None)
    if data:
        doc["data"].update(data)
    doc.update(fields)
    return doc


def event(event_type: str = "EnvieRecorded", **fields: Any) -> EventBase:
    return event_from_dict(submission(event_type, **fields))
