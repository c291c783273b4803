"""What a service plugs into the shared follower and inbox: its projection and its decisions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy.orm import Session

from shared.codec import FieldError
from shared.events import EventBase


class Projection(Protocol):
    """A service's read models: which event types it follows, and how they change them."""

    followed_types: frozenset[str]

    def apply(self, session: Session, events: Sequence[tuple[EventBase, int]]) -> None:
        """Apply new events (each with its log sequence, in log order) in one transaction."""
        ...


class Decisions(Protocol):
    """A service's rules on state, batch-friendly: load once, decide many."""

    def load(self, session: Session, events: Sequence[EventBase]) -> Any:
        """A view with everything ``decide`` needs for these events (a few queries)."""
        ...

    def decide(self, view: Any, event: EventBase) -> list[FieldError]:
        """Every reason to refuse ``event`` (empty: accept)."""
        ...

    def note(self, view: Any, event: EventBase) -> None:
        """Record an accepted event in ``view`` so later decisions of the batch see it."""
        ...


class ServiceModel(Projection, Decisions, Protocol):
    """Both sides of a service that owns event types."""
