"""Bytes <-> events: parsing with field-level errors, and upcasting of old schema versions.

``parse_submission`` is what the inbox uses on a partner's bytes; ``parse_logged``
reads an event back from the log. Both upcast first, so an event written with
any past ``schema_version`` is read as the current model forever.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.events import EVENT_ADAPTER, EVENT_TYPES, SUBMISSION_ONLY_FIELDS, EventBase

MAX_SUBMISSION_BYTES = 64 * 1024
"""A submission larger than this is refused before parsing (events are small)."""


@dataclass(frozen=True)
class FieldError:
    """One reason for a refusal: which field, why, and a stable machine code."""

    field: str
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


class InvalidEvent(Exception):
    """The bytes are not a valid event; ``errors`` lists every reason."""

    def __init__(self, errors: list[FieldError], doc: dict[str, Any] | None = None) -> None:
        super().__init__("; ".join(f"{e.field}: {e.message}" for e in errors))
        self.errors = errors
        self.doc = doc


# --- upcasting ----------------------------------------------------------------

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}
"""(type, schema_version) -> function turning that version's dict into the next version's."""


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function that upcasts ``event_type`` from ``from_version`` to the next."""

    def register(fn: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in UPCASTERS:
            raise ValueError(f"an upcaster for {key} is already registered")
        UPCASTERS[key] = fn
        return fn

    return register


@upcaster("EnvieRecorded", 1)
def _envie_recorded_v1_to_v2(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 2 adds ``data.place`` (the place of expression); version 1 did not know it."""
    data = dict(doc.get("data") or {})
    data.setdefault("place", None)
    return {**doc, "schema_version": 2, "data": data}


def upcast(doc: dict[str, Any]) -> dict[str, Any]:
    """Apply registered upcasters until the event is at its type's current version."""
    cls = EVENT_TYPES.get(doc.get("type"))  # type: ignore[arg-type]
    version = doc.get("schema_version")
    if cls is None or type(version) is not int:
        return doc  # validation reports it
    while version < cls.CURRENT_VERSION:
        step = UPCASTERS.get((cls.__name__, version))
        if step is None:
            break  # validation reports the unknown version
        doc = step(doc)
        version = doc["schema_version"]
    return doc


# --- parsing ------------------------------------------------------------------


def _field_path(loc: tuple[int | str, ...]) -> str:
    # The discriminated union puts the tag first: ('EnvieRecorded', 'data', 'summary').
    parts = list(loc)
    if parts and parts[0] in EVENT_TYPES:
        parts = parts[1:]
    return ".".join(str(p) for p in parts) or "(body)"


def errors_from_validation(exc: ValidationError) -> list[FieldError]:
    """One FieldError per pydantic error, with the JSON path of the field."""
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        kind = err["type"]
        if kind == "union_tag_invalid":
            out.append(
                FieldError(
                    "type",
                    f"unknown event type {err['input'].get('type')!r}; known types: "
                    + ", ".join(EVENT_TYPES),
                    "unknown_type",
                )
            )
        elif kind == "union_tag_not_found":
            out.append(FieldError("type", "missing: every event needs a 'type'", "missing"))
        elif kind == "rule":
            ctx = err.get("ctx") or {}
            loc = () if ctx.get("top_level") else tuple(err["loc"])
            path = _field_path((*loc, ctx["field"]) if loc else (err["loc"][0], ctx["field"]))
            out.append(FieldError(path, str(ctx["message"]), "rule"))
        else:
            msg = err["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            out.append(FieldError(_field_path(err["loc"]), msg, kind))
    return out


def _load(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_SUBMISSION_BYTES:
        raise InvalidEvent(
            [
                FieldError(
                    "(body)",
                    f"{len(raw)} bytes is over the limit of {MAX_SUBMISSION_BYTES} bytes",
                    "too_large",
                )
            ]
        )
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(
            [FieldError("(body)", f"not valid UTF-8 JSON: {exc}", "not_json")]
        ) from None
    if not isinstance(doc, dict):
        raise InvalidEvent(
            [FieldError("(body)", f"must be a JSON object, got {type(doc).__name__}", "not_object")]
        )
    return doc


def _validate(doc: dict[str, Any]) -> EventBase:
    try:
        return EVENT_ADAPTER.validate_json(json.dumps(doc, default=str))
    except ValidationError as exc:
        raise InvalidEvent(errors_from_validation(exc), doc) from None


def parse_submission(raw: bytes) -> EventBase:
    """Parse a submitted event; ``recorded_at`` and ``source`` are dropped (set by the service)."""
    doc = _load(raw)
    cls = EVENT_TYPES.get(doc.get("type"))  # type: ignore[arg-type]
    if (
        cls is not None
        and doc.get("schema_version") == cls.CURRENT_VERSION
        and not any(name in doc for name in SUBMISSION_ONLY_FIELDS)
    ):
        try:  # the common case: validate the bytes as they came
            return EVENT_ADAPTER.validate_json(raw)
        except ValidationError as exc:
            raise InvalidEvent(errors_from_validation(exc), doc) from None
    for name in SUBMISSION_ONLY_FIELDS:
        doc.pop(name, None)
    return _validate(upcast(doc))


def parse_logged(raw: bytes) -> EventBase:
    """Parse an event read from the log, upcast to the current schema."""
    doc = _load_logged(raw)
    cls = EVENT_TYPES.get(doc.get("type"))  # type: ignore[arg-type]
    if cls is not None and doc.get("schema_version") == cls.CURRENT_VERSION:
        try:  # the common case: validate the bytes as logged (no re-serialising)
            return EVENT_ADAPTER.validate_json(raw)
        except ValidationError as exc:
            raise InvalidEvent(errors_from_validation(exc), doc) from None
    return _validate(upcast(doc))


def _load_logged(raw: bytes) -> dict[str, Any]:
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise InvalidEvent([FieldError("(body)", "logged event is not a JSON object")])
    return doc


def peek(raw: bytes, name: str) -> str | None:
    """Best-effort string field of bytes that may not be a valid event (for receipts)."""
    if len(raw) > MAX_SUBMISSION_BYTES:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    value = doc.get(name) if isinstance(doc, dict) else None
    return value if isinstance(value, str) and len(value) <= 64 else None


def event_from_dict(doc: dict[str, Any]) -> EventBase:
    """Build an event from a JSON-like dict (UUIDs, datetimes and enums may be objects)."""
    return _validate(upcast(dict(doc)))
