"""The event catalogue of CONTRACT 1.1 and 1.2: one pydantic model per event type.

Every event is the envelope of CONTRACT 1.1 around a per-type ``data`` object.
``Event`` is the discriminated union on ``type``; ``parse_event`` turns raw bytes
(any schema version) into a current model, upcasting older versions first.

Models are strict: integers must be JSON integers (money is integer cents),
booleans JSON booleans, enums one of their listed values, timestamps RFC 3339
with an offset. Unknown fields are refused, so a typo never passes silently.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# A token usable inside a NATS subject: letters, digits, '-' and '_'.
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
Cents = Annotated[int, Field(ge=0, strict=True)]
PositiveCents = Annotated[int, Field(gt=0, strict=True)]
Count = Annotated[int, Field(ge=0, strict=True)]


def rule_error(field: str, message: str, top_level: bool = False) -> PydanticCustomError:
    """A cross-field rule broken: reported on ``field`` (inside the model's own path,
    or on the envelope when ``top_level``) rather than on the whole object."""
    return PydanticCustomError(
        "rule", "{message}", {"message": message, "field": field, "top_level": top_level}
    )


class Strict(BaseModel):
    """Base of every catalogue model: strict types, no unknown fields, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


# --- enumerations (CONTRACT 1.2) -------------------------------------------


class Channel(StrEnum):
    permanence = "permanence"
    conseil_citoyen = "conseil_citoyen"
    centre_social = "centre_social"
    en_ligne = "en_ligne"
    mediation_rue = "mediation_rue"
    evenement = "evenement"
    autre = "autre"


class Theme(StrEnum):
    culture = "culture"
    sport = "sport"
    cadre_de_vie = "cadre_de_vie"
    solidarite = "solidarite"
    jeunesse = "jeunesse"
    numerique = "numerique"
    education = "education"
    sante = "sante"
    environnement = "environnement"
    autre = "autre"


class CloseReason(StrEnum):
    duplicate = "duplicate"
    entered_in_error = "entered_in_error"
    withdrawn = "withdrawn"
    redirected = "redirected"
    out_of_scope = "out_of_scope"


RETRACTING_REASONS = frozenset({CloseReason.duplicate, CloseReason.entered_in_error})
"""Closing reasons that retract an envie: it no longer counts, as if never recorded."""


class AgeBand(StrEnum):
    moins_16 = "moins_16"
    b16_25 = "16_25"
    b26_59 = "26_59"
    b60_plus = "60_plus"
    inconnu = "inconnu"


class Gender(StrEnum):
    femme = "femme"
    homme = "homme"
    autre = "autre"
    non_renseigne = "non_renseigne"


class Stage(StrEnum):
    emergence = "emergence"
    montage = "montage"
    realisation = "realisation"


class Decision(StrEnum):
    approved = "approved"
    rejected = "rejected"
    deferred = "deferred"


class GrantRefusalReason(StrEnum):
    no_envelope = "no_envelope"
    cap_exceeded = "cap_exceeded"
    envelope_exhausted = "envelope_exhausted"


class Outcome(StrEnum):
    achieved = "achieved"
    partial = "partial"
    abandoned = "abandoned"


class Mechanism(StrEnum):
    bouche_a_oreille = "bouche_a_oreille"
    reseaux_sociaux = "reseaux_sociaux"
    centre_social = "centre_social"
    conseil_citoyen = "conseil_citoyen"
    ecole = "ecole"
    mediateur = "mediateur"
    affichage = "affichage"
    evenement = "evenement"
    autre = "autre"


class Aggregate(StrEnum):
    envie = "envie"
    porteur = "porteur"
    project = "project"
    envelope = "envelope"


# --- data payloads ----------------------------------------------------------


class EnvieRecordedData(Strict):
    channel: Channel
    theme: Theme
    summary: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    porteur_id: Token | None
    wants_to_carry: bool
    place: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    """Since schema 2: the place of expression (permanence, café, stand…), if known."""


class EnvieClosedData(Strict):
    reason: CloseReason


class PorteurRegisteredData(Strict):
    age_band: AgeBand
    gender: Gender


class ProjectAccompaniedData(Strict):
    title: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    envie_ids: Annotated[list[Token], Field(min_length=1, max_length=200)]
    porteur_ids: Annotated[list[Token], Field(min_length=1, max_length=200)]
    partner: Token
    stage: Stage


class Contribution(Strict):
    funder: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    amount_cents: PositiveCents


class ProjectSubmittedData(Strict):
    amount_requested_cents: PositiveCents
    expected_participants: Annotated[int, Field(ge=1, strict=True)]
    co_funding: list[Contribution]


