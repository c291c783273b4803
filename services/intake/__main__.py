"""``python -m services.intake`` (or ``fph-intake``): run the intake service."""

from __future__ import annotations

from services.intake.app import create_app
from services.intake.settings import IntakeSettings
from shared.serve import serve


def main(argv: list[str] | None = None) -> None:
    serve(
        "intake",
        "Intake service: decides EnvieRecorded, EnvieClosed and PorteurRegistered submissions"
        " from FPH_INBOX, answers the submissions no service owns, and serves the city desk's"
        " HTTP API. Settings come from FPH_* environment variables (FPH_NATS_URL,"
        " FPH_QUARTIERS, FPH_SOURCES, FPH_INTAKE_DATABASE_URL, FPH_INTAKE_PORT...).",
        IntakeSettings(),
        create_app,
        argv,
    )


if __name__ == "__main__":
    main()
