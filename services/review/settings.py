"""Review settings: ``FPH_*`` shared ones plus ``FPH_PARTNERS`` and ``FPH_REVIEW_*``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from shared.settings import CommonSettings, comma_separated

CommitteeRuleName = Literal[
    "residents_majority", "residents_at_least_half", "residents_at_least_one", "none"
]


class ReviewSettings(CommonSettings):
    partners: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["centre-social-nord", "conseil-citoyen", "asso-quartiers"],
        description="Comma-separated partner ids that may accompany projects.",
    )
    review_database_url: str = "sqlite:///.var/review.db"
    review_host: str = "127.0.0.1"
    review_port: int = 8002
    review_desk_source: str = "city"
    review_committee_rule: CommitteeRuleName = "residents_majority"
    """Which committee rule a decision must meet (CONTRACT 1.2; default residents' majority)."""
    review_decision_target_days: int = Field(30, ge=1)
    """How long a submitted project may wait for its committee decision (for the alert)."""

    @field_validator("partners", mode="before")
    @classmethod
    def _partners_list(cls, value: Any) -> Any:
        # Its own name: reusing the base class's validator name would replace it.
        return comma_separated(value)