class Votes(Strict):
    for_: Annotated[Count, Field(alias="for")]
    against: Count
    abstain: Count

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class CommitteeDecidedData(Strict):
    decision: Decision
    amount_approved_cents: Cents
    votes: Votes
    members_present: Annotated[int, Field(ge=1, strict=True)]
    residents_present: Count

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        v = self.votes
        if v.for_ + v.against + v.abstain != self.members_present:
            raise rule_error(
                "votes",
                f"votes for + against + abstain = {v.for_ + v.against + v.abstain}"
                f" must equal members_present = {self.members_present}",
            )
        if self.residents_present > self.members_present:
            raise rule_error("residents_present", "cannot exceed members_present")
        if self.decision is Decision.approved and self.amount_approved_cents <= 0:
            raise rule_error("amount_approved_cents", "must be > 0 when the decision is approved")
        if self.decision is not Decision.approved and self.amount_approved_cents != 0:
            raise rule_error("amount_approved_cents", "must be 0 unless the decision is approved")
        return self


class GrantAwardedData(Strict):
    grant_id: Token
    project_id: Token
    amount_cents: PositiveCents


class GrantRefusedData(Strict):
    project_id: Token
    reason: GrantRefusalReason


class GrantPaidData(Strict):
    grant_id: Token
    amount_cents: PositiveCents


class GrantSettledData(Strict):
    grant_id: Token
    spent_cents: Cents
    returned_cents: Cents


class EnvelopeOpenedData(Strict):
    year: Annotated[int, Field(ge=2000, le=2100, strict=True)]
    amount_cents: PositiveCents
    cap_per_project_cents: PositiveCents
    funders: Annotated[list[Contribution], Field(min_length=1)]

    @model_validator(mode="after")
    def _funders_sum(self) -> Self:
        total = sum(f.amount_cents for f in self.funders)
        if total != self.amount_cents:
            raise rule_error(
                "funders",
                f"funders sum to {total} cents, must equal amount_cents = {self.amount_cents}",
            )
        return self


class EnvelopeToppedUpData(Strict):
    amount_cents: PositiveCents
    funder: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ProjectCompletedData(Strict):
    outcome: Outcome
    participants: Count


ScoreLevel = Literal["1", "2", "3", "4", "5"]


class ImpactAssessedData(Strict):
    scores: dict[ScoreLevel, Count]

    @field_validator("scores")
    @classmethod
    def _some_answers(cls, v: dict[str, int]) -> dict[str, int]:
        if not v:
            raise ValueError("scores needs at least one level among '1'..'5'")
        return v


class MobilisationRecordedData(Strict):
    mechanisms: Annotated[list[Mechanism], Field(min_length=1)]

    @field_validator("mechanisms")
    @classmethod
    def _distinct(cls, v: list[Mechanism]) -> list[Mechanism]:
        if len(set(v)) != len(v):
            raise ValueError("each mechanism may be named once")
        return v


# --- the envelope -----------------------------------------------------------


class EventBase(Strict):
    """The envelope of CONTRACT 1.1, common to every event type."""

    OWNER: ClassVar[str]
    AGGREGATE: ClassVar[Aggregate]
    CURRENT_VERSION: ClassVar[int] = 1

    event_id: UUID
    type: str
    schema_version: Annotated[int, Field(ge=1, strict=True)]
    occurred_at: AwareDatetime
    recorded_at: AwareDatetime | None = None
    quartier: Token
    aggregate_id: Token
    source: Token | None = None
    correlation_id: UUID | None = None
    causation_id: UUID | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        # Reached only after upcasting, so anything but the current version is unknown.
        if v != cls.CURRENT_VERSION:
            raise ValueError(
                f"schema_version {v} is not known for this type (current: {cls.CURRENT_VERSION})"
            )
        return v

    def to_json(self) -> bytes:
        """The canonical payload: JSON, UTF-8, aliases used (``votes.for``)."""
        return self.model_dump_json(by_alias=True).encode()


class EnvieRecorded(EventBase):
    """A resident expressed an envie (wish, idea, need) in a place of expression."""

    OWNER = "intake"
    AGGREGATE = Aggregate.envie
    CURRENT_VERSION = 2
    type: Literal["EnvieRecorded"]
    data: EnvieRecordedData


class EnvieClosed(EventBase):
    """An envie was closed; ``duplicate`` and ``entered_in_error`` retract it."""

    OWNER = "intake"
    AGGREGATE = Aggregate.envie
    type: Literal["EnvieClosed"]
    data: EnvieClosedData


class PorteurRegistered(EventBase):
    """A resident carrying a project was registered under a pseudonymous id."""

    OWNER = "intake"
    AGGREGATE = Aggregate.porteur
    type: Literal["PorteurRegistered"]
    data: PorteurRegisteredData


class ProjectAccompanied(EventBase):
    """A partner accompanies a project (or adds envies, porteurs, a new stage)."""

    OWNER = "review"
    AGGREGATE = Aggregate.project
    type: Literal["ProjectAccompanied"]
    data: ProjectAccompaniedData


class ProjectSubmitted(EventBase):
    """A project was submitted to the FPH committee with its budget request."""

    OWNER = "review"
    AGGREGATE = Aggregate.project
    type: Literal["ProjectSubmitted"]
    data: ProjectSubmittedData


