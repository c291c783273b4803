"""The event catalogue and the codec (CONTRACT 1.1, 1.2, 2), pure: no NATS."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.codec import (
    UPCASTERS,
    FieldError,
    InvalidEvent,
    event_from_dict,
    parse_logged,
    parse_submission,
    upcaster,
)
from shared.events import (
    EVENT_ADAPTER,
    EVENT_CLASSES,
    EVENT_TYPES,
    CommitteeDecided,
    EnvieRecorded,
    envelope_id,
)
from shared.receipts import Receipt
from tests.factories import DATA, Q1, submission

# CONTRACT 1.2: type -> (owner, aggregate)
CONTRACT_TYPES = {
    "EnvieRecorded": ("intake", "envie"),
    "EnvieClosed": ("intake", "envie"),
    "PorteurRegistered": ("intake", "porteur"),
    "ProjectAccompanied": ("review", "project"),
    "ProjectSubmitted": ("review", "project"),
    "CommitteeDecided": ("review", "project"),
    "GrantAwarded": ("funding", "envelope"),
    "GrantRefused": ("funding", "envelope"),
    "GrantPaid": ("funding", "envelope"),
    "GrantSettled": ("funding", "envelope"),
    "EnvelopeOpened": ("funding", "envelope"),
    "EnvelopeToppedUp": ("funding", "envelope"),
    "ProjectCompleted": ("review", "project"),
    "ImpactAssessed": ("review", "project"),
    "MobilisationRecorded": ("review", "project"),
}
ENVELOPE = envelope_id(2026, Q1)


def valid(event_type: str, **fields: Any) -> dict[str, Any]:
    """A valid submission of any type (the envelope's aggregate id follows its year)."""
    if event_type == "EnvelopeOpened":
        fields.setdefault("aggregate_id", ENVELOPE)
    return submission(event_type, **fields)


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def refusal(doc: dict[str, Any]) -> list[FieldError]:
    with pytest.raises(InvalidEvent) as info:
        parse_submission(raw(doc))
    return info.value.errors


def only_error(doc: dict[str, Any]) -> FieldError:
    errors = refusal(doc)
    assert len(errors) == 1, [e.as_dict() for e in errors]
    return errors[0]


# --- the catalogue ------------------------------------------------------------


def test_catalogue_is_the_contract_list_with_owners_and_aggregates():
    assert len(EVENT_CLASSES) == 15
    assert {n: (c.OWNER, c.AGGREGATE.value) for n, c in EVENT_TYPES.items()} == CONTRACT_TYPES


def test_factories_have_data_for_every_type():
    assert set(DATA) == set(EVENT_TYPES)


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_every_type_parses_from_a_valid_submission(event_type):
    doc = valid(event_type)
    event = parse_submission(raw(doc))
    cls = EVENT_TYPES[event_type]
    assert type(event) is cls
    assert event.type == event_type
    assert str(event.event_id) == doc["event_id"]
    assert event.schema_version == cls.CURRENT_VERSION
    # What is logged reads back as the same event.
    assert parse_logged(event.to_json()) == event


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_discriminated_union_picks_the_class_by_type(event_type):
    cls = EVENT_TYPES[event_type]
    # The union itself sees current versions only (upcasting happens before it).
    event = EVENT_ADAPTER.validate_json(raw(valid(event_type, schema_version=cls.CURRENT_VERSION)))
    assert type(event) is cls


def test_union_validates_against_the_tagged_class_only():
    # EnvieRecorded's data under the EnvieClosed tag: refused as an EnvieClosed, no fallback.
    doc = submission("EnvieClosed", data=DATA["EnvieRecorded"])
    doc["data"].pop("reason")
    fields = {(e.field, e.code) for e in refusal(doc)}
    assert ("data.reason", "missing") in fields
    assert ("data.channel", "extra_forbidden") in fields


def test_unknown_and_missing_type_are_refused_on_type():
    assert (only_error(submission("EnvieSung")).field, "unknown_type") == ("type", "unknown_type")
    doc = submission("EnvieClosed")
    del doc["type"]
    error = only_error(doc)
    assert (error.field, error.code) == ("type", "missing")


def test_votes_are_written_with_the_contract_name_for():
    event = parse_submission(raw(valid("CommitteeDecided")))
    assert isinstance(event, CommitteeDecided)
    assert json.loads(event.to_json())["data"]["votes"] == {"for": 5, "against": 1, "abstain": 1}


# --- strict rules ---------------------------------------------------------------

VOTES_4 = {"for": 2, "against": 1, "abstain": 1}

REFUSED: list[tuple[str, str, dict[str, Any], str, str]] = [
    # (id, type, overrides, field, code)
    ("float-cents", "GrantPaid", {"data": {"amount_cents": 10.5}}, "data.amount_cents", "int_type"),
    (
        "whole-float-cents",
        "GrantPaid",
        {"data": {"amount_cents": 10.0}},
        "data.amount_cents",
        "int_type",
    ),
    (
        "string-int",
        "ProjectSubmitted",
        {"data": {"amount_requested_cents": "100"}},
        "data.amount_requested_cents",
        "int_type",
    ),
    (
        "bool-int",
        "ProjectCompleted",
        {"data": {"participants": True}},
        "data.participants",
        "int_type",
    ),
    (
        "int-bool",
        "EnvieRecorded",
        {"data": {"wants_to_carry": 1}},
        "data.wants_to_carry",
        "bool_type",
    ),
    (
        "naive-timestamp",
        "EnvieClosed",
        {"occurred_at": "2026-03-01T10:00:00"},
        "occurred_at",
        "timezone_aware",
    ),
    ("unknown-enum", "EnvieRecorded", {"data": {"channel": "pigeon"}}, "data.channel", "enum"),
    (
        "extra-data-field",
        "EnvieClosed",
        {"data": {"colour": "red"}},
        "data.colour",
        "extra_forbidden",
    ),
    ("extra-envelope-field", "EnvieClosed", {"priority": 1}, "priority", "extra_forbidden"),
    (
        "empty-summary",
        "EnvieRecorded",
        {"data": {"summary": ""}},
        "data.summary",
        "string_too_short",
    ),
    (
        "long-summary",
        "EnvieRecorded",
        {"data": {"summary": "x" * 2001}},
        "data.summary",
        "string_too_long",
    ),
    (
        "empty-envie-ids",
        "ProjectAccompanied",
        {"data": {"envie_ids": []}},
        "data.envie_ids",
        "too_short",
    ),
    (
        "empty-porteur-ids",
        "ProjectAccompanied",
        {"data": {"porteur_ids": []}},
        "data.porteur_ids",
        "too_short",
    ),
    (
        "zero-request",
        "ProjectSubmitted",
        {"data": {"amount_requested_cents": 0}},
        "data.amount_requested_cents",
        "greater_than",
    ),
    ("bad-uuid", "EnvieClosed", {"event_id": "not-a-uuid"}, "event_id", "uuid_parsing"),
    (
        "subject-unsafe-id",
        "EnvieClosed",
        {"aggregate_id": "a.b"},
        "aggregate_id",
        "string_pattern_mismatch",
    ),
    ("unknown-outcome", "ProjectCompleted", {"data": {"outcome": "great"}}, "data.outcome", "enum"),
    (
        "empty-mechanisms",
        "MobilisationRecorded",
        {"data": {"mechanisms": []}},
        "data.mechanisms",
        "too_short",
    ),
    (
        "duplicate-mechanisms",
        "MobilisationRecorded",
        {"data": {"mechanisms": ["ecole", "affichage", "ecole"]}},
        "data.mechanisms",
        "value_error",
    ),
    (
        "unknown-mechanism",
        "MobilisationRecorded",
        {"data": {"mechanisms": ["tam_tam"]}},
        "data.mechanisms.0",
        "enum",
    ),
    (
        "score-level-6",
        "ImpactAssessed",
        {"data": {"scores": {"5": 3, "6": 1}}},
        "data.scores.6.[key]",
        "literal_error",
    ),
    ("no-scores", "ImpactAssessed", {"data": {"scores": {}}}, "data.scores", "value_error"),
    (
        "negative-score",
        "ImpactAssessed",
        {"data": {"scores": {"4": -1}}},
        "data.scores.4",
        "greater_than_equal",
    ),
    ("votes-not-summing", "CommitteeDecided", {"data": {"votes": VOTES_4}}, "data.votes", "rule"),
    (
        "approved-zero",
        "CommitteeDecided",
        {"data": {"amount_approved_cents": 0}},
        "data.amount_approved_cents",
        "rule",
    ),
    (
        "rejected-with-amount",
        "CommitteeDecided",
        {"data": {"decision": "rejected"}},
        "data.amount_approved_cents",
        "rule",
    ),
    (
        "deferred-with-amount",
        "CommitteeDecided",
        {"data": {"decision": "deferred"}},
        "data.amount_approved_cents",
        "rule",
    ),
    (
        "more-residents-than-members",
        "CommitteeDecided",
        {"data": {"residents_present": 8}},
        "data.residents_present",
        "rule",
    ),
    (
        "funders-not-summing",
        "EnvelopeOpened",
        {"data": {"funders": [{"funder": "ville", "amount_cents": 999999}]}},
        "data.funders",
        "rule",
    ),
    ("no-funders", "EnvelopeOpened", {"data": {"funders": []}}, "data.funders", "too_short"),
    (
        "float-funder-cents",
        "EnvelopeOpened",
        {"data": {"funders": [{"funder": "ville", "amount_cents": 1000000.0}]}},
        "data.funders.0.amount_cents",
        "int_type",
    ),
    (
        "schema-version-0",
        "EnvieClosed",
        {"schema_version": 0},
        "schema_version",
        "greater_than_equal",
    ),
]


@pytest.mark.parametrize(
    ("event_type", "overrides", "field", "code"),
    [r[1:] for r in REFUSED],
    ids=[r[0] for r in REFUSED],
)
def test_strict_rules_refuse_with_field_path_and_code(event_type, overrides, field, code):
    error = only_error(valid(event_type, **overrides))
    assert (error.field, error.code) == (field, code), error.message


def test_summary_boundaries_are_accepted():
    for summary in ("x", "é" * 2000):
        parse_submission(raw(submission("EnvieRecorded", data={"summary": summary})))


def test_cross_field_messages_name_the_fields():
    votes = only_error(valid("CommitteeDecided", data={"votes": VOTES_4}))
    assert "members_present" in votes.message
    approved = only_error(valid("CommitteeDecided", data={"amount_approved_cents": 0}))
    assert "approved" in approved.message
    funders = only_error(
        valid("EnvelopeOpened", data={"funders": [{"funder": "ville", "amount_cents": 1}]})
    )
    assert "amount_cents" in funders.message


def test_decisions_other_than_approved_carry_zero():
    for decision in ("rejected", "deferred"):
        doc = valid("CommitteeDecided", data={"decision": decision, "amount_approved_cents": 0})
        assert parse_submission(raw(doc)).data.decision == decision  # type: ignore[attr-defined]


def test_envelope_opened_needs_its_aggregate_id():
    parse_submission(raw(valid("EnvelopeOpened", aggregate_id="FPH-2026-QN09301M")))
    for wrong in ("FPH-2025-QN09301M", f"FPH-2026-{'QN09302M'}", "envelope-1"):
        error = only_error(valid("EnvelopeOpened", aggregate_id=wrong))
        assert (error.field, error.code) == ("aggregate_id", "rule")
        assert ENVELOPE in error.message


def test_envelope_opened_aggregate_id_error_is_on_the_field():
    assert only_error(valid("EnvelopeOpened", aggregate_id="envelope-1")).field == "aggregate_id"


def test_votes_use_the_contract_name_for_not_the_python_one():
    doc = valid("CommitteeDecided", data={"votes": {"for_": 7, "against": 0, "abstain": 0}})
    fields = {e.field for e in refusal(doc)}
    assert fields == {"data.votes.for", "data.votes.for_"}


def test_every_error_is_reported_not_only_the_first():
    doc = submission(
        "EnvieRecorded",
        occurred_at="2026-03-01T10:00:00",
        data={"channel": "pigeon", "summary": ""},
    )
    fields = {e.field for e in refusal(doc)}
    assert fields == {"occurred_at", "data.channel", "data.summary"}


# --- submissions ------------------------------------------------------------------


def test_parse_submission_drops_recorded_at_and_source():
    doc = submission("EnvieClosed", recorded_at="2020-01-01T00:00:00+00:00", source="someone-else")
    event = parse_submission(raw(doc))
    assert event.recorded_at is None
    assert event.source is None


def test_parse_submission_ignores_even_invalid_recorded_at_and_source():
    doc = submission("EnvieClosed", recorded_at="yesterday", source="not a token!")
    event = parse_submission(raw(doc))
    assert (event.recorded_at, event.source) == (None, None)


def test_parse_logged_keeps_recorded_at_and_source():
    doc = submission("EnvieClosed", recorded_at="2026-03-01T10:00:01+00:00", source="cs-nord")
    event = parse_logged(raw(doc))
    assert event.source == "cs-nord"
    assert event.recorded_at is not None


@pytest.mark.parametrize(
    ("body", "code"),
    [(b"{not json", "not_json"), (b"[1, 2]", "not_object"), (b"\xff\xfe", "not_json")],
)
def test_non_json_submissions_are_refused_on_the_body(body, code):
    with pytest.raises(InvalidEvent) as info:
        parse_submission(body)
    assert [(e.field, e.code) for e in info.value.errors] == [("(body)", code)]


# --- upcasting ----------------------------------------------------------------------


def test_envie_recorded_v1_is_upcast_to_v2_with_no_place():
    doc = submission("EnvieRecorded", schema_version=1)
    assert "place" not in doc["data"]
    for event in (parse_submission(raw(doc)), parse_logged(raw(doc)), event_from_dict(doc)):
        assert isinstance(event, EnvieRecorded)
        assert event.schema_version == 2
        assert event.data.place is None
    # The upcast event is logged as version 2.
    assert json.loads(parse_submission(raw(doc)).to_json())["schema_version"] == 2


def test_envie_recorded_v2_keeps_its_place():
    doc = submission("EnvieRecorded", schema_version=2, data={"place": "marché du samedi"})
    event = parse_submission(raw(doc))
    assert isinstance(event, EnvieRecorded)
    assert event.data.place == "marché du samedi"


@pytest.mark.parametrize(("event_type", "version"), [("EnvieRecorded", 3), ("EnvieClosed", 2)])
def test_versions_above_the_current_one_are_refused(event_type, version):
    error = only_error(submission(event_type, schema_version=version))
    assert error.field == "schema_version"
    assert str(version) in error.message


def test_schema_version_must_be_an_integer():
    error = only_error(submission("EnvieRecorded", schema_version="1"))
    assert (error.field, error.code) == ("schema_version", "int_type")


def test_a_second_upcaster_for_the_same_key_is_refused():
    key = ("EnvieRecorded", 1)
    original = UPCASTERS[key]
    with pytest.raises(ValueError, match="already registered"):
        upcaster(*key)(lambda doc: doc)
    assert UPCASTERS[key] is original


def test_registering_an_upcaster_for_a_new_key():
    key = ("TestOnlyType", 7)
    assert key not in UPCASTERS
    try:
        fn = upcaster(*key)(lambda doc: {**doc, "schema_version": 8})
        assert UPCASTERS[key] is fn
    finally:
        UPCASTERS.pop(key, None)


# --- receipts -------------------------------------------------------------------------


def test_accepted_receipt_json_round_trip():
    receipt = Receipt.accepted(12, "0b0d7c1e-6f1c-4c59-9a55-9a3b4b8d2a01", 345)
    doc = json.loads(receipt.to_json())
    assert doc == {
        "status": "accepted",
        "inbox_seq": 12,
        "event_id": "0b0d7c1e-6f1c-4c59-9a55-9a3b4b8d2a01",
        "seq": 345,
    }
    back = Receipt.from_json(receipt.to_json())
    assert back == receipt
    assert back.ok


def test_rejected_receipt_json_round_trip():
    errors = [
        FieldError("data.summary", "String should have at most 2000 characters", "string_too_long"),
        FieldError("(body)", "pas du JSON", "not_json"),
    ]
    receipt = Receipt.rejected(13, None, errors)
    doc = json.loads(receipt.to_json())
    assert doc == {
        "status": "rejected",
        "inbox_seq": 13,
        "event_id": None,
        "errors": [e.as_dict() for e in errors],
    }
    assert "seq" not in doc
    back = Receipt.from_json(receipt.to_json())
    assert back == receipt
    assert not back.ok
    assert back.error_dicts() == [e.as_dict() for e in errors]


def test_receipt_errors_without_code_read_as_invalid():
    raw_receipt = json.dumps(
        {
            "status": "rejected",
            "inbox_seq": 1,
            "event_id": "x",
            "errors": [{"field": "type", "message": "unknown"}],
        }
    ).encode()
    assert Receipt.from_json(raw_receipt).errors == (FieldError("type", "unknown", "invalid"),)


def test_receipt_from_a_real_refusal():
    doc = submission("EnvieRecorded", data={"summary": ""})
    with pytest.raises(InvalidEvent) as info:
        parse_submission(raw(doc))
    receipt = Receipt.rejected(5, doc["event_id"], info.value.errors)
    assert Receipt.from_json(receipt.to_json()).error_dicts() == [
        {
            "field": "data.summary",
            "message": info.value.errors[0].message,
            "code": "string_too_short",
        }
    ]
