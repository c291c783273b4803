"""``python -m services.funding`` (or ``fph-funding``): run the funding service."""

from __future__ import annotations

from services.funding.app import create_app
from services.funding.settings import FundingSettings
from shared.serve import serve


def main(argv: list[str] | None = None) -> None:
    serve(
        "funding",
        "Funding service: FPH envelopes (EnvelopeOpened, EnvelopeToppedUp), payments and"
        " settlements (GrantPaid, GrantSettled) decided from FPH_INBOX, and the answer to every"
        " approved committee decision (GrantAwarded or GrantRefused), first decided first"
        " served. Settings: FPH_* variables (FPH_NATS_URL, FPH_QUARTIERS, FPH_TIMEZONE,"
        " FPH_FUNDING_DATABASE_URL, FPH_FUNDING_PORT...).",
        FundingSettings(),
        create_app,
        argv,
    )


if __name__ == "__main__":
    main()