class CommitteeDecided(EventBase):
    """The FPH committee approved, rejected or deferred a submitted project."""

    OWNER = "review"
    AGGREGATE = Aggregate.project
    type: Literal["CommitteeDecided"]
    data: CommitteeDecidedData


class GrantAwarded(EventBase):
    """Funding granted an approved decision from the quartier's envelope."""

    OWNER = "funding"
    AGGREGATE = Aggregate.envelope
    type: Literal["GrantAwarded"]
    data: GrantAwardedData


class GrantRefused(EventBase):
    """Funding could not grant an approved decision, with the reason."""

    OWNER = "funding"
    AGGREGATE = Aggregate.envelope
    type: Literal["GrantRefused"]
    data: GrantRefusedData


class GrantPaid(EventBase):
    """A payment was made on a grant."""

    OWNER = "funding"
    AGGREGATE = Aggregate.envelope
    type: Literal["GrantPaid"]
    data: GrantPaidData


class GrantSettled(EventBase):
    """A grant was settled: what was spent, and what went back to the envelope."""

    OWNER = "funding"
    AGGREGATE = Aggregate.envelope
    type: Literal["GrantSettled"]
    data: GrantSettledData


class EnvelopeOpened(EventBase):
    """A quartier's FPH envelope for a year was opened (id ``FPH-<year>-<quartier>``)."""

    OWNER = "funding"
    AGGREGATE = Aggregate.envelope
    type: Literal["EnvelopeOpened"]
    data: EnvelopeOpenedData

    @model_validator(mode="after")
    def _aggregate_id(self) -> Self:
        wanted = envelope_id(self.data.year, self.quartier)
        if self.aggregate_id != wanted:
            raise rule_error(
                "aggregate_id",
                f"must be {wanted!r} for this year and quartier",
                top_level=True,
            )
        return self


class EnvelopeToppedUp(EventBase):
    """Money was added to an envelope by a funder."""

    OWNER = "funding"
    AGGREGATE = Aggregate.envelope
    type: Literal["EnvelopeToppedUp"]
    data: EnvelopeToppedUpData


class ProjectCompleted(EventBase):
    """A funded project ended; a later completion of the same project supersedes it."""

    OWNER = "review"
    AGGREGATE = Aggregate.project
    type: Literal["ProjectCompleted"]
    data: ProjectCompletedData


class ImpactAssessed(EventBase):
    """Participants' answers to "this project improved life in my quartier" (1 to 5)."""

    OWNER = "review"
    AGGREGATE = Aggregate.project
    type: Literal["ImpactAssessed"]
    data: ImpactAssessedData


class MobilisationRecorded(EventBase):
    """The mechanisms that mobilised residents on a project."""

    OWNER = "review"
    AGGREGATE = Aggregate.project
    type: Literal["MobilisationRecorded"]
    data: MobilisationRecordedData


EVENT_CLASSES: tuple[type[EventBase], ...] = (
    EnvieRecorded,
    EnvieClosed,
    PorteurRegistered,
    ProjectAccompanied,
    ProjectSubmitted,
    CommitteeDecided,
    GrantAwarded,
    GrantRefused,
    GrantPaid,
    GrantSettled,
    EnvelopeOpened,
    EnvelopeToppedUp,
    ProjectCompleted,
    ImpactAssessed,
    MobilisationRecorded,
)
EVENT_TYPES: dict[str, type[EventBase]] = {c.__name__: c for c in EVENT_CLASSES}

Event = Annotated[
    EnvieRecorded
    | EnvieClosed
    | PorteurRegistered
    | ProjectAccompanied
    | ProjectSubmitted
    | CommitteeDecided
    | GrantAwarded
    | GrantRefused
    | GrantPaid
    | GrantSettled
    | EnvelopeOpened
    | EnvelopeToppedUp
    | ProjectCompleted
    | ImpactAssessed
    | MobilisationRecorded,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

SUBMISSION_ONLY_FIELDS = ("recorded_at", "source")
"""Envelope fields set by the appending service; ignored when a submission carries them."""


def envelope_id(year: int, quartier: str) -> str:
    """The aggregate id of a quartier's envelope for a year (CONTRACT 1.2)."""
    return f"FPH-{year}-{quartier}"


def owner_of(event_type: str) -> str | None:
    """The service that owns (alone appends) events of this type, or None if unknown."""
    cls = EVENT_TYPES.get(event_type)
    return cls.OWNER if cls else None


def types_owned_by(owner: str) -> list[str]:
    """Event types one service owns, in catalogue order."""
    return [c.__name__ for c in EVENT_CLASSES if owner == c.OWNER]


def with_recording(event: EventBase, *, source: str, recorded_at: datetime) -> EventBase:
    """The event as it is appended: ``source`` and ``recorded_at`` set by the service."""
    return event.model_copy(update={"source": source, "recorded_at": recorded_at})


def event_to_dict(event: EventBase) -> dict[str, Any]:
    """JSON-compatible dict of an event (aliases used)."""
    return event.model_dump(mode="json", by_alias=True)
