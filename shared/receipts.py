"""The verdict on a submission (CONTRACT 2), published on ``fph.receipts.<source>.<inbox_seq>``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from shared.codec import FieldError


@dataclass(frozen=True)
class Receipt:
    """``accepted`` with the log sequence, or ``rejected`` with every error."""

    status: Literal["accepted", "rejected"]
    inbox_seq: int
    event_id: str | None
    seq: int | None = None
    errors: tuple[FieldError, ...] | None = None

    @classmethod
    def accepted(cls, inbox_seq: int, event_id: str, seq: int) -> Receipt:
        return cls("accepted", inbox_seq, event_id, seq=seq)

    @classmethod
    def rejected(cls, inbox_seq: int, event_id: str | None, errors: list[FieldError]) -> Receipt:
        return cls("rejected", inbox_seq, event_id, errors=tuple(errors))

    @property
    def ok(self) -> bool:
        return self.status == "accepted"

    def error_dicts(self) -> list[dict[str, str]]:
        return [e.as_dict() for e in self.errors or ()]

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status": self.status,
            "inbox_seq": self.inbox_seq,
            "event_id": self.event_id,
        }
        if self.ok:
            doc["seq"] = self.seq
        else:
            doc["errors"] = self.error_dicts()
        return doc

    def to_json(self) -> bytes:
        return json.dumps(self.as_dict(), ensure_ascii=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Receipt:
        doc = json.loads(raw)
        errors = doc.get("errors")
        return cls(
            status=doc["status"],
            inbox_seq=int(doc["inbox_seq"]),
            event_id=doc.get("event_id"),
            seq=doc.get("seq"),
            errors=tuple(
                FieldError(e["field"], e["message"], e.get("code", "invalid")) for e in errors
            )
            if errors is not None
            else None,
        )
