"""``python -m services.review`` (or ``fph-review``): run the review service."""

from __future__ import annotations

from services.review.app import create_app
from services.review.settings import ReviewSettings
from shared.serve import serve


def main(argv: list[str] | None = None) -> None:
    serve(
        "review",
        "Review service: the project workflow (ProjectAccompanied, ProjectSubmitted,"
        " CommitteeDecided, ProjectCompleted, ImpactAssessed, MobilisationRecorded) decided"
        " from FPH_INBOX, with the city desk's HTTP API and every project's timeline."
        " Settings: FPH_* variables (FPH_NATS_URL, FPH_QUARTIERS, FPH_PARTNERS,"
        " FPH_REVIEW_DATABASE_URL, FPH_REVIEW_PORT, FPH_REVIEW_COMMITTEE_RULE...).",
        ReviewSettings(),
        create_app,
        argv,
    )


if __name__ == "__main__":
    main()
